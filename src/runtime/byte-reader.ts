/**
 * A bounds-checked cursor over untrusted bytes, with the LEB128 forms the WebAssembly binary
 * format uses. Every read checks the end first, so a truncated or hostile module can only ever
 * produce a MalformedBinary error, never an out-of-range read or an endless loop.
 */

export class MalformedBinary extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = 'MalformedBinary';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class ByteReader {
  pos: number;

  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
  ) {
    if (start < 0 || end > bytes.length || start > end) throw new MalformedBinary('range outside the input', start);
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  fail(message: string, at = this.pos): never {
    throw new MalformedBinary(message, at);
  }

  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end');
    return this.bytes[this.pos++] as number;
  }

  /** Unsigned LEB128 of at most 32 bits: at most 5 bytes, and the 5th may only carry 4 bits. */
  u32(): number {
    const start = this.pos;
    let result = 0;
    for (let i = 0; i < 5; i++) {
      const byte = this.u8();
      if (i === 4 && (byte & 0xf0) !== 0) this.fail('u32 LEB128 out of range', start);
      // Multiplication, not <<: JavaScript shifts are signed 32-bit and would corrupt bit 31.
      result += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) return result;
    }
    return this.fail('u32 LEB128 too long', start);
  }

  /** Unsigned LEB128 of at most 64 bits (memory64 limits). */
  u64(): bigint {
    const start = this.pos;
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      if (i === 9 && (byte & 0xfe) !== 0) this.fail('u64 LEB128 out of range', start);
      result |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) return result;
    }
    return this.fail('u64 LEB128 too long', start);
  }

  /** Skips a signed LEB128 of at most `maxBytes` bytes (constant expressions' immediates). */
  skipSignedLeb(maxBytes: number): void {
    const start = this.pos;
    for (let i = 0; i < maxBytes; i++) {
      if ((this.u8() & 0x80) === 0) return;
    }
    this.fail('signed LEB128 too long', start);
  }

  skip(length: number): void {
    if (length < 0 || length > this.end - this.pos) this.fail(`length ${length} runs past the end`);
    this.pos += length;
  }

  take(length: number): Uint8Array {
    const start = this.pos;
    this.skip(length);
    return this.bytes.subarray(start, start + length);
  }

  /** A length-prefixed UTF-8 name, as import and export names are encoded. */
  name(): string {
    const start = this.pos;
    const raw = this.take(this.u32());
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail('name is not valid UTF-8', start);
    }
  }

  /** A vector count, checked against the bytes left so a hostile count cannot drive a huge loop. */
  count(minBytesPerItem = 1): number {
    const start = this.pos;
    const n = this.u32();
    if (n * minBytesPerItem > this.end - this.pos) this.fail(`count ${n} larger than the bytes left`, start);
    return n;
  }
}

/** Encodes an unsigned LEB128 (used when the runtime rewrites a section). */
export function encodeU32(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) throw new RangeError(`not a u32: ${value}`);
  const out: number[] = [];
  let v = value;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}
