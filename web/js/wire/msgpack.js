// @ts-check
/**
 * A decode-only MessagePack reader: bytes in, plain JS values out.
 *
 * Owns the msgpack byte format (every type of the spec: nil, bool, ints up to 64 bits,
 * float32/64, str as UTF-8, bin, arrays, maps, ext and fixext). It knows nothing about
 * medviz frames; protocol.js turns decoded maps into frames.
 *
 * Mapping: bin -> Uint8Array (a copy), str -> string, map -> plain object when every key
 * is a string (else a Map), 64-bit ints -> Number when safe, BigInt otherwise,
 * ext -> {@link Ext} (timestamp ext -1 is left as an Ext too: medviz never sends one).
 */

export class MsgpackError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "MsgpackError";
  }
}

/** An extension value: application type code and its raw bytes. */
export class Ext {
  /** @param {number} type @param {Uint8Array} data */
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Reads msgpack values from one buffer, advancing an offset. */
class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  /** @param {number} n @returns {number} the offset where those n bytes start */
  take(n) {
    const at = this.pos;
    if (at + n > this.bytes.length) {
      throw new MsgpackError(`truncated input: needed ${n} bytes at offset ${at}, ${this.bytes.length - at} left`);
    }
    this.pos = at + n;
    return at;
  }

  u8() { return this.view.getUint8(this.take(1)); }
  u16() { return this.view.getUint16(this.take(2)); }
  u32() { return this.view.getUint32(this.take(4)); }

  /** @param {boolean} signed */
  int64(signed) {
    const at = this.take(8);
    const big = signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at);
    const small = Number(big);
    return Number.isSafeInteger(small) ? small : big;
  }

  /** @param {number} n */
  raw(n) {
    const at = this.take(n);
    return this.bytes.slice(at, at + n);
  }

  /** @param {number} n */
  str(n) {
    const at = this.take(n);
    try {
      return UTF8.decode(this.bytes.subarray(at, at + n));
    } catch {
      throw new MsgpackError(`invalid UTF-8 in a ${n}-byte string at offset ${at}`);
    }
  }

  /** @param {number} n */
  array(n) {
    const out = new Array(n);
    for (let k = 0; k < n; k++) out[k] = this.value();
    return out;
  }

  /** @param {number} n @returns {Record<string, unknown> | Map<unknown, unknown>} */
  map(n) {
    const keys = new Array(n);
    const values = new Array(n);
    let allStrings = true;
    for (let k = 0; k < n; k++) {
      keys[k] = this.value();
      values[k] = this.value();
      if (typeof keys[k] !== "string") allStrings = false;
    }
    if (!allStrings) return new Map(keys.map((key, k) => [key, values[k]]));
    /** @type {Record<string, unknown>} */
    const obj = {};
    for (let k = 0; k < n; k++) {
      // defineProperty so that a "__proto__" key is data, never a prototype change
      Object.defineProperty(obj, keys[k], { value: values[k], enumerable: true, writable: true, configurable: true });
    }
    return obj;
  }

  /** @param {number} n */
  ext(n) {
    const type = this.view.getInt8(this.take(1));
    return new Ext(type, this.raw(n));
  }

  /** @returns {unknown} */
  value() {
    const at = this.pos;
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b <= 0x8f) return this.map(b & 0x0f);
    if (b <= 0x9f) return this.array(b & 0x0f);
    if (b <= 0xbf) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.raw(this.u8());
      case 0xc5: return this.raw(this.u16());
      case 0xc6: return this.raw(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return this.view.getFloat32(this.take(4));
      case 0xcb: return this.view.getFloat64(this.take(8));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.int64(false);
      case 0xd0: return this.view.getInt8(this.take(1));
      case 0xd1: return this.view.getInt16(this.take(2));
      case 0xd2: return this.view.getInt32(this.take(4));
      case 0xd3: return this.int64(true);
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16());
      case 0xdd: return this.array(this.u32());
      case 0xde: return this.map(this.u16());
      case 0xdf: return this.map(this.u32());
      default: throw new MsgpackError(`unknown type byte 0x${b.toString(16)} at offset ${at}`);
    }
  }
}

/** @param {ArrayBuffer | Uint8Array} input */
function toBytes(input) {
  return input instanceof Uint8Array ? input : new Uint8Array(input);
}

/**
 * Decode exactly one msgpack value; trailing bytes are an error.
 * @param {ArrayBuffer | Uint8Array} input
 * @returns {unknown}
 */
export function decode(input) {
  const reader = new Reader(toBytes(input));
  const value = reader.value();
  if (reader.pos !== reader.bytes.length) {
    throw new MsgpackError(`expected one value, found ${reader.bytes.length - reader.pos} extra bytes at offset ${reader.pos}`);
  }
  return value;
}

/**
 * Decode concatenated values (a recording file). A value cut at the end is dropped and
 * reported through `rest`, the byte count of that incomplete tail.
 * @param {ArrayBuffer | Uint8Array} input
 * @returns {{values: unknown[], rest: number}}
 */
export function decodeAll(input) {
  const reader = new Reader(toBytes(input));
  const values = [];
  while (reader.pos < reader.bytes.length) {
    const start = reader.pos;
    try {
      values.push(reader.value());
    } catch (err) {
      if (err instanceof MsgpackError && err.message.startsWith("truncated")) {
        return { values, rest: reader.bytes.length - start };
      }
      throw err;
    }
  }
  return { values, rest: 0 };
}
