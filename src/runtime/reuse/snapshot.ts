/**
 * The state of a pristine instance — memory bytes and size, mutable globals, table entries — taken
 * once, and written back after each call so that the next call sees exactly that state again.
 *
 * Memory is kept as runs: zero runs are restored with fill (memset, the cheapest write there is)
 * and the others with a copy of their pristine bytes, which are all the snapshot holds. When the
 * module was rewritten with a written map (virtual-size.ts, written-map.ts), only the 4 KiB chunks
 * the call marked are written back, so a restore costs what the call wrote. Otherwise JavaScript
 * cannot learn which pages a call wrote and every byte is written back: restore cost is then
 * proportional to the memory's size (about 15 µs per MiB here), which is why large memories are
 * not reused (MAX_REUSED_ZERO_BYTES). Restore refuses (returns false) when the call changed something
 * it cannot undo: a table grew, or the memory grew while its size is the real one. When the size
 * the guest sees is virtual (virtual-size.ts), pages grown past the pristine size are zeroed
 * instead, up to MAX_REUSED_ZERO_BYTES of them, and the size global is put back with the others.
 * The caller discards an instance restore refused.
 */
import type { WasmMemory, WasmMutableGlobal, WasmTable } from '../wasm-api.js';
import type { ExposedState } from './expose.js';
import { CHUNK_BYTES, CHUNK_SHIFT, type WrittenMap } from './written-map.js';

/** Granularity at which memory is classified as zero or not when the snapshot is taken: the map's chunk. */
const CHUNK = CHUNK_BYTES;

/**
 * Zero bytes that may be rewritten per call before a fresh instance is cheaper: a fresh instance
 * pays only for the pages a call touches, a restore for every byte of memory.
 */
export const MAX_REUSED_ZERO_BYTES = 4 * 1024 * 1024;

interface Run {
  start: number;
  end: number;
  /** The pristine bytes; undefined for a run of zeros. */
  data: Uint8Array | undefined;
}

export interface Exports {
  readonly [name: string]: unknown;
}

/**
 * The pristine memory of a module's instances: taken once from the first instance and shared by
 * the later ones, since instantiation is deterministic (data segments, then a start function that
 * cannot reach any input: WASI calls made before the instance exists find no memory to answer in).
 */
export class MemoryImage {
  /** For each chunk of the image, the index of the run that holds it. */
  private readonly runOf: Uint32Array;

  private constructor(
    readonly size: number,
    readonly runs: readonly Run[],
  ) {
    this.runOf = new Uint32Array(size >>> CHUNK_SHIFT);
    runs.forEach((run, i) => this.runOf.fill(i, run.start >>> CHUNK_SHIFT, run.end >>> CHUNK_SHIFT));
  }

  /** Writes the pristine bytes of chunks [first, end) into `bytes`; chunks past the image are zero. */
  restoreChunks(bytes: Uint8Array, first: number, end: number): void {
    const endByte = end << CHUNK_SHIFT;
    for (let at = first << CHUNK_SHIFT; at < endByte; ) {
      if (at >= this.size) {
        bytes.fill(0, at, endByte);
        return;
      }
      const run = this.runs[this.runOf[at >>> CHUNK_SHIFT]!]!;
      const stop = Math.min(endByte, run.end);
      if (run.data) bytes.set(run.data.subarray(at - run.start, stop - run.start), at);
      else bytes.fill(0, at, stop);
      at = stop;
    }
  }

  /** The image of a pristine instance's memory, or why reusing it would not pay (or not be exact). */
  static take(exports: Exports, state: ExposedState): MemoryImage | { reason: string } {
    // A float global is read and written back through a JavaScript number, which keeps every
    // value but a NaN's bits: V8 writes back its canonical NaN, and a guest that reinterprets the
    // global would see other bits than in a fresh instance. Instantiation is deterministic, so
    // what this pristine instance holds, every instance holds.
    for (const name of state.globals) {
      const value = (exports[name] as WasmMutableGlobal).value;
      if (typeof value === 'number' && Number.isNaN(value)) {
        return { reason: 'a mutable float global starts as a NaN, whose bits JavaScript cannot put back' };
      }
    }
    const memory = state.memory === undefined ? undefined : (exports[state.memory] as WasmMemory);
    const bytes = memory ? new Uint8Array(memory.buffer) : new Uint8Array(0);
    // Memory is a whole number of 64 KiB pages, so 32-bit words cover it exactly.
    const words = new Uint32Array(bytes.buffer, 0, bytes.length >>> 2);
    const runs: Run[] = [];
    let zeroBytes = 0;
    for (let start = 0; start < bytes.length; start += CHUNK) {
      const end = Math.min(start + CHUNK, bytes.length);
      const zero = isZero(words, start >>> 2, end >>> 2);
      if (zero) zeroBytes += end - start;
      const last = runs[runs.length - 1];
      if (last && (last.data === undefined) === zero) last.end = end;
      else runs.push({ start, end, data: zero ? undefined : new Uint8Array(0) });
    }
    if (zeroBytes > MAX_REUSED_ZERO_BYTES) {
      return { reason: `its memory holds ${zeroBytes} zero bytes to rewrite after each call (more than ${MAX_REUSED_ZERO_BYTES})` };
    }
    for (const run of runs) if (run.data) run.data = bytes.slice(run.start, run.end);
    return new MemoryImage(bytes.length, runs);
  }
}

/** One instance's pristine state: the shared memory image, and its own globals and table entries. */
export class Snapshot {
  private constructor(
    private readonly memory: WasmMemory | undefined,
    private readonly image: MemoryImage,
    private readonly globals: { global: WasmMutableGlobal; value: unknown }[],
    private readonly tables: { table: WasmTable; entries: unknown[] }[],
    /** Pages grown during a call can be zeroed, since the size the guest sees is a global. */
    private readonly growable: boolean,
    /** What the call may have written, when the module keeps a map; every byte is restored otherwise. */
    private readonly written: WrittenMap | undefined,
  ) {}

  /** A view of the memory's current buffer (a new one once memory grows). */
  private view = new Uint8Array(0);
  private readonly restoreChunks = (first: number, end: number): void => this.image.restoreChunks(this.view, first, end);

  /**
   * Binds the image to a pristine instance and reads its globals and tables (these are its own:
   * a funcref names this instance's functions).
   */
  static take(exports: Exports, state: ExposedState, image: MemoryImage, written?: WrittenMap): Snapshot {
    const memory = state.memory === undefined ? undefined : (exports[state.memory] as WasmMemory);
    // What instantiation wrote is pristine.
    if (memory && written) written.clear(memory.buffer.byteLength >>> CHUNK_SHIFT);
    const globals = state.globals.map((name) => {
      const global = exports[name] as WasmMutableGlobal;
      return { global, value: global.value };
    });
    const tables = state.tables.map((name) => {
      const table = exports[name] as WasmTable;
      return { table, entries: Array.from({ length: table.length }, (_, i) => table.get(i)) };
    });
    return new Snapshot(memory, image, globals, tables, state.virtualSize !== undefined, memory ? written : undefined);
  }

  /** Writes the pristine state back; false when the call changed what cannot be undone (a size). */
  restore(): boolean {
    for (const { table, entries } of this.tables) if (table.length !== entries.length) return false;
    if (this.memory) {
      const buffer = this.memory.buffer;
      const grown = buffer.byteLength - this.image.size;
      if (grown !== 0 && !(this.growable && grown > 0 && grown <= MAX_REUSED_ZERO_BYTES)) return false;
      if (this.view.buffer !== buffer) this.view = new Uint8Array(buffer);
      if (this.written) this.written.sweep(buffer.byteLength >>> CHUNK_SHIFT, this.restoreChunks);
      else {
        const bytes = this.view;
        if (grown > 0) bytes.fill(0, this.image.size);
        for (const run of this.image.runs) {
          if (run.data) bytes.set(run.data, run.start);
          else bytes.fill(0, run.start, run.end);
        }
      }
    }
    for (const { table, entries } of this.tables) {
      for (let i = 0; i < entries.length; i++) if (table.get(i) !== entries[i]) table.set(i, entries[i]);
    }
    for (const g of this.globals) g.global.value = g.value;
    return true;
  }
}

function isZero(words: Uint32Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (words[i] !== 0) return false;
  return true;
}
