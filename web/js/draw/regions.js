// @ts-check
/**
 * The peak, zone and high-attention regions of whichever map is shown, computed in the page
 * by the definition of medviz_core/maps/regions.py (docs/relevancy.md, "Statistics per
 * step"), so outlines, peak and caption follow the method on screen.
 *
 * Owns `mapStats` (one quantised map -> peak, zone, regions) and its steps: the working
 * raster (cv2.INTER_LINEAR's sampling, longer side 256, the image's aspect), the threshold
 * strictly above numpy's 85th percentile, external 8-connected components with their holes
 * filled (cv2.findContours RETR_EXTERNAL + a filled drawContours), regions under 1% of the
 * raster dropped, the 3 with the most mass kept (ties in scan order), zones of the
 * mass-weighted centre. Each region's outline is its traced boundary through pixel
 * centres, simplified (Douglas–Peucker, doubling the tolerance) to at most 24 vertices.
 * A step carries consensus's statistics from the server; render.js uses those for
 * consensus, and this for every other method. The browser tests check that the two agree
 * on consensus. No DOM.
 */

export const WORK_SIDE = 256;
export const MAX_VERTICES = 24;
const PERCENTILE = 85;
const MIN_AREA = 0.01;
const KEEP = 3;

/** medviz_core/types.py ZONES: the patient's right is the image's left. */
export const ZONES = [
  "right upper", "central upper", "left upper",
  "right middle", "central middle", "left middle",
  "right lower", "central lower", "left lower",
];

/**
 * @typedef {import("../wire/protocol.js").Region} Region
 * @typedef {{peak: [number, number], zone: string, regions: Region[]}} MapStats
 */

/** Python's round(): halves to even. @param {number} x */
function pyRound(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return d > 0.5 ? f + 1 : f;
  return f % 2 === 0 ? f : f + 1;
}

/** @param {number} v 0..1 along one axis @returns {number} 0, 1 or 2 (a boundary goes to the middle band) */
function band(v) {
  return v < 1 / 3 ? 0 : v > 2 / 3 ? 2 : 1;
}

/** The 3 x 3 zone of a point in normalised image coordinates (regions.zone_of). @param {number} x @param {number} y */
export function zoneOf(x, y) {
  return ZONES[3 * band(y) + band(x)];
}

/**
 * (width, height) of the working raster: longer side WORK_SIDE, the image's aspect.
 * @param {number} w @param {number} h @returns {[number, number]}
 */
export function workingSize(w, h) {
  if (w >= h) return [WORK_SIDE, Math.max(1, pyRound((WORK_SIDE * h) / w))];
  return [Math.max(1, pyRound((WORK_SIDE * w) / h)), WORK_SIDE];
}

/**
 * A quantised map's raw values exactly as QuantMap.values gives them: lo + u8 / 255 * (hi - lo),
 * every operation rounded to float32 as numpy does.
 * @param {import("../wire/fields.js").QMap} map @returns {Float32Array}
 */
export function rawOf(map) {
  const out = new Float32Array(map.u8.length);
  const f = Math.fround;
  const lo = f(map.lo);
  const span = f(map.hi - map.lo);
  for (let k = 0; k < out.length; k++) out[k] = f(lo + f(f(map.u8[k] / 255) * span));
  return out;
}

/**
 * cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR) of a float32 grid: pixel centres
 * aligned, edges clamped, coefficients in float32.
 * @param {Float32Array} src @param {number} sw @param {number} sh @param {number} dw @param {number} dh
 * @returns {Float32Array}
 */
export function resizeLinear(src, sw, sh, dw, dh) {
  /** @param {number} dn @param {number} sn @returns {{at: Int32Array, f: Float32Array}} */
  const axis = (dn, sn) => {
    const at = new Int32Array(dn);
    const f = new Float32Array(dn);
    const scale = sn / dn;
    for (let d = 0; d < dn; d++) {
      let x = Math.fround((d + 0.5) * scale - 0.5);
      let s = Math.floor(x);
      x -= s;
      if (s < 0) { x = 0; s = 0; }
      if (s >= sn - 1) { x = 0; s = sn - 1; }
      at[d] = s;
      f[d] = x;
    }
    return { at, f };
  };
  const xs = axis(dw, sw);
  const ys = axis(dh, sh);
  const rows = new Float32Array(sh * dw);  // horizontal pass first, as cv2 does
  for (let r = 0; r < sh; r++) {
    for (let d = 0; d < dw; d++) {
      const s = xs.at[d];
      const f = xs.f[d];
      const a = src[r * sw + s];
      const b = s + 1 < sw ? src[r * sw + s + 1] : a;
      rows[r * dw + d] = Math.fround(Math.fround(a * Math.fround(1 - f)) + Math.fround(b * f));
    }
  }
  const out = new Float32Array(dw * dh);
  for (let d = 0; d < dh; d++) {
    const s = ys.at[d];
    const f = ys.f[d];
    const s1 = Math.min(s + 1, sh - 1);
    for (let c = 0; c < dw; c++) {
      out[d * dw + c] = Math.fround(Math.fround(rows[s * dw + c] * Math.fround(1 - f)) + Math.fround(rows[s1 * dw + c] * f));
    }
  }
  return out;
}

/**
 * numpy.percentile's default (linear) of the values.
 * @param {Float32Array} values @param {number} q 0..100
 */
function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const x = (q / 100) * (sorted.length - 1);
  const i = Math.floor(x);
  const j = Math.min(i + 1, sorted.length - 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (x - i);
}

const DX = [1, 1, 0, -1, -1, -1, 0, 1];  // E, SE, S, SW, W, NW, N, NE: clockwise on screen (y down)
const DY = [0, 1, 1, 1, 0, -1, -1, -1];

/**
 * 8-connected components of the foreground, labelled 1.. in the order their first pixel
 * comes in a raster scan (findContours' order of outer borders).
 * @param {Uint8Array} mask @param {number} w @param {number} h
 * @returns {{labels: Int32Array, count: number, first: number[]}}
 */
function components(mask, w, h) {
  const labels = new Int32Array(w * h);
  const first = [];
  const stack = [];
  let count = 0;
  for (let p = 0; p < mask.length; p++) {
    if (!mask[p] || labels[p]) continue;
    count += 1;
    first.push(p);
    labels[p] = count;
    stack.push(p);
    while (stack.length) {
      const q = /** @type {number} */ (stack.pop());
      const x = q % w;
      const y = (q - x) / w;
      for (let k = 0; k < 8; k++) {
        const nx = x + DX[k];
        const ny = y + DY[k];
        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
        const n = ny * w + nx;
        if (mask[n] && !labels[n]) {
          labels[n] = count;
          stack.push(n);
        }
      }
    }
  }
  return { labels, count, first };
}

/**
 * The component's pixels with its holes: every pixel of its box that the outside cannot
 * reach through 4-connected pixels of other labels.
 * @param {Int32Array} labels @param {number} w @param {number} id
 * @param {{x0: number, y0: number, x1: number, y1: number}} box inclusive pixel bounds
 * @returns {Uint8Array} (bw x bh) 1 inside
 */
function filled(labels, w, id, box) {
  const bw = box.x1 - box.x0 + 3;  // one pixel of outside all round
  const bh = box.y1 - box.y0 + 3;
  const outside = new Uint8Array(bw * bh);
  const at = (/** @type {number} */ x, /** @type {number} */ y) => {
    const gx = x + box.x0 - 1;
    const gy = y + box.y0 - 1;
    return gx < box.x0 || gy < box.y0 || gx > box.x1 || gy > box.y1 ? 0 : labels[gy * w + gx];
  };
  const stack = [0];
  outside[0] = 1;
  while (stack.length) {
    const q = /** @type {number} */ (stack.pop());
    const x = q % bw;
    const y = (q - x) / bw;
    for (const [nx, ny] of [[x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]]) {
      if (nx < 0 || ny < 0 || nx >= bw || ny >= bh) continue;
      const n = ny * bw + nx;
      if (!outside[n] && at(nx, ny) !== id) {
        outside[n] = 1;
        stack.push(n);
      }
    }
  }
  const inner = new Uint8Array((bw - 2) * (bh - 2));
  for (let y = 0; y < bh - 2; y++) for (let x = 0; x < bw - 2; x++) inner[y * (bw - 2) + x] = outside[(y + 1) * bw + x + 1] ? 0 : 1;
  return inner;
}

/**
 * The outer boundary of a component, Moore-neighbour traced clockwise from its first pixel.
 * @param {Int32Array} labels @param {number} w @param {number} h @param {number} id @param {number} start
 * @returns {[number, number][]} pixel coordinates
 */
function trace(labels, w, h, id, start) {
  const inside = (/** @type {number} */ x, /** @type {number} */ y) => x >= 0 && y >= 0 && x < w && y < h && labels[y * w + x] === id;
  const x0 = start % w;
  const y0 = (start - x0) / w;
  /** @type {[number, number][]} */ const points = [[x0, y0]];
  let x = x0;
  let y = y0;
  let from = 5;  // the pixel west of the first one is outside: search from north-west
  let second = -1;
  for (let guard = 0; guard < 4 * w * h + 8; guard++) {
    let d = -1;
    for (let k = 0; k < 8; k++) {
      const dir = (from + k) % 8;
      if (inside(x + DX[dir], y + DY[dir])) { d = dir; break; }
    }
    if (d < 0) break;  // a single pixel
    const nx = x + DX[d];
    const ny = y + DY[d];
    const next = ny * w + nx;
    if (x === x0 && y === y0) {
      if (second === next) break;  // back at the start, about to repeat the first move
      if (second < 0) second = next;
    }
    x = nx;
    y = ny;
    points.push([x, y]);
    from = (d + (d % 2 === 0 ? 7 : 6)) % 8;
  }
  if (points.length > 1) points.pop();  // the start, reached again
  return points;
}

/**
 * Douglas–Peucker over a closed outline, the tolerance doubled until at most `most` points remain.
 * @param {[number, number][]} points @param {number} most @returns {[number, number][]}
 */
function simplify(points, most) {
  if (points.length <= 3) return points;
  /** @param {[number, number][]} run @param {number} eps @returns {[number, number][]} */
  const dp = (run, eps) => {
    const [a, b] = [run[0], run[run.length - 1]];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
    let far = 0;
    let at = 0;
    for (let k = 1; k < run.length - 1; k++) {
      const p = run[k];
      const dist = Math.abs((b[0] - a[0]) * (a[1] - p[1]) - (a[0] - p[0]) * (b[1] - a[1])) / len;
      if (dist > far) { far = dist; at = k; }
    }
    if (far <= eps) return [a, b];
    return [...dp(run.slice(0, at + 1), eps).slice(0, -1), ...dp(run.slice(at), eps)];
  };
  let split = 0;
  let best = -1;
  for (let k = 1; k < points.length; k++) {
    const dist = Math.hypot(points[k][0] - points[0][0], points[k][1] - points[0][1]);
    if (dist > best) { best = dist; split = k; }
  }
  let eps = 0.5;
  for (;;) {
    const one = dp(points.slice(0, split + 1), eps);
    const two = dp([...points.slice(split), points[0]], eps);
    const out = [...one.slice(0, -1), ...two.slice(0, -1)];
    if (out.length <= most) return out;
    eps *= 2;
  }
}

/**
 * The `keep` high-attention regions of a map with the most mass, most first (regions.find_regions).
 * @param {Float32Array} values raw map values, row-major (gh x gw)
 * @param {[number, number]} grid [gh, gw] @param {[number, number]} imageSize [width, height]
 * @returns {Region[]}
 */
export function findRegions(values, grid, imageSize) {
  const [gh, gw] = grid;
  const source = new Float32Array(values.length);
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < values.length; k++) {
    const v = Number.isFinite(values[k]) ? Math.max(0, values[k]) : 0;
    source[k] = v;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!(hi > lo)) return [];
  const [w, h] = workingSize(imageSize[0], imageSize[1]);
  const raster = resizeLinear(source, gw, gh, w, h);
  let total = 0;
  for (let k = 0; k < raster.length; k++) {
    if (raster[k] < 0) raster[k] = 0;
    total += raster[k];
  }
  const threshold = percentile(raster, PERCENTILE);
  const mask = new Uint8Array(raster.length);
  for (let k = 0; k < raster.length; k++) mask[k] = raster[k] > threshold ? 1 : 0;
  const { labels, count, first } = components(mask, w, h);
  const boxes = Array.from({ length: count }, () => ({ x0: w, y0: h, x1: -1, y1: -1 }));
  for (let p = 0; p < labels.length; p++) {
    const id = labels[p];
    if (!id) continue;
    const b = boxes[id - 1];
    const x = p % w;
    const y = (p - x) / w;
    if (x < b.x0) b.x0 = x;
    if (x > b.x1) b.x1 = x;
    if (y < b.y0) b.y0 = y;
    if (y > b.y1) b.y1 = y;
  }
  const least = MIN_AREA * w * h;
  const inHole = new Int32Array(w * h);  // the component whose filled interior holds each pixel
  /** @type {{id: number, region: Region}[]} */
  const measured = [];
  const interiors = boxes.map((b, k) => filled(labels, w, k + 1, b));
  boxes.forEach((b, k) => {
    const bw = b.x1 - b.x0 + 1;
    const inner = interiors[k];
    for (let y = 0; y <= b.y1 - b.y0; y++) {
      for (let x = 0; x < bw; x++) {
        const p = (y + b.y0) * w + x + b.x0;
        if (inner[y * bw + x] && labels[p] !== k + 1) inHole[p] = k + 1;
      }
    }
  });
  boxes.forEach((b, k) => {
    if (inHole[first[k]]) return;  // inside another region's hole: not an external contour
    const bw = b.x1 - b.x0 + 1;
    const bh = b.y1 - b.y0 + 1;
    if (bw * bh < least) return;
    const inner = interiors[k];
    let area = 0;
    let weight = 0;
    let sx = 0;
    let sy = 0;
    for (let y = 0; y < bh; y++) {
      for (let x = 0; x < bw; x++) {
        if (!inner[y * bw + x]) continue;
        area += 1;
        const v = raster[(y + b.y0) * w + x + b.x0];
        weight += v;
        sx += v * (x + b.x0 + 0.5);
        sy += v * (y + b.y0 + 0.5);
      }
    }
    if (area < least) return;
    const outline = simplify(trace(labels, w, h, k + 1, first[k]), MAX_VERTICES);
    const poly = new Float32Array(outline.length * 2);
    outline.forEach(([x, y], j) => { poly[2 * j] = (x + 0.5) / w; poly[2 * j + 1] = (y + 0.5) / h; });
    measured.push({
      id: k,
      region: { poly, box: [b.x0 / w, b.y0 / h, bw / w, bh / h], mass: weight / total, zone: zoneOf(sx / weight / w, sy / weight / h) },
    });
  });
  measured.sort((a, b) => b.region.mass - a.region.mass || a.id - b.id);
  return measured.slice(0, KEEP).map((m) => m.region);
}

/**
 * The peak cell (row, col) of a quantised map: its first maximum in raster order.
 * @param {import("../wire/fields.js").QMap} map @param {number} gw the grid's width
 * @returns {[number, number]}
 */
export function peakOf(map, gw) {
  let at = 0;
  for (let k = 1; k < map.u8.length; k++) if (map.u8[k] > map.u8[at]) at = k;
  return [Math.floor(at / gw), at % gw];
}

/**
 * Peak (first maximum in raster order), its zone and the regions of one quantised map.
 * @param {import("../wire/fields.js").QMap} map @param {[number, number]} grid [gh, gw]
 * @param {[number, number]} imageSize [width, height] of the image as the model saw it
 * @returns {MapStats}
 */
export function mapStats(map, grid, imageSize) {
  const [gh, gw] = grid;
  const [row, col] = peakOf(map, gw);
  return { peak: [row, col], zone: zoneOf((col + 0.5) / gw, (row + 0.5) / gh), regions: findRegions(rawOf(map), grid, imageSize) };
}

/** @type {WeakMap<object, MapStats>} */
const cache = new WeakMap();

/**
 * The statistics a view shows for a method on one image's block: the server's for consensus
 * (the step carries them), computed here (once per map) for any other method.
 * @param {import("../wire/protocol.js").ImageMaps} block @param {string} method
 * @param {[number, number]} grid @param {[number, number]} imageSize
 * @returns {MapStats}
 */
export function statsFor(block, method, grid, imageSize) {
  const map = block.maps[method];
  if (method === "consensus" || !map) return { peak: block.peak, zone: block.zone, regions: block.regions };
  let stats = cache.get(map);
  if (!stats) {
    stats = mapStats(map, grid, imageSize);
    cache.set(map, stats);
  }
  return stats;
}
