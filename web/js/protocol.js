// @ts-check
/**
 * Wire protocol v1 (docs/protocol.md) for the browser: msgpack frames <-> plain objects.
 *
 * Owns every field name of the wire format on the JS side: decoding server frames into
 * typed objects (quantised maps as Uint8Array with their lo/hi, region polygons decoded
 * from uint16 pairs) and building the client's request frames. It does no I/O (session.js)
 * and no drawing (heatmap.js, overlay.js).
 */

import { decode } from "./msgpack.js";
import { encode, Float } from "./msgpack-encode.js";

export const VERSION = 1;

export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * @typedef {{lo: number, hi: number, u8: Uint8Array}} QMap  a quantised map; raw = lo + u8/255*(hi-lo)
 * @typedef {{poly: Float32Array, box: number[], mass: number, zone: string}} Region  poly: x,y,x,y… in 0..1
 * @typedef {{name: string, layers: number, heads: number, kvHeads: number, grid: [number, number],
 *   imageTokenId: number, slidingWindow: number | null, fullLayers: number[], device: string, dtype: string}} ModelInfo
 * @typedef {{type: "start", session: string, model: ModelInfo,
 *   prompt: {tokenIds: number[], imagePositions: number[], question: string | null},
 *   image: {png: Uint8Array, width: number, height: number}, methods: string[],
 *   params: Record<string, unknown>, created: number, recording: string | null}} StartFrame
 * @typedef {{type: "step", i: number, tokenId: number, text: string, pos: number, tMs: number,
 *   maps: Record<string, QMap>, mass: number, ent: number, entN: number, peak: [number, number],
 *   zone: string, regions: Region[], modelMs: number, mapsMs: number, seeing: number, special: boolean}} StepFrame
 * @typedef {{type: "end", reason: string, tokens: number, text: string, prefillMs: number, totalMs: number,
 *   message: string, timings: Record<string, number>}} EndFrame
 * @typedef {{type: "error", code: string, message: string}} ErrorFrame
 * @typedef {{type: "queued", position: number}} QueuedFrame
 * @typedef {{type: "replay", recording: string, steps: number, speed: number, paused: boolean, at: number}} ReplayFrame
 * @typedef {StartFrame | StepFrame | EndFrame | ErrorFrame | QueuedFrame | ReplayFrame} Frame
 */

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
}

/** @param {unknown} v */
function describe(v) {
  if (v === null) return "nil";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return `a ${typeof v}`;
}

/**
 * @template T
 * @param {Record<string, unknown>} o @param {string} key @param {string} expected
 * @param {(v: unknown) => boolean} ok @returns {T}
 */
function field(o, key, expected, ok) {
  const v = o[key];
  if (!ok(v)) throw new ProtocolError(`field '${key}' should be ${expected}, got ${describe(v)}`);
  return /** @type {T} */ (v);
}

/** @param {unknown} v */
const isNum = (v) => typeof v === "number" || typeof v === "bigint";
/** @param {Record<string, unknown>} o @param {string} k @returns {number} */
const num = (o, k) => Number(field(o, k, "a number", isNum));
/** @param {Record<string, unknown>} o @param {string} k @returns {string} */
const str = (o, k) => field(o, k, "a string", (v) => typeof v === "string");
/** @param {Record<string, unknown>} o @param {string} k @returns {boolean} */
const bool = (o, k) => field(o, k, "a boolean", (v) => typeof v === "boolean");
/** @param {Record<string, unknown>} o @param {string} k @returns {Uint8Array} */
const bin = (o, k) => field(o, k, "bytes", (v) => v instanceof Uint8Array);
/** @param {Record<string, unknown>} o @param {string} k @returns {Record<string, unknown>} */
const obj = (o, k) => field(o, k, "a map", isObject);
/** @param {Record<string, unknown>} o @param {string} k @returns {unknown[]} */
const arr = (o, k) => field(o, k, "an array", Array.isArray);
/** @param {Record<string, unknown>} o @param {string} k @returns {number[]} */
const nums = (o, k) => arr(o, k).map((v, i) => {
  if (!isNum(v)) throw new ProtocolError(`field '${k}[${i}]' should be a number, got ${describe(v)}`);
  return Number(v);
});
/** @param {Record<string, unknown>} o @param {string} k @returns {string | null} */
const strOrNil = (o, k) => field(o, k, "a string or nil", (v) => v === null || typeof v === "string");

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

/** @param {Record<string, unknown>} f @returns {StartFrame} */
function decodeStart(f) {
  const prompt = obj(f, "prompt");
  const image = obj(f, "image");
  return {
    type: "start", session: str(f, "session"), model: decodeModel(obj(f, "model")),
    prompt: { tokenIds: nums(prompt, "token_ids"), imagePositions: nums(prompt, "image_positions"), question: strOrNil(prompt, "question") },
    image: { png: bin(image, "png"), width: num(image, "width"), height: num(image, "height") },
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

/** @param {Record<string, unknown>} f @returns {StepFrame} */
function decodeStep(f) {
  /** @type {Record<string, QMap>} */
  const maps = {};
  for (const [method, entry] of Object.entries(obj(f, "maps"))) {
    if (!Array.isArray(entry) || entry.length !== 3 || !isNum(entry[0]) || !isNum(entry[1]) || !(entry[2] instanceof Uint8Array)) {
      throw new ProtocolError(`map '${method}' should be [lo, hi, bytes], got ${describe(entry)}`);
    }
    maps[method] = { lo: Number(entry[0]), hi: Number(entry[1]), u8: entry[2] };
  }
  const regions = arr(f, "regions").map((r, k) => {
    if (!isObject(r)) throw new ProtocolError(`region ${k} should be a map, got ${describe(r)}`);
    return { poly: decodePoly(bin(r, "poly")), box: nums(r, "box"), mass: num(r, "mass"), zone: str(r, "zone") };
  });
  const peak = nums(f, "peak");
  return {
    type: "step", i: num(f, "i"), tokenId: num(f, "token_id"), text: str(f, "text"), pos: num(f, "pos"),
    tMs: num(f, "t_ms"), maps, mass: num(f, "mass"), ent: num(f, "ent"), entN: num(f, "ent_n"),
    peak: [peak[0], peak[1]], zone: str(f, "zone"), regions, modelMs: num(f, "model_ms"),
    mapsMs: num(f, "maps_ms"), seeing: num(f, "seeing"), special: bool(f, "special"),
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
 * @typedef {{image: Uint8Array, question: string | null, maxNewTokens: number, temperature: number,
 *   topP?: number, topK?: number, repetitionPenalty?: number, seed?: number | null,
 *   methods?: string[] | null, record: boolean}} StartRequest
 */

/** @param {StartRequest} r @returns {Uint8Array} */
export function encodeStart(r) {
  return encode({
    v: VERSION, type: "start", image: r.image, question: r.question, max_new_tokens: Math.round(r.maxNewTokens),
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
