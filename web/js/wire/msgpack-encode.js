// @ts-check
/**
 * The small msgpack writer the browser needs for its own requests (start, cancel, seek…).
 *
 * Owns only encoding of the value kinds our client frames use: null, booleans, integers,
 * float64, strings, Uint8Array (bin), arrays and plain objects with string keys. Decoding
 * lives in msgpack.js; frame field names live in protocol.js.
 */

const UTF8 = new TextEncoder();

/** A number that must go out as float64 even when it is whole (temperature 1 -> 1.0). */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}

/** A growable byte buffer. */
class Writer {
  constructor() {
    this.bytes = new Uint8Array(256);
    this.view = new DataView(this.bytes.buffer);
    this.pos = 0;
  }

  /** @param {number} n */
  reserve(n) {
    if (this.pos + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.pos));
    this.bytes = next;
    this.view = new DataView(next.buffer);
  }

  /** @param {number} b */
  u8(b) { this.reserve(1); this.view.setUint8(this.pos, b); this.pos += 1; }
  /** @param {number} v */
  u16(v) { this.reserve(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  /** @param {number} v */
  u32(v) { this.reserve(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  /** @param {Uint8Array} b */
  raw(b) { this.reserve(b.length); this.bytes.set(b, this.pos); this.pos += b.length; }

  /** @param {number} v */
  int(v) {
    if (v >= 0 && v <= 0x7f) this.u8(v);
    else if (v < 0 && v >= -32) this.u8(0x100 + v);
    else if (v >= 0 && v <= 0xffffffff) {
      if (v <= 0xff) { this.u8(0xcc); this.u8(v); }
      else if (v <= 0xffff) { this.u8(0xcd); this.u16(v); }
      else { this.u8(0xce); this.u32(v); }
    } else if (v < 0 && v >= -0x80000000) {
      this.u8(0xd2); this.reserve(4); this.view.setInt32(this.pos, v); this.pos += 4;
    } else {
      this.u8(v < 0 ? 0xd3 : 0xcf); this.reserve(8);
      if (v < 0) this.view.setBigInt64(this.pos, BigInt(v)); else this.view.setBigUint64(this.pos, BigInt(v));
      this.pos += 8;
    }
  }

  /** @param {string} s */
  str(s) {
    const b = UTF8.encode(s);
    if (b.length <= 31) this.u8(0xa0 | b.length);
    else if (b.length <= 0xff) { this.u8(0xd9); this.u8(b.length); }
    else if (b.length <= 0xffff) { this.u8(0xda); this.u16(b.length); }
    else { this.u8(0xdb); this.u32(b.length); }
    this.raw(b);
  }

  /** @param {Uint8Array} b */
  bin(b) {
    if (b.length <= 0xff) { this.u8(0xc4); this.u8(b.length); }
    else if (b.length <= 0xffff) { this.u8(0xc5); this.u16(b.length); }
    else { this.u8(0xc6); this.u32(b.length); }
    this.raw(b);
  }

  /** @param {number} n @param {number} fix @param {number} b16 */
  header(n, fix, b16) {
    if (n <= 15) this.u8(fix | n);
    else if (n <= 0xffff) { this.u8(b16); this.u16(n); }
    else { this.u8(b16 + 1); this.u32(n); }
  }

  /** @param {unknown} v */
  value(v) {
    if (v === null || v === undefined) this.u8(0xc0);
    else if (v === false) this.u8(0xc2);
    else if (v === true) this.u8(0xc3);
    else if (typeof v === "number") {
      if (Number.isSafeInteger(v)) this.int(v);
      else { this.u8(0xcb); this.reserve(8); this.view.setFloat64(this.pos, v); this.pos += 8; }
    } else if (v instanceof Float) {
      this.u8(0xcb); this.reserve(8); this.view.setFloat64(this.pos, v.value); this.pos += 8;
    } else if (typeof v === "string") this.str(v);
    else if (v instanceof Uint8Array) this.bin(v);
    else if (Array.isArray(v)) { this.header(v.length, 0x90, 0xdc); v.forEach((x) => this.value(x)); }
    else if (typeof v === "object") {
      const entries = Object.entries(/** @type {object} */ (v)).filter(([, x]) => x !== undefined);
      this.header(entries.length, 0x80, 0xde);
      for (const [key, x] of entries) { this.str(key); this.value(x); }
    } else throw new TypeError(`cannot encode a ${typeof v} as msgpack`);
  }
}

/**
 * Encode one value.
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function encode(value) {
  const w = new Writer();
  w.value(value);
  return w.bytes.slice(0, w.pos);
}
