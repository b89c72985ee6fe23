// @ts-check
/**
 * The on-demand analysis part of wire protocol v1 (docs/protocol.md): the `analysis`
 * frame the server sends (job status and, when done, its result) and the `analyze` /
 * `cancel_analysis` requests the browser sends on any viewer socket.
 *
 * Owns these field names on the JS side. Results are decoded per kind into typed objects
 * (maps as QMaps, curves as number arrays); a kind this page does not know keeps its
 * result as decoded. Jobs and their views are analysis.js's business.
 */

import { encode } from "./msgpack-encode.js";
import { ProtocolError, arr, bool, describe, isObject, num, nums, obj, qmap, str } from "./wire.js";

/**
 * @typedef {import("./wire.js").QMap} QMap
 * @typedef {{fractions: number[], scores: number[], auc: number}} Curve
 * @typedef {{maps: QMap[]}} GradientResult  one map per image
 * @typedef {{layers: number, heads: number, maps: QMap[], mass: number[], entropy: number[]}} HeadsResult
 *   maps raster over (layer, head, image); mass and entropy raster over (layer, head)
 * @typedef {{method: string, deletion: Curve, insertion: Curve, randomDeletion: Curve, randomInsertion: Curve}} FaithResult
 * @typedef {{perMethod: Record<string, {hit: boolean, iou: number, coverage: number}>, image: number}} AgreementResult
 * @typedef {{type: "analysis", job: string, kind: string, index: number,
 *   status: "queued" | "running" | "done" | "cancelled" | "error", message: string,
 *   result: GradientResult | HeadsResult | FaithResult | AgreementResult | Record<string, unknown> | null}} AnalysisFrame
 * @typedef {{label: string, xywh: [number, number, number, number], image: number}} Box  pixel coordinates of that image
 */

export const STATUSES = ["queued", "running", "done", "cancelled", "error"];

/** @param {Record<string, unknown>} o @param {string} k @returns {QMap[]} */
const qmaps = (o, k) => arr(o, k).map((e, i) => qmap(e, `${k}[${i}]`));

/** @param {Record<string, unknown>} c @returns {Curve} */
const curve = (c) => ({ fractions: nums(c, "fractions"), scores: nums(c, "scores"), auc: num(c, "auc") });

/** @type {Record<string, (r: Record<string, unknown>) => AnalysisFrame["result"]>} */
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
    result: raw === null || raw === undefined ? null : read ? read(raw) : raw,
  };
}

/**
 * @typedef {{kind: string, index: number, method?: string, boxes?: Box[], steps?: number}} AnalyzeRequest
 */

/** @param {AnalyzeRequest} r @returns {Uint8Array} */
export function encodeAnalyze(r) {
  return encode({
    v: 1, type: "analyze", kind: r.kind, index: Math.round(r.index),
    ...(r.method !== undefined ? { method: r.method } : {}),
    ...(r.boxes !== undefined ? {
      boxes: r.boxes.map((b) => ({ label: b.label, xywh: b.xywh.map((x) => Math.round(x)), image: Math.round(b.image) })),
    } : {}),
    ...(r.steps !== undefined ? { steps: Math.round(r.steps) } : {}),
  });
}

/** @param {string} job @returns {Uint8Array} */
export function encodeCancelAnalysis(job) {
  return encode({ v: 1, type: "cancel_analysis", job });
}
