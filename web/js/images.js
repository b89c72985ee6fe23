// @ts-check
/**
 * The images of a session and what each token shows on each of them.
 *
 * Owns the multi-image view of frames: the images of a start frame, one image's block of a
 * step (`blockOf`: maps, share, statistics and regions, with the gradient map added once an
 * analysis job delivered it), the share of attention each image got, which images are a
 * frontal and a lateral view (by their labels, as medviz_core/analyses/biplanar.py reads them), and
 * the colours that tell images apart. Nothing here draws or talks to the server.
 */

/**
 * @typedef {import("./wire/protocol.js").StartFrame} StartFrame
 * @typedef {import("./wire/protocol.js").StepFrame} StepFrame
 * @typedef {import("./wire/protocol.js").ImageMaps} ImageMaps
 * @typedef {import("./wire/protocol.js").ImageInfo} ImageInfo
 * @typedef {import("./wire/fields.js").QMap} QMap
 */

/** One colour per image (up to four), readable on the dark theme and for colour-blind eyes. */
export const IMAGE_COLOURS = ["#3fb6c4", "#f2a541", "#b68cf2", "#7fd77a"];
/** What is not on any image: the prompt's text. */
export const TEXT_COLOUR = "#3a4658";

/** @param {StartFrame | null} start @returns {ImageInfo[]} every image, in prompt order */
export function imagesOf(start) {
  return start ? start.images : [];
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
 * What step `s` shows on image k, or null when the step has no such image.
 * @param {StepFrame} s @param {number} k
 * @param {Record<number, QMap[]>} [gradients] gradient maps per token index, one per image
 * @returns {ImageMaps | null}
 */
export function blockOf(s, k, gradients) {
  const block = s.images[k] ?? null;
  const extra = gradients?.[s.i]?.[k];
  return block && extra ? { ...block, maps: { ...block.maps, gradient: extra } } : block;
}

/**
 * Each image's share of the token's attention (they sum to the step's image reliance).
 * @param {StepFrame} s @returns {number[]}
 */
export function sharesOf(s) {
  return s.images.map((b) => b.share);
}

/** DICOM ViewPosition values and their view (medviz_core/imaging/study.py VIEW_LABELS). */
const VIEW_POSITIONS = /** @type {Record<string, string>} */ ({ PA: "pa", AP: "ap", LATERAL: "lateral", LL: "lateral", RL: "lateral", LAT: "lateral" });

/**
 * A view label -> "frontal" (PA, AP, frontal), "lateral" (lateral, lat, LL, RL) or null.
 * @param {string} label @returns {"frontal" | "lateral" | null}
 */
export function viewKind(label) {
  const key = label.trim();
  const word = VIEW_POSITIONS[key.toUpperCase()] ?? key.toLowerCase();
  if (["pa", "ap", "frontal"].includes(word)) return "frontal";
  if (["lateral", "lat"].includes(word)) return "lateral";
  return null;
}

/**
 * The frontal and lateral image of a study, when its labels name exactly one of each.
 * @param {StartFrame | null} start @returns {{frontal: number, lateral: number} | null}
 */
export function biplanarPair(start) {
  const kinds = imagesOf(start).map((im) => viewKind(im.label));
  const frontal = kinds.flatMap((k, i) => (k === "frontal" ? [i] : []));
  const lateral = kinds.flatMap((k, i) => (k === "lateral" ? [i] : []));
  return frontal.length === 1 && lateral.length === 1 ? { frontal: frontal[0], lateral: lateral[0] } : null;
}
