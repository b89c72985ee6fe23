// @ts-check
/**
 * Wire protocol v1 (docs/protocol.md) for the browser: msgpack frames <-> plain objects.
 *
 * Owns the field names of the session frames on the JS side: decoding server frames into
 * typed objects (quantised maps as Uint8Array with their lo/hi, region polygons decoded
 * from uint16 pairs, the extra images of a multi-image session under `more`) and building
 * the client's request frames. The `analysis` frame and its requests live in
 * analysis-protocol.js; the typed field reads in wire.js. It does no I/O (session.js)
 * and no drawing (heatmap.js, overlay.js).
 */

import { decodeAnalysis } from "./analysis-protocol.js";
import { decode } from "./msgpack.js";
import { encode, Float } from "./msgpack-encode.js";
import { ProtocolError, arr, bin, bool, describe, isObject, maps, num, nums, obj, qmap, str, strOrNil } from "./wire.js";

export { ProtocolError };
export const VERSION = 1;

/**
 * @typedef {import("./wire.js").QMap} QMap
 * @typedef {{poly: Float32Array, box: number[], mass: number, zone: string}} Region  poly: x,y,x,y… in 0..1
 * @typedef {{name: string, layers: number, heads: number, kvHeads: number, grid: [number, number],
 *   imageTokenId: number, slidingWindow: number | null, fullLayers: number[], device: string, dtype: string}} ModelInfo
 * @typedef {{png: Uint8Array, width: number, height: number, label: string, positions: number[]}} ImageInfo
 * @typedef {{type: "start", session: string, model: ModelInfo,
 *   prompt: {tokenIds: number[], imagePositions: number[], question: string | null},
 *   image: ImageInfo, more: ImageInfo[], methods: string[],
 *   params: Record<string, unknown>, created: number, recording: string | null}} StartFrame
 * @typedef {{maps: Record<string, QMap>, mass: number, ent: number, entN: number, peak: [number, number],
 *   zone: string, regions: Region[]}} Focus  what one image of a step shows
 * @typedef {{type: "step", i: number, tokenId: number, text: string, pos: number, tMs: number,
 *   maps: Record<string, QMap>, mass: number, ent: number, entN: number, peak: [number, number],
 *   zone: string, regions: Region[], modelMs: number, mapsMs: number, seeing: number, special: boolean,
 *   shares: number[] | null, more: Focus[]}} StepFrame
 * @typedef {{type: "end", reason: string, tokens: number, text: string, prefillMs: number, totalMs: number,
 *   message: string, timings: Record<string, number>}} EndFrame
 * @typedef {{type: "error", code: string, message: string}} ErrorFrame
 * @typedef {{type: "queued", position: number}} QueuedFrame
 * @typedef {{type: "replay", recording: string, steps: number, speed: number, paused: boolean, at: number}} ReplayFrame
 * @typedef {import("./analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {StartFrame | StepFrame | EndFrame | ErrorFrame | QueuedFrame | ReplayFrame | AnalysisFrame} Frame
 */

/** @param {Record<string, unknown>} m @returns {ModelInfo} */
function decodeModel(m) {
  const sw = m.sliding_window;
  const grid = nums(m, "grid");
  return {
    name: str(m, "name"), layers: num(m, "layers"), heads: num(m, "heads"), kvHeads: num(m, "kv_heads"),
    grid: [grid[0], grid[1]], imageTokenId: num(m, "image_token_id"),
    slidingWindow: sw === null || sw === undefined ? null : num(m, "sliding_window"),
    fullLayers: nums(m, "full_layers"), device: str(m, "device"), dtype: str(m, "dtype"),
  };
}

/**
 * One image of a start frame; a frame from before multi-image sessions has no label and
 * its positions are the prompt's.
 * @param {Record<string, unknown>} m @param {number[]} fallback positions when absent
 * @returns {ImageInfo}
 */
function decodeImage(m, fallback) {
  return {
    png: bin(m, "png"), width: num(m, "width"), height: num(m, "height"),
    label: m.label === undefined ? "" : str(m, "label"),
    positions: m.positions === undefined ? fallback : nums(m, "positions"),
  };
}

/** @param {Record<string, unknown>} f @returns {StartFrame} */
function decodeStart(f) {
  const prompt = obj(f, "prompt");
  const positions = nums(prompt, "image_positions");
  return {
    type: "start", session: str(f, "session"), model: decodeModel(obj(f, "model")),
    prompt: { tokenIds: nums(prompt, "token_ids"), imagePositions: positions, question: strOrNil(prompt, "question") },
    image: decodeImage(obj(f, "image"), positions),
    more: f.more === undefined || f.more === null ? [] : maps(f, "more").map((m) => decodeImage(m, [])),
    methods: arr(f, "methods").map(String), params: obj(f, "params"), created: num(f, "created"),
    recording: typeof f.recording === "string" ? f.recording : null,
  };
}

/**
 * uint16 little-endian (x, y) pairs -> normalised coordinates 0..1.
 * @param {Uint8Array} bytes @returns {Float32Array}
 */
export function decodePoly(bytes) {
  if (bytes.length % 4 !== 0) throw new ProtocolError(`region polygon should be whole (x, y) uint16 pairs, got ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 2);
  for (let k = 0; k < out.length; k++) out[k] = view.getUint16(2 * k, true) / 65535;
  return out;
}

/**
 * The per-image part of a step: maps, statistics and regions (top level for the first image).
 * @param {Record<string, unknown>} f @returns {Focus}
 */
function decodeFocus(f) {
  /** @type {Record<string, QMap>} */
  const qmaps = {};
  for (const [method, entry] of Object.entries(obj(f, "maps"))) qmaps[method] = qmap(entry, `map '${method}'`);
  const regions = arr(f, "regions").map((r, k) => {
    if (!isObject(r)) throw new ProtocolError(`region ${k} should be a map, got ${describe(r)}`);
    return { poly: decodePoly(bin(r, "poly")), box: nums(r, "box"), mass: num(r, "mass"), zone: str(r, "zone") };
  });
  const peak = nums(f, "peak");
  return {
    maps: qmaps, mass: num(f, "mass"), ent: num(f, "ent"), entN: num(f, "ent_n"),
    peak: [peak[0], peak[1]], zone: str(f, "zone"), regions,
  };
}

/** @param {Record<string, unknown>} f @returns {StepFrame} */
function decodeStep(f) {
  return {
    type: "step", i: num(f, "i"), tokenId: num(f, "token_id"), text: str(f, "text"), pos: num(f, "pos"),
    tMs: num(f, "t_ms"), ...decodeFocus(f), modelMs: num(f, "model_ms"),
    mapsMs: num(f, "maps_ms"), seeing: num(f, "seeing"), special: bool(f, "special"),
    shares: f.shares === undefined || f.shares === null ? null : nums(f, "shares"),
    more: f.more === undefined || f.more === null ? [] : maps(f, "more").map(decodeFocus),
  };
}

/** @param {Record<string, unknown>} f @returns {EndFrame} */
function decodeEnd(f) {
  /** @type {Record<string, number>} */
  const timings = {};
  for (const [k, v] of Object.entries(obj(f, "timings"))) timings[k] = Number(v);
  return {
    type: "end", reason: str(f, "reason"), tokens: num(f, "tokens"), text: str(f, "text"),
    prefillMs: num(f, "prefill_ms"), totalMs: num(f, "total_ms"), message: str(f, "message"), timings,
  };
}

/** @type {Record<string, (f: Record<string, unknown>) => Frame>} */
const DECODERS = {
  start: decodeStart,
  step: decodeStep,
  end: decodeEnd,
  error: (f) => ({ type: "error", code: str(f, "code"), message: str(f, "message") }),
  queued: (f) => ({ type: "queued", position: num(f, "position") }),
  replay: (f) => ({
    type: "replay", recording: str(f, "recording"), steps: num(f, "steps"), speed: num(f, "speed"),
    paused: bool(f, "paused"), at: num(f, "at"),
  }),
  analysis: decodeAnalysis,
};

/**
 * A decoded msgpack value -> frame object.
 * @param {unknown} value @returns {Frame}
 */
export function frameFromValue(value) {
  if (!isObject(value)) throw new ProtocolError(`a frame should be a map, got ${describe(value)}`);
  if (value.v !== VERSION) throw new ProtocolError(`protocol version should be ${VERSION}, got ${String(value.v)}`);
  const type = str(value, "type");
  const decoder = DECODERS[type];
  if (!decoder) throw new ProtocolError(`unknown frame type '${type}'`);
  return decoder(value);
}

/**
 * Bytes of one websocket message -> frame object.
 * @param {ArrayBuffer | Uint8Array} bytes @returns {Frame}
 */
export function decodeFrame(bytes) {
  return frameFromValue(decode(bytes));
}

/**
 * @typedef {{images: Uint8Array[], labels?: string[], question: string | null, maxNewTokens: number,
 *   temperature: number, topP?: number, topK?: number, repetitionPenalty?: number, seed?: number | null,
 *   methods?: string[] | null, record: boolean}} StartRequest
 */

/**
 * One image goes out as `image` (what every server understands); several as `images` + `labels`.
 * @param {StartRequest} r @returns {Uint8Array}
 */
export function encodeStart(r) {
  const one = r.images.length === 1 && !(r.labels ?? []).some(Boolean);
  return encode({
    v: VERSION, type: "start", ...(one ? { image: r.images[0] } : { images: r.images, labels: r.labels ?? [] }),
    question: r.question, max_new_tokens: Math.round(r.maxNewTokens),
    temperature: new Float(r.temperature), top_p: new Float(r.topP ?? 1), top_k: Math.round(r.topK ?? 0),
    repetition_penalty: new Float(r.repetitionPenalty ?? 1), seed: r.seed ?? null, methods: r.methods ?? null,
    record: r.record,
  });
}

/** @param {"cancel" | "pause" | "resume"} type @returns {Uint8Array} */
export function encodeCommand(type) {
  return encode({ v: VERSION, type });
}

/** @param {number} index @returns {Uint8Array} */
export function encodeSeek(index) {
  return encode({ v: VERSION, type: "seek", index: Math.round(index) });
}

/** @param {number} value @returns {Uint8Array} */
export function encodeSpeed(value) {
  return encode({ v: VERSION, type: "speed", value: new Float(value) });
}

/**
 * Raw value of one cell: lo + u8/255 * (hi - lo).
 * @param {QMap} map @returns {Float32Array}
 */
export function rawValues(map) {
  const out = new Float32Array(map.u8.length);
  const scale = (map.hi - map.lo) / 255;
  for (let k = 0; k < out.length; k++) out[k] = map.lo + map.u8[k] * scale;
  return out;
}
