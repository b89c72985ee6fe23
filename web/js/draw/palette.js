// @ts-check
/**
 * Colour ramps as 256-entry RGBA tables, built once from anchor colours.
 *
 * Owns the colormaps: viridis (the default: perceptually uniform, colour-blind safe,
 * readable in greyscale), cividis (tuned for colour-vision deficiency), inferno, grey and
 * the classic jet (from its piecewise-linear formula; kept for people used to it, though
 * it is neither uniform nor colour-blind safe). Index k of a table is the colour of value
 * k/255. Drawing lives in heatmap.js.
 */

/** @typedef {{id: string, label: string, table: Uint8ClampedArray}} Palette */

/** @type {Record<string, [number, number, number][]>} evenly spaced anchors, 0 -> 1 */
const ANCHORS = {
  viridis: [[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37]],
  cividis: [[0, 32, 77], [35, 55, 109], [65, 77, 107], [98, 100, 113], [124, 123, 120],
    [154, 148, 118], [188, 175, 111], [222, 203, 99], [255, 234, 70]],
  inferno: [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
    [245, 125, 21], [250, 193, 39], [252, 255, 164]],
  grey: [[0, 0, 0], [255, 255, 255]],
};

/**
 * Linear interpolation between evenly spaced anchors.
 * @param {[number, number, number][]} anchors @returns {Uint8ClampedArray}
 */
export function tableFromAnchors(anchors) {
  const table = new Uint8ClampedArray(256 * 4);
  const segments = anchors.length - 1;
  for (let k = 0; k < 256; k++) {
    const x = (k / 255) * segments;
    const i = Math.min(Math.floor(x), segments - 1);
    const t = x - i;
    for (let c = 0; c < 3; c++) table[4 * k + c] = Math.round(anchors[i][c] + (anchors[i + 1][c] - anchors[i][c]) * t);
    table[4 * k + 3] = 255;
  }
  return table;
}

/** @returns {Uint8ClampedArray} the classic MATLAB jet: blue -> cyan -> yellow -> red */
export function jetTable() {
  const table = new Uint8ClampedArray(256 * 4);
  const ramp = (/** @type {number} */ v) => Math.max(0, Math.min(1, v));
  for (let k = 0; k < 256; k++) {
    const x = k / 255;
    table[4 * k] = Math.round(255 * ramp(1.5 - Math.abs(4 * x - 3)));
    table[4 * k + 1] = Math.round(255 * ramp(1.5 - Math.abs(4 * x - 2)));
    table[4 * k + 2] = Math.round(255 * ramp(1.5 - Math.abs(4 * x - 1)));
    table[4 * k + 3] = 255;
  }
  return table;
}

/** @type {Palette[]} in menu order; the first is the default */
export const PALETTES = [
  { id: "viridis", label: "Viridis (colour-blind safe)", table: tableFromAnchors(ANCHORS.viridis) },
  { id: "cividis", label: "Cividis (colour-blind safe)", table: tableFromAnchors(ANCHORS.cividis) },
  { id: "inferno", label: "Inferno", table: tableFromAnchors(ANCHORS.inferno) },
  { id: "jet", label: "Jet (classic)", table: jetTable() },
  { id: "grey", label: "Grey", table: tableFromAnchors(ANCHORS.grey) },
];

/**
 * The diverging ramp for difference maps (ColorBrewer RdBu, colour-blind safe): blue for
 * negative, white for zero at index 128, red for positive. Not in the heatmap menu.
 */
export const DIVERGING = tableFromAnchors([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
  [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]]);

/** @param {string} id @returns {Palette} the named palette, or the default */
export function palette(id) {
  return PALETTES.find((p) => p.id === id) ?? PALETTES[0];
}

/**
 * A CSS linear-gradient showing a palette (for legends).
 * @param {Palette} p @returns {string}
 */
export function cssGradient(p) {
  const stops = [];
  for (let k = 0; k <= 8; k++) {
    const i = Math.round((k / 8) * 255) * 4;
    stops.push(`rgb(${p.table[i]} ${p.table[i + 1]} ${p.table[i + 2]}) ${k * 12.5}%`);
  }
  return `linear-gradient(to right, ${stops.join(", ")})`;
}
