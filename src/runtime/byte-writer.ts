/** Writing WebAssembly binaries: a growing byte buffer, and pieces joined into one array. */
import { encodeU32 } from './byte-reader.js';

/** A piece of a binary being written: bytes copied from the input, or bytes made here. */
export type Chunk = Uint8Array | number[];

/** A growing byte buffer. */
export class Writer {
  buffer: Uint8Array;
  length = 0;

  constructor(capacity: number) {
    this.buffer = new Uint8Array(Math.max(16, capacity));
  }

  private room(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const next = new Uint8Array(Math.max(this.buffer.length * 2, this.length + n));
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
  }

  byte(b: number): this {
    this.room(1);
    this.buffer[this.length++] = b;
    return this;
  }

  bytes(b: Chunk): this {
    this.room(b.length);
    this.buffer.set(b, this.length);
    this.length += b.length;
    return this;
  }

  u32(v: number): this {
    return this.bytes(encodeU32(v));
  }

  view(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

export function concat(chunks: Chunk[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
