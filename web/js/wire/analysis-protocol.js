// @ts-check
/**
 * The on-demand analysis part of wire protocol v2 (medviz_core/wire/results.py,
 * client_frames.py): the `analysis` frame the server sends (a job's status and, when done,
 * its result, with the `id` of the request it answers) and the `analyze` /
 * `cancel_analysis` requests the browser sends on any viewer socket, each with its own id.
 *
 * Owns these field names on the JS side. Results are decoded per kind into typed objects
 * (maps and volumes as QMaps, curves as number arrays, a DICOM export as zip bytes); a
 * kind this page does not know keeps its result as decoded. Jobs and their views are
 * analysis.js's business.
 */

import { encode } from "./msgpack-encode.js";
import { ProtocolError, arr, bin, bool, describe, isObject, num, nums, obj, optStr, qmap, str } from "./fields.js";

/**
 * @typedef {import("./fields.js").QMap} QMap
 * @typedef {{fractions: number[], scores: number[], auc: number}} Curve
 * @typedef {{maps: QMap[]}} GradientResult  one map per image
 * @typedef {{layers: number, heads: number, maps: QMap[], mass: number[], entropy: number[]}} HeadsResult
 *   maps raster over (layer, head, image); mass and entropy raster over (layer, head)
 * @typedef {{method: string, deletion: Curve, insertion: Curve, randomDeletion: Curve, randomInsertion: Curve}} FaithResult
 * @typedef {{perMethod: Record<string, {hit: boolean, iou: number, coverage: number}>, image: number}} AgreementResult
 * @typedef {{method: string, size: number, volume: QMap, peak: [number, number, number] | null, frontal: number,
 *   lateral: number}} VolumeResult  volume: size^3 values in [y, x, z] order; peak [y, x, z]
 * @typedef {{zip: Uint8Array, names: string[], notes: string[]}} DicomResult  notes: what a user must read
 * @typedef {GradientResult | HeadsResult | FaithResult | AgreementResult | VolumeResult | DicomResult} AnalysisResult
 * @typedef {{type: "analysis", job: string, kind: string, index: number,
 *   status: "queued" | "running" | "done" | "cancelled" | "error", message: string,
 *   result: AnalysisResult | Record<string, unknown> | null, id: string | null}} AnalysisFrame
 *   id: the request it answers (null for frames replayed from a recording)
 * @typedef {{label: string, xywh: [number, number, number, number], image: number}} Box  pixel coordinates of that image
 */

export const STATUSES = ["queued", "running", "done", "cancelled", "error"];

/** @param {Record<string, unknown>} o @param {string} k @returns {QMap[]} */
const qmaps = (o, k) => arr(o, k).map((e, i) => qmap(e, `${k}[${i}]`));

/** @param {Record<string, unknown>} c @returns {Curve} */
const curve = (c) => ({ fractions: nums(c, "fractions"), scores: nums(c, "scores"), auc: num(c, "auc") });

/** @param {Record<string, unknown>} r @returns {VolumeResult} */
function volume(r) {
  const peak = r.peak === null || r.peak === undefined ? null : nums(r, "peak");
  if (peak && peak.length !== 3) throw new ProtocolError(`field 'peak' should be [y, x, z] or nil, got ${peak.length} numbers`);
  return {
    method: str(r, "method"), size: num(r, "size"), volume: qmap(r.volume, "volume"),
    peak: peak ? [peak[0], peak[1], peak[2]] : null, frontal: num(r, "frontal"), lateral: num(r, "lateral"),
  };
}

/** @type {Record<string, (r: Record<string, unknown>) => AnalysisResult>} */
const RESULTS = {
  gradient: (r) => ({ maps: qmaps(r, "maps") }),
  heads: (r) => ({
    layers: num(r, "layers"), heads: num(r, "heads"), maps: qmaps(r, "maps"), mass: nums(r, "mass"), entropy: nums(r, "entropy"),
  }),
  faithfulness: (r) => ({
    method: str(r, "method"), deletion: curve(obj(r, "deletion")), insertion: curve(obj(r, "insertion")),
    randomDeletion: curve(obj(r, "random_deletion")), randomInsertion: curve(obj(r, "random_insertion")),
  }),
  agreement: (r) => {
    /** @type {AgreementResult["perMethod"]} */
    const perMethod = {};
    for (const [m, v] of Object.entries(obj(r, "per_method"))) {
      if (!isObject(v)) throw new ProtocolError(`per_method '${m}' should be a map, got ${describe(v)}`);
      perMethod[m] = { hit: bool(v, "hit"), iou: num(v, "iou"), coverage: num(v, "coverage") };
    }
    return { perMethod, image: num(r, "image") };
  },
  volume,
  dicom: (r) => ({ zip: bin(r, "zip"), names: arr(r, "names").map(String), notes: arr(r, "notes").map(String) }),
};

/** @param {Record<string, unknown>} f @returns {AnalysisFrame} */
export function decodeAnalysis(f) {
  const kind = str(f, "kind");
  const status = str(f, "status");
  if (!STATUSES.includes(status)) throw new ProtocolError(`field 'status' should be one of ${STATUSES.join(", ")}, got '${status}'`);
  const raw = f.result;
  if (raw !== null && raw !== undefined && !isObject(raw)) throw new ProtocolError(`field 'result' should be a map or nil, got ${describe(raw)}`);
  const read = RESULTS[kind];
  return {
    type: "analysis", job: str(f, "job"), kind, index: num(f, "index"),
    status: /** @type {AnalysisFrame["status"]} */ (status), message: typeof f.message === "string" ? f.message : "",
    result: raw === null || raw === undefined ? null : read ? read(raw) : raw, id: optStr(f, "id"),
  };
}

/**
 * @typedef {{kind: string, index: number, method?: string, boxes?: Box[], steps?: number}} AnalyzeRequest
 */

/**
 * @param {AnalyzeRequest} r @param {string} id the request's own id (1..64 characters), echoed in its answers
 * @returns {Uint8Array}
 */
export function encodeAnalyze(r, id) {
  return encode({
    v: 2, type: "analyze", kind: r.kind, index: Math.round(r.index), id,
    ...(r.method !== undefined ? { method: r.method } : {}),
    ...(r.boxes !== undefined ? {
      boxes: r.boxes.map((b) => ({ label: b.label, xywh: b.xywh.map((x) => Math.round(x)), image: Math.round(b.image) })),
    } : {}),
    ...(r.steps !== undefined ? { steps: Math.round(r.steps) } : {}),
  });
}

/** @param {string} job @param {string} id @returns {Uint8Array} */
export function encodeCancelAnalysis(job, id) {
  return encode({ v: 2, type: "cancel_analysis", job, id });
}
