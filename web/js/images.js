// @ts-check
/**
 * The images of a session and what each token shows on each of them.
 *
 * Owns the multi-image view of frames: the list of images of a start frame (first image,
 * then `more`), one image's part of a step (`focusOf`: maps, statistics and regions; the
 * first image's live at the top level of the step, the others in `more`), the share of
 * attention each image got, the gradient maps added once an analysis job delivered them,
 * and the colours that tell images apart. Nothing here draws or talks to the server.
 */

/**
 * @typedef {import("./protocol.js").StartFrame} StartFrame
 * @typedef {import("./protocol.js").StepFrame} StepFrame
 * @typedef {import("./protocol.js").Focus} Focus
 * @typedef {import("./protocol.js").ImageInfo} ImageInfo
 * @typedef {import("./wire.js").QMap} QMap
 */

/** One colour per image (up to four), readable on the dark theme and for colour-blind eyes. */
export const IMAGE_COLOURS = ["#3fb6c4", "#f2a541", "#b68cf2", "#7fd77a"];
/** What is not on any image: the prompt's text. */
export const TEXT_COLOUR = "#3a4658";

/** @param {StartFrame | null} start @returns {ImageInfo[]} every image, in prompt order */
export function imagesOf(start) {
  return start ? [start.image, ...start.more] : [];
}

/**
 * A short name for image k: its label, else "Image k+1".
 * @param {StartFrame | null} start @param {number} k
 */
export function imageName(start, k) {
  const label = imagesOf(start)[k]?.label;
  return label ? label : `Image ${k + 1}`;
}

/**
 * What step `s` shows on image k, or null when that image is unknown to the step.
 * @param {StepFrame} s @param {number} k
 * @param {Record<number, QMap[]>} [gradients] gradient maps per token index, one per image
 * @returns {Focus | null}
 */
export function focusOf(s, k, gradients) {
  /** @type {Focus | null} */
  let f = null;
  if (k === 0) {
    f = { maps: s.maps, mass: s.shares ? s.shares[0] : s.mass, ent: s.ent, entN: s.entN, peak: s.peak, zone: s.zone, regions: s.regions };
  } else if (s.more[k - 1]) f = s.more[k - 1];
  const extra = gradients?.[s.i]?.[k];
  return f && extra ? { ...f, maps: { ...f.maps, gradient: extra } } : f;
}

/**
 * Each image's share of the token's attention; a one-image step has its image_mass.
 * @param {StepFrame} s @returns {number[]}
 */
export function sharesOf(s) {
  return s.shares ?? [s.mass];
}
