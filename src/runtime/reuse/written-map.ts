/**
 * Which parts of an instance's memory a call may have written, so that a snapshot writes back
 * only those (snapshot.ts) rather than every byte of memory.
 *
 * The map is a second memory that the size rewrite (virtual-size.ts) adds to the module: a byte
 * per 4 KiB chunk of memory 0, byte k + 1 for chunk k, set by every write the guest makes (stores
 * after their bounds check, bulk writes in their helper) and by the host for every range of guest
 * memory it touches (WASI calls, the string ABI's input). Marks are conservative: a mark may stand
 * for a chunk that was not written, never the reverse. The guest cannot reach the map: its code
 * names memory 0 only (the rewrite refuses modules with more than one memory), and the map is
 * exported under the engine's reserved prefix, which a guest cannot see.
 */
import type { WasmMemory } from '../wasm-api.js';
import { WASM_PAGE_BYTES } from '../wasm-api.js';

/** A chunk is 2^12 = 4 KiB: the granularity of marks, and of the snapshot's runs. */
export const CHUNK_SHIFT = 12;
export const CHUNK_BYTES = 1 << CHUNK_SHIFT;

/** Bytes the map needs for a memory of at most `maxPages` pages: one per chunk, and one each side. */
export function mapBytesFor(maxPages: number): number {
  return maxPages * (WASM_PAGE_BYTES >>> CHUNK_SHIFT) + 2;
}

export class WrittenMap {
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;

  /** The map never grows (its size is fixed by the rewrite), so the views stay valid. */
  constructor(memory: WasmMemory) {
    this.bytes = new Uint8Array(memory.buffer);
    this.words = new Uint32Array(memory.buffer);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }

  /** The host reaches [start, start + length) of memory 0, all of it within memory. */
  mark(start: number, length: number): void {
    if (length <= 0) return;
    this.bytes.fill(1, (start >>> CHUNK_SHIFT) + 1, ((start + length - 1) >>> CHUNK_SHIFT) + 2);
  }

  /**
   * Calls `restore` once for each of the first `chunks` chunks marked since the last sweep, with a
   * run of consecutive marked chunks as one call, and clears every mark a memory of `chunks`
   * chunks can have made (indices 0 to chunks + 1).
   */
  sweep(chunks: number, restore: (first: number, end: number) => void): void {
    const { bytes, words } = this;
    const lastWord = (chunks + 1) >>> 2;
    let runStart = -1;
    for (let w = 0; w <= lastWord; w++) {
      if (words[w] === 0) {
        if (runStart >= 0) {
          restore(runStart, Math.min(w * 4 - 1, chunks));
          runStart = -1;
        }
        continue;
      }
      for (let i = w * 4; i < w * 4 + 4; i++) {
        const chunk = i - 1;
        const marked = bytes[i] !== 0 && chunk >= 0 && chunk < chunks;
        if (marked && runStart < 0) runStart = chunk;
        else if (!marked && runStart >= 0) {
          restore(runStart, chunk);
          runStart = -1;
        }
      }
      words[w] = 0;
    }
    if (runStart >= 0) restore(runStart, Math.min((lastWord + 1) * 4 - 1, chunks));
  }

  /** Clears the marks a memory of `chunks` chunks can have made (a new instance's start function made some). */
  clear(chunks: number): void {
    this.bytes.fill(0, 0, chunks + 2);
  }
}
