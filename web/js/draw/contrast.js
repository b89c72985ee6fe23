// @ts-check
/**
 * Display contrast for one quantised map: raw values -> 0..1 for the palette.
 *
 * Owns the three contrast modes of docs/relevancy.md, applied to the raw values recovered from
 * u8 and lo/hi: `linear` (min-max over the map), `percentile` (clip to the 5th..95th
 * percentile, numpy's linear interpolation, then scale) and `log` (log(x + 1e-8), then
 * min-max). It knows nothing about colours or canvases.
 */

import { rawValues } from "../wire/protocol.js";

export const CONTRAST_MODES = [
  { id: "linear", label: "Linear" },
  { id: "percentile", label: "Percentile 5–95" },
  { id: "log", label: "Log" },
];

/**
 * The q-th percentile (0..100) of values, interpolated like numpy's default.
 * @param {Float32Array} sorted ascending @param {number} q
 */
export function percentile(sorted, q) {
  if (sorted.length === 0) return 0;
  const x = (q / 100) * (sorted.length - 1);
  const i = Math.floor(x);
  const j = Math.min(i + 1, sorted.length - 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (x - i);
}

/**
 * Scale values so that [lo, hi] -> [0, 1], clipping outside; all 0 when hi <= lo.
 * @param {Float32Array} values @param {number} lo @param {number} hi
 */
function scale(values, lo, hi) {
  const out = new Float32Array(values.length);
  if (!(hi > lo)) return out;
  const k = 1 / (hi - lo);
  for (let i = 0; i < values.length; i++) out[i] = Math.max(0, Math.min(1, (values[i] - lo) * k));
  return out;
}

/** @param {Float32Array} values */
function minMax(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return scale(values, lo, hi);
}

/**
 * @param {import("../wire/protocol.js").QMap} map @param {string} mode one of CONTRAST_MODES' ids
 * @returns {Float32Array} one value in 0..1 per cell
 */
export function displayValues(map, mode) {
  const raw = rawValues(map);
  if (mode === "percentile") {
    const sorted = Float32Array.from(raw).sort();
    return scale(raw, percentile(sorted, 5), percentile(sorted, 95));
  }
  if (mode === "log") return minMax(raw.map((v) => Math.log(Math.max(v, 0) + 1e-8)));
  return minMax(raw);
}

/**
 * Summary statistics of a map's raw values (for the detail panel).
 * @param {import("../wire/protocol.js").QMap} map
 */
export function summarise(map) {
  const raw = rawValues(map);
  const sorted = Float32Array.from(raw).sort();
  let sum = 0;
  for (const v of raw) sum += v;
  const mean = raw.length ? sum / raw.length : 0;
  let sq = 0;
  for (const v of raw) sq += (v - mean) ** 2;
  return {
    min: sorted[0] ?? 0, max: sorted[sorted.length - 1] ?? 0, mean, std: raw.length ? Math.sqrt(sq / raw.length) : 0,
    median: percentile(sorted, 50), p5: percentile(sorted, 5), p95: percentile(sorted, 95), sum,
  };
}
