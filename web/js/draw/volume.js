// @ts-check
/**
 * Pure rendering of a biplanar 3D estimate (medviz_core/analyses/biplanar.py): volume + rotation ->
 * pixels on a 2D canvas context.
 *
 * Owns the projection (an orthographic camera turned by yaw and pitch), the
 * maximum-intensity projection of the voxels, the thorax outline, the R/L, A/P and H/F
 * labels, and where the volume's peak lands on screen. Holds no state between calls
 * besides a scratch canvas per resolution. Pointer handling lives in volume-view.js;
 * colour tables in palette.js.
 *
 * Volume order (the same as Python's `Volume.values`): `values[(y * size + x) * size + z]`,
 * y head -> feet, x the patient's right -> left, z anterior -> posterior.
 *
 * World frame: the volume fills the cube [-0.5, 0.5]^3 with
 *   X = (x + 0.5) / size - 0.5, Y = (y + 0.5) / size - 0.5, D = (z + 0.5) / size - 0.5.
 * The camera: first yaw about the vertical axis, then pitch about the screen's horizontal,
 *   u = X cos(yaw) + D sin(yaw),   d = -X sin(yaw) + D cos(yaw),
 *   v = Y cos(pitch) - d sin(pitch), depth = Y sin(pitch) + d cos(pitch),
 * and screen = (width / 2 + k u, height / 2 + k v) with k = SCALE * min(width, height);
 * larger depth is farther. Yaw 0, pitch 0 is the frontal radiograph as displayed (the
 * patient faces the viewer, their right on the screen's left); yaw +pi/2 is the left
 * lateral as displayed (anterior on the screen's left); pitch > 0 looks from above.
 * (X, Y, D) = (left, feet, posterior) is right-handed like the screen's (right, down,
 * into the screen), so no rotation shows a mirrored body.
 */

import { palette } from "./palette.js";

/** @typedef {{values: Float32Array, size: number}} VolumeData values[(y * size + x) * size + z] */
/** @typedef {{yaw: number, pitch: number}} Rotation radians */
/** @typedef {{x: number, y: number, depth: number}} ScreenPoint canvas pixels; depth in cube units, larger is farther */
/** @typedef {{text: string, x: number, y: number, depth: number, visible: boolean}} Label */
/**
 * @typedef {object} RenderOptions
 * @property {Uint8ClampedArray} [table] 256 x RGBA colour table (palette.js); default viridis
 * @property {boolean} [outline] draw the box and thorax outline (default true)
 * @property {boolean} [labels] draw R/L, A/P, H/F (default true)
 * @property {boolean} [marker] ring the peak (default true)
 * @property {string} [background] CSS colour filling the canvas first (default "#000")
 */
/** @typedef {{labels: Label[], peak: ScreenPoint | null, resolution: number}} RenderResult */
/** @typedef {CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D} Context2D */

/** World units -> pixels, as a share of the canvas's smaller side: the turned cube and labels fit. */
export const SCALE = 0.55;
/** A three-quarter view from the front-left, a little above: every label readable. */
export const DEFAULT_ROTATION = Object.freeze({ yaw: 0.6, pitch: 0.3 });
/** How far outside the cube the labels sit, in cube units. */
export const LABEL_OFFSET = 0.1;
/** A label whose axis points within this projected length of the viewer is hidden (it would sit on the middle). */
export const LABEL_MIN_SPREAD = 0.3;
/** The thorax: an elliptic cylinder, wider left-right than front-back, in cube units. */
export const THORAX = Object.freeze({ rx: 0.42, rz: 0.34 });

/** @type {[string, [number, number, number]][]} label -> unit direction in (X, Y, D) */
const AXES = [["R", [-1, 0, 0]], ["L", [1, 0, 0]], ["H", [0, -1, 0]], ["F", [0, 1, 0]], ["A", [0, 0, -1]], ["P", [0, 0, 1]]];

/** Throws when values does not hold size^3 numbers. @param {VolumeData} volume */
export function checkVolume(volume) {
  const { values, size } = volume;
  if (!Number.isInteger(size) || size < 1 || values.length !== size * size * size) {
    throw new Error(`a volume needs size^3 values; got ${values.length} values for size ${size}`);
  }
}

/**
 * The camera of the module docstring as coefficients.
 * @param {Rotation} rotation
 */
function camera(rotation) {
  const cy = Math.cos(rotation.yaw), sy = Math.sin(rotation.yaw);
  const cp = Math.cos(rotation.pitch), sp = Math.sin(rotation.pitch);
  /** @param {number} X @param {number} Y @param {number} D @returns {[number, number, number]} [u, v, depth] */
  return (X, Y, D) => {
    const d = -X * sy + D * cy;
    return [X * cy + D * sy, Y * cp - d * sp, Y * sp + d * cp];
  };
}

/**
 * A world point (X, Y, D) -> canvas pixels.
 * @param {[number, number, number]} point @param {Rotation} rotation
 * @param {number} width @param {number} height @returns {ScreenPoint}
 */
export function projectPoint(point, rotation, width, height) {
  const [u, v, depth] = camera(rotation)(point[0], point[1], point[2]);
  const k = SCALE * Math.min(width, height);
  return { x: width / 2 + k * u, y: height / 2 + k * v, depth };
}

/**
 * The centre of voxel (y, x, z) -> canvas pixels.
 * @param {[number, number, number]} cell [y, x, z] @param {number} size
 * @param {Rotation} rotation @param {number} width @param {number} height @returns {ScreenPoint}
 */
export function projectCell(cell, size, rotation, width, height) {
  const [y, x, z] = cell;
  return projectPoint([(x + 0.5) / size - 0.5, (y + 0.5) / size - 0.5, (z + 0.5) / size - 0.5], rotation, width, height);
}

/**
 * [y, x, z] of the first maximum in flat order (as Python's peak), or null when no value is above 0.
 * @param {VolumeData} volume @returns {[number, number, number] | null}
 */
export function peakCell(volume) {
  checkVolume(volume);
  const { values, size } = volume;
  let best = -1, top = 0;
  for (let k = 0; k < values.length; k++) if (values[k] > top) { top = values[k]; best = k; }
  if (best < 0) return null;
  return [Math.floor(best / (size * size)), Math.floor(best / size) % size, best % size];
}

/**
 * Where the volume's peak lands on a canvas of this size, or null for an empty volume.
 * @param {VolumeData} volume @param {Rotation} rotation @param {number} width @param {number} height
 * @returns {ScreenPoint | null}
 */
export function peakScreen(volume, rotation, width, height) {
  const cell = peakCell(volume);
  return cell ? projectCell(cell, volume.size, rotation, width, height) : null;
}

/**
 * Maximum-intensity projection on a res x res grid covering the centred square of side
 * min(width, height): each voxel is splatted as a square of its cell's projected width,
 * keeping the largest value per pixel, so no sorting is needed. Values are divided by the
 * volume's maximum (the brightest voxel reads 1); an empty volume gives zeros.
 * @param {VolumeData} volume @param {Rotation} rotation @param {number} res
 * @returns {Float32Array} res * res values in 0..1, row-major
 */
export function mip(volume, rotation, res) {
  checkVolume(volume);
  const { values, size } = volume;
  const out = new Float32Array(res * res);
  let top = 0;
  for (let k = 0; k < values.length; k++) if (values[k] > top) top = values[k];
  if (!(top > 0)) return out;
  const project = camera(rotation);
  const k = SCALE * res;
  const half = (0.5 / size) * k * 1.15; // a little over half a cell: no seams between neighbours
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let z = 0; z < size; z++) {
        const value = values[(y * size + x) * size + z] / top;
        if (!(value > 0)) continue;
        const [u, v] = project((x + 0.5) / size - 0.5, (y + 0.5) / size - 0.5, (z + 0.5) / size - 0.5);
        splat(out, res, res / 2 + k * u, res / 2 + k * v, half, Math.min(1, value));
      }
    }
  }
  return out;
}

/**
 * Max one value into the pixels whose centres lie within half of (cx, cy).
 * @param {Float32Array} out @param {number} res @param {number} cx @param {number} cy
 * @param {number} half @param {number} value
 */
function splat(out, res, cx, cy, half, value) {
  const i0 = Math.max(0, Math.ceil(cx - half - 0.5)), i1 = Math.min(res - 1, Math.floor(cx + half - 0.5));
  const j0 = Math.max(0, Math.ceil(cy - half - 0.5)), j1 = Math.min(res - 1, Math.floor(cy + half - 0.5));
  for (let j = j0; j <= j1; j++) {
    const row = j * res;
    for (let i = i0; i <= i1; i++) if (out[row + i] < value) out[row + i] = value;
  }
}

/** @type {Map<number, OffscreenCanvas | HTMLCanvasElement>} */
const SCRATCH = new Map();

/** @param {number} res @returns {OffscreenCanvas | HTMLCanvasElement} a res x res canvas, reused */
function scratch(res) {
  let canvas = SCRATCH.get(res);
  if (!canvas) {
    canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(res, res) : document.createElement("canvas");
    canvas.width = res;
    canvas.height = res;
    SCRATCH.set(res, canvas);
  }
  return canvas;
}

/**
 * Colour a MIP grid into the scratch canvas: the palette for colour, alpha rising with the
 * value so faint voxels let the outline show through.
 * @param {Float32Array} grid @param {number} res @param {Uint8ClampedArray} table
 */
function paintMip(grid, res, table) {
  const canvas = scratch(res);
  const ctx = /** @type {Context2D} */ (canvas.getContext("2d"));
  const img = ctx.createImageData(res, res);
  const px = img.data;
  for (let p = 0; p < grid.length; p++) {
    if (!(grid[p] > 0)) continue;
    const t = 4 * Math.round(grid[p] * 255);
    px[4 * p] = table[t];
    px[4 * p + 1] = table[t + 1];
    px[4 * p + 2] = table[t + 2];
    px[4 * p + 3] = Math.min(255, Math.round(grid[p] * 255 * 2));
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

/**
 * Segments of world points, projected, stroked as two paths: the far ones (mean depth
 * > 0) dimmer than the near ones.
 * @param {Context2D} ctx @param {[[number, number, number], [number, number, number]][]} segments
 * @param {Rotation} rotation @param {number} w @param {number} h
 */
function strokeSegments(ctx, segments, rotation, w, h) {
  const near = new Path2D(), far = new Path2D();
  for (const [p, q] of segments) {
    const a = projectPoint(p, rotation, w, h), b = projectPoint(q, rotation, w, h);
    const path = a.depth + b.depth > 0 ? far : near;
    path.moveTo(a.x, a.y);
    path.lineTo(b.x, b.y);
  }
  ctx.globalAlpha = 0.25;
  ctx.stroke(far);
  ctx.globalAlpha = 0.6;
  ctx.stroke(near);
}

/** @param {[number, number, number][]} points @param {boolean} closed */
function segmentsOf(points, closed) {
  /** @type {[[number, number, number], [number, number, number]][]} */
  const out = [];
  const n = closed ? points.length : points.length - 1;
  for (let s = 0; s < n; s++) out.push([points[s], points[(s + 1) % points.length]]);
  return out;
}

/**
 * The volume's box (faint) and the thorax: rings at the top, middle and bottom of an
 * elliptic cylinder, and its four sides (right, left, front, back).
 * @param {Context2D} ctx @param {Rotation} rotation @param {number} w @param {number} h
 */
function drawOutline(ctx, rotation, w, h) {
  ctx.save();
  ctx.lineWidth = 1;
  /** @type {[number, number, number][]} */
  const corners = [];
  for (const X of [-0.5, 0.5]) for (const Y of [-0.5, 0.5]) for (const D of [-0.5, 0.5]) corners.push([X, Y, D]);
  /** @type {[[number, number, number], [number, number, number]][]} */
  const box = [];
  for (let a = 0; a < 8; a++) {
    for (let b = a + 1; b < 8; b++) {
      if (corners[a].filter((c, i) => c !== corners[b][i]).length === 1) box.push([corners[a], corners[b]]);
    }
  }
  ctx.strokeStyle = "#5a6b7d";
  strokeSegments(ctx, box, rotation, w, h);
  const { rx, rz } = THORAX;
  /** @type {[[number, number, number], [number, number, number]][]} */
  const thorax = [];
  for (const Y of [-0.45, 0, 0.45]) {
    /** @type {[number, number, number][]} */
    const ring = [];
    for (let s = 0; s < 36; s++) ring.push([rx * Math.cos((s * Math.PI) / 18), Y, rz * Math.sin((s * Math.PI) / 18)]);
    thorax.push(...segmentsOf(ring, true));
  }
  for (const [X, D] of [[-rx, 0], [rx, 0], [0, -rz], [0, rz]]) thorax.push([[X, -0.45, D], [X, 0.45, D]]);
  ctx.strokeStyle = "#9fb4c8";
  strokeSegments(ctx, thorax, rotation, w, h);
  ctx.restore();
}

/**
 * Where the six labels go for this rotation, and which are readable (axis not end-on).
 * @param {Rotation} rotation @param {number} width @param {number} height @returns {Label[]}
 */
export function labelPositions(rotation, width, height) {
  const project = camera(rotation);
  const reach = 0.5 + LABEL_OFFSET;
  return AXES.map(([text, [X, Y, D]]) => {
    const [u, v] = project(X, Y, D);
    const at = projectPoint([X * reach, Y * reach, D * reach], rotation, width, height);
    return { text, x: at.x, y: at.y, depth: at.depth, visible: Math.hypot(u, v) >= LABEL_MIN_SPREAD };
  });
}

/** @param {Context2D} ctx @param {Label[]} labels @param {number} side */
function drawLabels(ctx, labels, side) {
  ctx.save();
  ctx.font = `bold ${Math.max(10, Math.round(side * 0.045))}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (const label of labels) {
    if (!label.visible) continue;
    ctx.globalAlpha = label.depth > 0.05 ? 0.55 : 1; // behind the middle: dimmer
    ctx.fillStyle = "#e8eef5";
    ctx.fillText(label.text, label.x, label.y);
  }
  ctx.restore();
}

/** @param {Context2D} ctx @param {ScreenPoint} peak @param {number} side */
function drawMarker(ctx, peak, side) {
  ctx.save();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.arc(peak.x, peak.y, Math.max(5, side * 0.03), 0, 2 * Math.PI);
  ctx.stroke();
  ctx.restore();
}

/**
 * Draw the volume on a whole canvas: background, outline, MIP, peak ring, labels.
 * Cheap enough to call on every pointer move (16^3 voxels splat into a 128^2 grid).
 * @param {Context2D} ctx @param {VolumeData | null} volume null draws the empty frame
 * @param {Rotation} rotation @param {RenderOptions} [options] @returns {RenderResult}
 */
export function renderVolume(ctx, volume, rotation, options = {}) {
  const { width: w, height: h } = ctx.canvas;
  const side = Math.min(w, h);
  ctx.save();
  ctx.globalAlpha = 1;
  ctx.globalCompositeOperation = "source-over";
  ctx.fillStyle = options.background ?? "#000";
  ctx.fillRect(0, 0, w, h);
  if (options.outline !== false) drawOutline(ctx, rotation, w, h);
  const res = volume ? Math.max(64, Math.min(256, volume.size * 8)) : 0;
  const peak = volume ? peakScreen(volume, rotation, w, h) : null;
  if (volume && peak) {
    const painted = paintMip(mip(volume, rotation, res), res, options.table ?? palette("viridis").table);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(painted, (w - side) / 2, (h - side) / 2, side, side);
    if (options.marker !== false) drawMarker(ctx, peak, side);
  }
  const labels = labelPositions(rotation, w, h);
  if (options.labels !== false) drawLabels(ctx, labels, side);
  ctx.restore();
  return { labels, peak, resolution: res };
}
