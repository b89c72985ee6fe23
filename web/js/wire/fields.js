// @ts-check
/**
 * Typed reads of decoded msgpack maps: each helper returns one field of the expected
 * type or throws a ProtocolError naming the field, what was expected and what came.
 *
 * Owns only these checks; which fields a frame has is protocol.js's and
 * analysis-protocol.js's business.
 */

export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
export function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
}

/** @param {unknown} v */
export function describe(v) {
  if (v === null) return "nil";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return `a ${typeof v}`;
}

/**
 * @template T
 * @param {Record<string, unknown>} o @param {string} key @param {string} expected
 * @param {(v: unknown) => boolean} ok @returns {T}
 */
export function field(o, key, expected, ok) {
  const v = o[key];
  if (!ok(v)) throw new ProtocolError(`field '${key}' should be ${expected}, got ${describe(v)}`);
  return /** @type {T} */ (v);
}

/** @param {unknown} v */
export const isNum = (v) => typeof v === "number" || typeof v === "bigint";
/** @param {Record<string, unknown>} o @param {string} k @returns {number} */
export const num = (o, k) => Number(field(o, k, "a number", isNum));
/** @param {Record<string, unknown>} o @param {string} k @returns {string} */
export const str = (o, k) => field(o, k, "a string", (v) => typeof v === "string");
/** @param {Record<string, unknown>} o @param {string} k @returns {boolean} */
export const bool = (o, k) => field(o, k, "a boolean", (v) => typeof v === "boolean");
/** @param {Record<string, unknown>} o @param {string} k @returns {Uint8Array} */
export const bin = (o, k) => field(o, k, "bytes", (v) => v instanceof Uint8Array);
/** @param {Record<string, unknown>} o @param {string} k @returns {Record<string, unknown>} */
export const obj = (o, k) => field(o, k, "a map", isObject);
/** @param {Record<string, unknown>} o @param {string} k @returns {unknown[]} */
export const arr = (o, k) => field(o, k, "an array", Array.isArray);
/** @param {Record<string, unknown>} o @param {string} k @returns {number[]} */
export const nums = (o, k) => arr(o, k).map((v, i) => {
  if (!isNum(v)) throw new ProtocolError(`field '${k}[${i}]' should be a number, got ${describe(v)}`);
  return Number(v);
});
/** @param {Record<string, unknown>} o @param {string} k @returns {string | null} */
export const strOrNil = (o, k) => field(o, k, "a string or nil", (v) => v === null || typeof v === "string");
/** A string field that may be nil or absent (null then). @param {Record<string, unknown>} o @param {string} k @returns {string | null} */
export const optStr = (o, k) => (o[k] === undefined || o[k] === null ? null : str(o, k));
/** A number field that may be nil or absent (null then). @param {Record<string, unknown>} o @param {string} k @returns {number | null} */
export const optNum = (o, k) => (o[k] === undefined || o[k] === null ? null : num(o, k));

/**
 * Each element of an array field that must hold maps.
 * @param {Record<string, unknown>} o @param {string} k @returns {Record<string, unknown>[]}
 */
export const maps = (o, k) => arr(o, k).map((v, i) => {
  if (!isObject(v)) throw new ProtocolError(`field '${k}[${i}]' should be a map, got ${describe(v)}`);
  return v;
});

/**
 * @typedef {{lo: number, hi: number, u8: Uint8Array}} QMap  a quantised map; raw = lo + u8/255*(hi-lo)
 */

/**
 * One `[lo, hi, u8]` triple.
 * @param {unknown} entry @param {string} what where it came from, for the error
 * @returns {QMap}
 */
export function qmap(entry, what) {
  if (!Array.isArray(entry) || entry.length !== 3 || !isNum(entry[0]) || !isNum(entry[1]) || !(entry[2] instanceof Uint8Array)) {
    throw new ProtocolError(`${what} should be [lo, hi, bytes], got ${describe(entry)}`);
  }
  return { lo: Number(entry[0]), hi: Number(entry[1]), u8: entry[2] };
}
