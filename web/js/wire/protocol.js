// @ts-check
/**
 * Wire protocol v2 (medviz_core/wire/server_frames.py, client_frames.py) for the browser:
 * msgpack frames <-> plain objects.
 *
 * Owns the field names of the session frames on the JS side: decoding server frames into
 * typed objects (every image of a session in `images`, one block of maps and statistics
 * per image in each step, quantised maps as Uint8Array with their lo/hi, region polygons
 * decoded from uint16 pairs, what a token read as `context` links) and building the
 * client's request frames. The `analysis` frame and its requests live in
 * analysis-protocol.js; the typed field reads in wire.js. Version 1 frames are refused: the
 * server upgrades v1 recordings before a replay sends them. It does no I/O (session.js)
 * and no drawing (heatmap.js, overlay.js).
 */

import { decodeAnalysis } from "./analysis-protocol.js";
import { decode } from "./msgpack.js";
import { encode, Float } from "./msgpack-encode.js";
import {
  ProtocolError, arr, bin, bool, describe, isNum, isObject, maps, num, nums, obj, optNum, optStr, qmap, str, strOrNil,
} from "./fields.js";

export { ProtocolError };
export const VERSION = 2;

/**
 * @typedef {import("./fields.js").QMap} QMap
 * @typedef {{poly: Float32Array, box: number[], mass: number, zone: string}} Region  poly: x,y,x,y… in 0..1
 * @typedef {{name: string, layers: number, heads: number, kvHeads: number, grid: [number, number],
 *   imageTokenId: number, slidingWindow: number | null, fullLayers: number[], device: string, dtype: string,
 *   standIn: boolean}} ModelInfo  standIn: an offline stand-in (tiny, demo, random:*), untrained for medicine
 * @typedef {{png: Uint8Array, width: number, height: number, label: string, positions: number[]}} ImageInfo
 * @typedef {{tokenIds: number[], tokens: string[], imagePositions: number[], question: string | null,
 *   preset: string, primer: string}} PromptInfo  tokens: each position's text ("" for image tokens); empty in old
 *   recordings. primer: the answer's first words as the template primed them ("Findings: The"), "" when none
 * @typedef {{maxNewTokens: number, temperature: number, topP: number, topK: number, repetitionPenalty: number,
 *   seed: number | null}} Params
 * @typedef {{type: "start", session: string, model: ModelInfo, prompt: PromptInfo, images: ImageInfo[],
 *   methods: string[], params: Params, created: number, recording: string | null}} StartFrame
 * @typedef {{maps: Record<string, QMap>, share: number, ent: number, entN: number, peak: [number, number],
 *   zone: string, regions: Region[]}} ImageMaps  one image's part of a step
 * @typedef {{position: number, value: number}} ContextLink  a text position the token read, and how much
 * @typedef {{type: "step", i: number, tokenId: number, text: string, pos: number, tMs: number, mass: number,
 *   images: ImageMaps[], context: ContextLink[], sink: number, modelMs: number, mapsMs: number, seeing: number,
 *   special: boolean}} StepFrame  mass: the share of attention on all images; sink: on position 0
 * @typedef {{type: "end", reason: string, tokens: number, text: string, prefillMs: number, totalMs: number,
 *   message: string, timings: Record<string, number>}} EndFrame
 * @typedef {{type: "error", code: string, message: string, id: string | null}} ErrorFrame  id: the request it answers
 * @typedef {{type: "queued", position: number}} QueuedFrame
 * @typedef {{type: "replay", recording: string, steps: number, speed: number, paused: boolean, at: number}} ReplayFrame
 * @typedef {{type: "owner", session: string, key: string, graceS: number}} OwnerFrame  to the owner's socket only
 * @typedef {import("./analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {StartFrame | StepFrame | EndFrame | ErrorFrame | QueuedFrame | ReplayFrame | AnalysisFrame | OwnerFrame} Frame
 */

/** @param {Record<string, unknown>} m @returns {ModelInfo} */
function decodeModel(m) {
  const grid = nums(m, "grid");
  return {
    name: str(m, "name"), layers: num(m, "layers"), heads: num(m, "heads"), kvHeads: num(m, "kv_heads"),
    grid: [grid[0], grid[1]], imageTokenId: num(m, "image_token_id"), slidingWindow: optNum(m, "sliding_window"),
    fullLayers: nums(m, "full_layers"), device: str(m, "device"), dtype: str(m, "dtype"),
    standIn: m.stand_in === undefined || m.stand_in === null ? standInByName(str(m, "name")) : bool(m, "stand_in"),
  };
}

/**
 * The protocol's default for `stand_in` in recordings made before the field (docs/protocol.md,
 * as medviz_core/types.py is_stand_in reads it): the name before any "?" is tiny or demo, or
 * starts with "random:". Frames that state the field are taken as they say.
 * @param {string} name
 */
function standInByName(name) {
  const base = name.split("?")[0];
  return base === "tiny" || base === "demo" || base.startsWith("random:");
}

/** @param {Record<string, unknown>} m @returns {ImageInfo} */
function decodeImage(m) {
  return { png: bin(m, "png"), width: num(m, "width"), height: num(m, "height"), label: str(m, "label"), positions: nums(m, "positions") };
}

/** @param {Record<string, unknown>} p @returns {PromptInfo} */
function decodePrompt(p) {
  return {
    tokenIds: nums(p, "token_ids"),
    tokens: p.tokens === undefined || p.tokens === null ? [] : arr(p, "tokens").map(String),
    imagePositions: nums(p, "image_positions"), question: strOrNil(p, "question"),
    preset: optStr(p, "preset") ?? "medviz", primer: optStr(p, "primer") ?? "",
  };
}

/** @param {Record<string, unknown>} p @returns {Params} */
function decodeParams(p) {
  return {
    maxNewTokens: num(p, "max_new_tokens"), temperature: num(p, "temperature"), topP: num(p, "top_p"),
    topK: num(p, "top_k"), repetitionPenalty: num(p, "repetition_penalty"), seed: optNum(p, "seed"),
  };
}

/** @param {Record<string, unknown>} f @returns {StartFrame} */
function decodeStart(f) {
  const images = maps(f, "images").map(decodeImage);
  if (images.length === 0) throw new ProtocolError("a start frame should hold at least one image, got none");
  return {
    type: "start", session: str(f, "session"), model: decodeModel(obj(f, "model")), prompt: decodePrompt(obj(f, "prompt")),
    images, methods: arr(f, "methods").map(String), params: decodeParams(obj(f, "params")), created: num(f, "created"),
    recording: optStr(f, "recording"),
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

/** @param {Record<string, unknown>} f one entry of a step's `images` @returns {ImageMaps} */
function decodeImageMaps(f) {
  /** @type {Record<string, QMap>} */
  const qmaps = {};
  for (const [method, entry] of Object.entries(obj(f, "maps"))) qmaps[method] = qmap(entry, `map '${method}'`);
  const regions = arr(f, "regions").map((r, k) => {
    if (!isObject(r)) throw new ProtocolError(`region ${k} should be a map, got ${describe(r)}`);
    return { poly: decodePoly(bin(r, "poly")), box: nums(r, "box"), mass: num(r, "mass"), zone: str(r, "zone") };
  });
  const peak = nums(f, "peak");
  if (peak.length !== 2) throw new ProtocolError(`field 'peak' should be [row, col], got ${peak.length} numbers`);
  return {
    maps: qmaps, share: num(f, "share"), ent: num(f, "ent"), entN: num(f, "ent_n"),
    peak: [peak[0], peak[1]], zone: str(f, "zone"), regions,
  };
}

/** @param {Record<string, unknown>} f @returns {ContextLink[]} largest first, as sent */
function decodeContext(f) {
  if (f.context === undefined || f.context === null) return [];
  return arr(f, "context").map((link, k) => {
    if (!Array.isArray(link) || link.length !== 2 || !isNum(link[0]) || !isNum(link[1])) {
      throw new ProtocolError(`field 'context[${k}]' should be [position, value], got ${describe(link)}`);
    }
    return { position: Number(link[0]), value: Number(link[1]) };
  });
}

/** @param {Record<string, unknown>} f @returns {StepFrame} */
function decodeStep(f) {
  const images = maps(f, "images").map(decodeImageMaps);
  if (images.length === 0) throw new ProtocolError("a step frame should hold at least one image, got none");
  return {
    type: "step", i: num(f, "i"), tokenId: num(f, "token_id"), text: str(f, "text"), pos: num(f, "pos"),
    tMs: num(f, "t_ms"), mass: num(f, "mass"), images, context: decodeContext(f), sink: optNum(f, "sink") ?? 0,
    modelMs: num(f, "model_ms"), mapsMs: num(f, "maps_ms"), seeing: num(f, "seeing"), special: bool(f, "special"),
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
  error: (f) => ({ type: "error", code: str(f, "code"), message: str(f, "message"), id: optStr(f, "id") }),
  queued: (f) => ({ type: "queued", position: num(f, "position") }),
  replay: (f) => ({
    type: "replay", recording: str(f, "recording"), steps: num(f, "steps"), speed: num(f, "speed"),
    paused: bool(f, "paused"), at: num(f, "at"),
  }),
  analysis: decodeAnalysis,
  owner: (f) => ({ type: "owner", session: str(f, "session"), key: str(f, "key"), graceS: num(f, "grace_s") }),
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
 * What a session samples with; absent fields are the model's suggestion (the server's Engine.suggested).
 * @typedef {{maxNewTokens?: number, temperature?: number, topP?: number, topK?: number, repetitionPenalty?: number,
 *   seed?: number | null}} ParamsRequest
 * @typedef {{images: Uint8Array[], labels?: string[], question: string | null, preset?: string | null,
 *   params: ParamsRequest, methods?: string[] | null, record: boolean, pacs?: PacsPick}} StartRequest  preset: null for "medviz";
 *   pacs: a study in the server's PACS instead of files (then `images` and `labels` are empty)
 * @typedef {{study: string, series: string | null, instances: string[]}} PacsPick
 */

/** @param {ParamsRequest} p */
function encodeParams(p) {
  return {
    ...(p.maxNewTokens !== undefined ? { max_new_tokens: Math.round(p.maxNewTokens) } : {}),
    ...(p.temperature !== undefined ? { temperature: new Float(p.temperature) } : {}),
    ...(p.topP !== undefined ? { top_p: new Float(p.topP) } : {}),
    ...(p.topK !== undefined ? { top_k: Math.round(p.topK) } : {}),
    ...(p.repetitionPenalty !== undefined ? { repetition_penalty: new Float(p.repetitionPenalty) } : {}),
    ...(p.seed !== undefined && p.seed !== null ? { seed: Math.round(p.seed) } : {}),
  };
}

/** @param {StartRequest} r @returns {Uint8Array} */
export function encodeStart(r) {
  return encode({
    v: VERSION, type: "start", images: r.images, labels: r.labels ?? [], question: r.question,
    prompt: r.preset ?? null, params: encodeParams(r.params), methods: r.methods ?? null, record: r.record,
    ...(r.pacs ? { pacs: { study: r.pacs.study, series: r.pacs.series, instances: r.pacs.instances } } : {}),
  });
}

/** Take a live session back as its owner (a reloaded page). @param {string} session @param {string} key @returns {Uint8Array} */
export function encodeRejoin(session, key) {
  return encode({ v: VERSION, type: "rejoin", session, key });
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
