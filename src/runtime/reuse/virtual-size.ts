/**
 * Lets an instance whose memory grew during a call be reused exactly.
 *
 * Nothing can shrink a WebAssembly memory, so a reused instance whose memory grew would start the
 * next call larger than a fresh one: `memory.size` and what `memory.grow` returns would differ,
 * and Rust's allocator on wasm32-unknown-unknown grows memory on its first allocation in every
 * instance. This rewrite makes the size the guest sees a mutable global of its own: every
 * `memory.size` on memory 0 becomes a call that reads it and every `memory.grow` a call that
 * grows it, growing the real memory only when the new size passes the real one (so the memory's
 * maximum, which carries memory_limit_mb, still decides when growth fails with -1). The global is
 * mutable and defined by the module, so reuse/expose.ts exports it and a snapshot restores it
 * with the other globals; the snapshot zeroes the pages past the pristine size (snapshot.ts).
 *
 * The real memory can then be larger than the size the guest sees, so every access of memory by
 * the guest is checked against that size as well and traps out of bounds where a fresh instance
 * traps, with the same message (the trap is a real out-of-bounds access): loads and stores of every
 * kind (SIMD and atomic ones too) in place, the rarer accesses with more operands (memory.fill,
 * memory.copy, memory.init, atomic compare-exchange and wait) through an appended helper each. So a reused instance answers what a fresh instance
 * of the original module answers, call after call (test/fuzz's reuse differential requires it).
 * The host's own accesses (WASI calls, the string ABI's output) are checked against the size the
 * guest sees.
 *
 * Every write to memory also marks the 4 KiB chunks it reaches in a second memory the rewrite adds,
 * the written map (reuse/written-map.ts): stores in place, after their check, the rarer writes in
 * their helper. A snapshot then writes back only the chunks a call marked (the host marks what it
 * writes itself), so restoring an instance costs what the call wrote, not the memory's size.
 *
 * Appends types, functions (two, then the helpers), one global (the size in bytes, an i64), one
 * memory (the map), three exports, and locals at the end of a function's own; no existing index
 * moves.
 */
import { ByteReader, encodeU32 } from '../byte-reader.js';
import { concat, Writer, type Chunk } from '../byte-writer.js';
import { WASM_PAGE_BYTES } from '../wasm-api.js';
import { SECTION, parseModule, sections, type SectionSpan } from '../wasm-binary.js';
import { UnknownInstruction, rewriteRefusal, walkBody } from './code-walk.js';
import { EXPORT_PREFIX } from './expose.js';
import { CHUNK_SHIFT, mapBytesFor } from './written-map.js';

/** Export names of the functions the host uses in place of the memory's own size and grow, and of the written map. */
export interface VirtualSize {
  size: string;
  grow: string;
  /** The memory whose byte k + 1 is set once a call may have written chunk k of memory 0. */
  written: string;
}

/**
 * `writesTables`: whether any of the module's code can change a table (as the walk found: table.set,
 * fill, copy, init or grow); when none can, a snapshot has no table to restore.
 */
export type VirtualizeResult = { bytes: Uint8Array; virtualSize: VirtualSize; writesTables: boolean } | { reason: string };

export const VIRTUAL_SIZE_EXPORTS: VirtualSize = {
  size: `${EXPORT_PREFIX}memory.size`,
  grow: `${EXPORT_PREFIX}memory.grow`,
  written: `${EXPORT_PREFIX}written`,
};

/** The size in bytes a guest of a rewritten module sees of its memory, read from its instance. */
export function visibleMemoryBytes(exports: Readonly<Record<string, unknown>>, names: VirtualSize): () => number {
  const size = exports[names.size] as () => number;
  return () => (size() >>> 0) * WASM_PAGE_BYTES;
}

const OP = { call: 0x10, end: 0x0b } as const;
const I32 = 0x7f;
const I64 = 0x7e;
/** The most pages a 32-bit memory can have. */
const MAX_PAGES = 65_536;
/** The written map's index: the module's one memory is 0. */
const MAP_MEMORY = 1;
const KIND_MEMORY = 2;
/**
 * With the end of a write (an i64, at most the memory's size) on the stack: sets the map's bytes
 * end >> 12 and the one after, which stand for the chunks of the write's last byte and of its
 * first (a write of at most 16 bytes starts at most one chunk before it ends).
 */
const MARK_FROM_END = [0x42, CHUNK_SHIFT, 0x88, 0xa7, 0x41, 0x81, 0x02, 0x3b, 0x41, MAP_MEMORY, 0];
const encoder = new TextEncoder();

/**
 * The module with memory size and growth made virtual, or why it was left as it is. Reads only
 * modules that analysis has accepted; anything it does not know gives a reason, never an error.
 */
export function virtualizeMemorySize(bytes: Uint8Array): VirtualizeResult {
  try {
    return virtualize(bytes);
  } catch (err) {
    return rewriteRefusal(err);
  }
}

function virtualize(bytes: Uint8Array): VirtualizeResult {
  const m = parseModule(bytes);
  const memory = m.memories[0];
  if (m.memories.length !== 1 || !memory) return { reason: 'it does not have exactly one memory' };
  if (m.imports.some((i) => i.kind === 'memory')) return { reason: 'its memory is imported' };
  if (memory.shared || memory.is64) return { reason: 'its memory is shared or 64-bit' };
  if (m.exports.some((e) => e.name.startsWith(EXPORT_PREFIX))) return { reason: "one of its exports uses the engine's reserved prefix" };

  const spans = new Map<number, SectionSpan>();
  for (const s of sections(bytes)) if (s.id !== 0) spans.set(s.id, s);
  const codeSpan = spans.get(SECTION.code);
  const functions = spans.get(SECTION.function);
  const types = spans.get(SECTION.type);
  const exports = spans.get(SECTION.export);
  const memories = spans.get(SECTION.memory);
  if (!codeSpan || !functions || !types || !exports || !memories) return { reason: 'it has no code or no exports' };
  // Fixed at the most the memory can grow to: marks are written where the memory's chunks are.
  const mapPages = Math.ceil(mapBytesFor(memory.max ?? MAX_PAGES) / WASM_PAGE_BYTES);

  const growType = m.types.length;
  const sizeType = growType + 1;
  const growFunc = m.functionTypes.length;
  const sizeFunc = growFunc + 1;
  const global = m.globals.length;
  const g = encodeU32(global);
  const helpers = new Helpers(growType + 2, sizeFunc + 1, g);
  const calls: Record<'grow' | 'size', number[]> = { grow: [OP.call, ...encodeU32(growFunc)], size: [OP.call, ...encodeU32(sizeFunc)] };
  const paramCounts = m.functionTypes.map((t) => m.types[t]?.params.length ?? 0);
  const walked = { writesTables: false };
  const code = rewriteCode(bytes, codeSpan, calls, helpers, paramCounts, walked);

  const bodies: Record<number, Chunk[]> = {
    [SECTION.type]: appended(bytes, types, [[0x60, 1, I32, 1, I32], [0x60, 0, 1, I32], ...helpers.types]),
    [SECTION.function]: appended(bytes, functions, [encodeU32(growType), encodeU32(sizeType), ...helpers.functions]),
    [SECTION.memory]: appended(bytes, memories, [[0x01, ...encodeU32(mapPages), ...encodeU32(mapPages)]]),
    [SECTION.export]: appended(bytes, exports, [
      exportEntry(VIRTUAL_SIZE_EXPORTS.grow, growFunc),
      exportEntry(VIRTUAL_SIZE_EXPORTS.size, sizeFunc),
      exportEntry(VIRTUAL_SIZE_EXPORTS.written, MAP_MEMORY, KIND_MEMORY),
    ]),
    [SECTION.code]: [code, withSize(growBody(g)), withSize(sizeBody(g)), ...helpers.bodies.map(withSize)],
  };
  const newGlobal = [I64, 1, 0x42, ...encodeS64(BigInt(memory.min) * BigInt(WASM_PAGE_BYTES)), OP.end];
  const globals = spans.get(SECTION.global);
  if (globals) bodies[SECTION.global] = appended(bytes, globals, [newGlobal]);

  const out: Chunk[] = [bytes.subarray(0, 8)];
  for (const s of sections(bytes)) {
    // A module without globals gets a global section just before its exports, where the order puts it.
    if (s.id === SECTION.export && !globals) out.push(...section(SECTION.global, [encodeU32(1), newGlobal]));
    const body = s.id === 0 ? undefined : bodies[s.id];
    out.push(...(body ? section(s.id, body) : [bytes.subarray(s.start, s.end)]));
  }
  return { bytes: concat(out), virtualSize: VIRTUAL_SIZE_EXPORTS, writesTables: walked.writesTables };
}

/** A section body with entries appended after the existing ones, which are kept byte for byte. */
function appended(bytes: Uint8Array, s: SectionSpan, entries: Chunk[]): Chunk[] {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  return [encodeU32(count + entries.length), bytes.subarray(r.pos, s.end), ...entries];
}

function section(id: number, body: Chunk[]): Chunk[] {
  const size = body.reduce((n, c) => n + c.length, 0);
  return [[id, ...encodeU32(size)], ...body];
}

/**
 * Every body copied, with memory.size and memory.grow on memory 0 replaced by calls, and every
 * access of memory checked against the size the guest sees: in place for an access that takes an
 * address and at most one value (loads and stores, what compiled code is made of), where the
 * operands go through locals appended to the function, a store marking the map from the end the
 * check computed; by a call to a helper for the others. The
 * number of bodies counts the ones the caller appends. Written into one growing buffer, not as a
 * chunk per access: a module of hundreds of megabytes has tens of millions of accesses.
 */
function rewriteCode(
  bytes: Uint8Array,
  s: SectionSpan,
  calls: Record<'grow' | 'size', number[]>,
  helpers: Helpers,
  paramCounts: number[],
  walked: { writesTables: boolean },
): Uint8Array {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const imported = paramCounts.length - count;
  const out = new Writer(s.end - s.bodyStart);
  const body = new Writer(1024);
  // The count of bodies, helpers included, is known only at the end: five bytes kept for it.
  out.bytes(paddedU32(0));
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    r.skip(size);
    const locals = new ByteReader(bytes, start, end);
    let declared = paramCounts[imported + i] ?? 0;
    const groups = locals.u32();
    const groupsStart = locals.pos;
    for (let j = 0; j < groups; j++) {
      declared += locals.u32();
      locals.u8();
    }
    const headerEnd = locals.pos;
    // Scratch locals, appended after the declared ones when first needed: the address, the end of a
    // store, and a value of each type stored.
    const scratch: { key: number; type: number; index: number[] }[] = [];
    const local = (key: number, type: number): number[] => {
      let entry = scratch.find((e) => e.key === key);
      if (!entry) scratch.push((entry = { key, type, index: encodeU32(declared + scratch.length) }));
      return entry.index;
    };
    body.length = 0;
    let copied = headerEnd;
    walkBody(new ByteReader(bytes, start, end), (op, opStart, opEnd) => {
      if (op === 'table') {
        walked.writesTables = true;
        return;
      }
      body.bytes(bytes.subarray(copied, opStart));
      copied = opEnd;
      if (op !== 'access') {
        body.bytes(calls[op]);
        return;
      }
      const instruction = bytes.subarray(opStart, opEnd);
      const access = helpers.access(instruction);
      if ('call' in access) {
        body.bytes(access.call);
        return;
      }
      const address = local(-1, I32);
      const value = access.value === undefined ? undefined : local(access.value, access.value);
      if (value) body.byte(0x21).bytes(value);
      body.byte(0x22).bytes(address).bytes(access.end);
      if (access.writes) {
        const end = local(-2, I64);
        body.byte(0x22).bytes(end).bytes(helpers.outOfBounds).byte(0x20).bytes(end).bytes(MARK_FROM_END);
      } else {
        body.bytes(helpers.outOfBounds);
      }
      body.byte(0x20).bytes(address);
      if (value) body.byte(0x20).bytes(value);
      body.bytes(instruction);
    });
    if (copied === headerEnd) {
      out.u32(size).bytes(bytes.subarray(start, end));
      continue;
    }
    body.bytes(bytes.subarray(copied, end));
    const header = new Writer(16);
    if (scratch.length === 0) header.bytes(bytes.subarray(start, headerEnd));
    else {
      header.u32(groups + scratch.length).bytes(bytes.subarray(groupsStart, headerEnd));
      for (const { type } of scratch) header.byte(1).byte(type);
    }
    out.u32(header.length + body.length).bytes(header.view()).bytes(body.view());
  }
  if (!r.done) r.fail('code section has trailing bytes');
  out.buffer.set(paddedU32(count + 2 + helpers.bodies.length), 0);
  return out.view();
}

/** An unsigned LEB128 of five bytes, the most a u32 may take (the format allows the padding). */
function paddedU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  for (let i = 0; i < 5; i++) {
    out.push((v & 0x7f) | (i < 4 ? 0x80 : 0));
    v >>>= 7;
  }
  return out;
}

const V128 = 0x7b;
const F32 = 0x7d;
const F64 = 0x7c;

/** Plain loads and stores by opcode: [the value type loaded or stored, bytes accessed]. */
const LOADS: Record<number, [number, number]> = {
  0x28: [I32, 4], 0x29: [I64, 8], 0x2a: [F32, 4], 0x2b: [F64, 8], 0x2c: [I32, 1], 0x2d: [I32, 1], 0x2e: [I32, 2], 0x2f: [I32, 2],
  0x30: [I64, 1], 0x31: [I64, 1], 0x32: [I64, 2], 0x33: [I64, 2], 0x34: [I64, 4], 0x35: [I64, 4],
};
const STORES: Record<number, [number, number]> = {
  0x36: [I32, 4], 0x37: [I64, 8], 0x38: [F32, 4], 0x39: [F64, 8], 0x3a: [I32, 1], 0x3b: [I32, 2], 0x3c: [I64, 1], 0x3d: [I64, 2], 0x3e: [I64, 4],
};
/** SIMD accesses by sub-opcode: bytes accessed, and whether it stores (no result) or takes a vector. */
const SIMD: Record<number, { width: number; store?: boolean; lane?: boolean }> = {
  0: { width: 16 }, 1: { width: 8 }, 2: { width: 8 }, 3: { width: 8 }, 4: { width: 8 }, 5: { width: 8 }, 6: { width: 8 },
  7: { width: 1 }, 8: { width: 2 }, 9: { width: 4 }, 10: { width: 8 }, 11: { width: 16, store: true },
  84: { width: 1, lane: true }, 85: { width: 2, lane: true }, 86: { width: 4, lane: true }, 87: { width: 8, lane: true },
  88: { width: 1, lane: true, store: true }, 89: { width: 2, lane: true, store: true }, 90: { width: 4, lane: true, store: true }, 91: { width: 8, lane: true, store: true },
  92: { width: 4 }, 93: { width: 8 },
};

type Access = { call: number[] } | { end: number[]; value: number | undefined; writes: boolean };

/**
 * One appended function per distinct access instruction (opcode and immediates): it takes the
 * instruction's operands, traps out of bounds when the access ends past the size the guest sees,
 * and otherwise runs the instruction itself. The trap is a real out-of-bounds access (a byte at
 * 2^32, past any 32-bit memory), so its message is the one a fresh instance gives.
 */
class Helpers {
  readonly types: number[][] = [];
  readonly functions: number[][] = [];
  readonly bodies: number[][] = [];
  private readonly byInstruction = new Map<string, Access>();
  private readonly typeBySignature = new Map<string, number>();

  constructor(
    private readonly firstType: number,
    private readonly firstFunc: number,
    /** The global that holds the size the guest sees, in bytes, as an i64. */
    private readonly global: number[],
  ) {}

  /** With the end of an access (an i64) on the stack: traps when it is past the size the guest sees. */
  get outOfBounds(): number[] {
    return [0x23, ...this.global, 0x56, 0x04, 0x40, ...OUT_OF_BOUNDS, OP.end];
  }

  /**
   * How to check one access instruction: a call to its helper, or, in place, what computes the end
   * of the access (an i64) from the address on the stack, the type of the value the access takes
   * besides (if any), and whether it writes.
   */
  access(instruction: Uint8Array): Access {
    const key = instruction.join(',');
    let access = this.byInstruction.get(key);
    if (!access) {
      const sh = shape(instruction);
      access =
        sh.bound !== undefined && sh.params.length <= 2 && sh.atomic === undefined
          ? { end: [0xad, 0x42, ...encodeS64(sh.bound), 0x7c], value: sh.params[1], writes: sh.writes }
          : { call: this.helper(instruction, sh) };
      // Bounded: an adversarial module can have as many distinct offsets as it has accesses. A
      // helper is always kept, so that each instruction has one (there are MAX_HELPERS at most).
      if ('call' in access || this.byInstruction.size < MAX_CACHED_ACCESSES) this.byInstruction.set(key, access);
    }
    return access;
  }

  private helper(instruction: Uint8Array, sh: Shape): number[] {
    if (this.bodies.length >= MAX_HELPERS) throw new Error(`more than ${MAX_HELPERS} distinct accesses need a helper function`);
    const { params, results } = sh;
    const checks = sh.checks ?? [end64(0, undefined, sh.bound)];
    const signature = [0x60, ...encodeU32(params.length), ...params, ...encodeU32(results.length), ...results];
    let type = this.typeBySignature.get(signature.join(','));
    if (type === undefined) {
      type = this.firstType + this.types.length;
      this.types.push(signature);
      this.typeBySignature.set(signature.join(','), type);
    }
    const body = [0];
    if (sh.atomic) {
      // (end > size) & ((address + offset) % width == 0): only an aligned access traps here.
      const { offset, width } = sh.atomic;
      const aligned = [0x20, 0, 0x41, ...encodeS64(BigInt.asIntN(32, offset)), 0x6a, 0x41, width - 1, 0x71, 0x45];
      for (const check of checks) body.push(...check, 0x23, ...this.global, 0x56, ...aligned, 0x71, 0x04, 0x40, ...OUT_OF_BOUNDS, OP.end);
    } else {
      for (const check of checks) body.push(...check, ...this.outOfBounds);
    }
    if (sh.writes) body.push(...(sh.checks ? MARK_RANGE : this.markInBounds(end64(0, undefined, sh.bound))));
    params.forEach((_, i) => body.push(0x20, ...encodeU32(i)));
    body.push(...instruction, OP.end);
    this.functions.push(encodeU32(type));
    this.bodies.push(body);
    return [OP.call, ...encodeU32(this.firstFunc + this.bodies.length - 1)];
  }

  /**
   * Marks the map from `end` when the access is in bounds: an atomic access past the size that is
   * not aligned is left to trap as the instruction itself does (a mark there could fall past the map).
   */
  private markInBounds(end: number[]): number[] {
    return [...end, 0x23, ...this.global, 0x58, 0x04, 0x40, ...end, ...MARK_FROM_END, OP.end];
  }
}

/**
 * In a helper for memory.fill, memory.copy or memory.init (dest, _, n), once the range is known to
 * be in bounds: when n > 0, memory.fill on the map of bytes (dest >> 12) + 1 to ((dest + n - 1) >> 12) + 1.
 */
const MARK_RANGE = [
  ...[0x20, 2, 0x04, 0x40], // if n != 0
  ...[0x20, 0, 0x41, CHUNK_SHIFT, 0x76, 0x41, 1, 0x6a], //   at = (dest >> 12) + 1
  ...[0x41, 1], //   value 1
  ...[0x20, 0, 0x20, 2, 0x6a, 0x41, 1, 0x6b, 0x41, CHUNK_SHIFT, 0x76], //   ((dest + n - 1) >> 12)
  ...[0x20, 0, 0x41, CHUNK_SHIFT, 0x76, 0x6b, 0x41, 1, 0x6a], //   - (dest >> 12) + 1 bytes
  ...[0xfc, 0x0b, MAP_MEMORY],
  OP.end,
];

/** Distinct access instructions whose check is kept for reuse. */
const MAX_CACHED_ACCESSES = 65_536;
/** Distinct bulk, compare-exchange and wait instructions a module may have and still be rewritten. */
const MAX_HELPERS = 10_000;

/** i32.load8_u offset=1 of address 0xFFFFFFFF: the byte at 2^32, out of bounds of every memory. */
const OUT_OF_BOUNDS = [0x41, 0x7f, 0x2d, 0, 1, 0x1a];

/** u64(local a) + u64(local b), or + the constant c when b is undefined, left on the stack. */
function end64(a: number, b: number | undefined, c = 0n): number[] {
  const first = [0x20, a, 0xad];
  return b === undefined ? [...first, 0x42, ...encodeS64(c), 0x7c] : [...first, 0x20, b, 0xad, 0x7c];
}

/**
 * Atomic accesses by sub-opcode. V8 (Node 24) checks an atomic access's alignment before its bound,
 * so the helper traps out of bounds only for an aligned access, and an unaligned one gives the
 * alignment trap a fresh instance gives (test/runtime/virtual-size.test.ts pins the order).
 */
function atomicShape(sub: number): { params: number[]; results: number[]; width: number } {
  // The seven widths of each group of loads, stores, read-modify-writes and compare-exchanges.
  const GROUP: [number, number][] = [[I32, 4], [I64, 8], [I32, 1], [I32, 2], [I64, 1], [I64, 2], [I64, 4]];
  if (sub === 0x00) return { params: [I32, I32], results: [I32], width: 4 }; // memory.atomic.notify
  if (sub === 0x01) return { params: [I32, I32, I64], results: [I32], width: 4 }; // memory.atomic.wait32
  if (sub === 0x02) return { params: [I32, I64, I64], results: [I32], width: 8 }; // memory.atomic.wait64
  if (sub >= 0x10 && sub <= 0x16) {
    const [type, width] = GROUP[sub - 0x10] as [number, number];
    return { params: [I32], results: [type], width };
  }
  if (sub >= 0x17 && sub <= 0x1d) {
    const [type, width] = GROUP[sub - 0x17] as [number, number];
    return { params: [I32, type], results: [], width };
  }
  if (sub >= 0x1e && sub <= 0x47) {
    const [type, width] = GROUP[(sub - 0x1e) % 7] as [number, number];
    return { params: [I32, type], results: [type], width };
  }
  if (sub >= 0x48 && sub <= 0x4e) {
    const [type, width] = GROUP[sub - 0x48] as [number, number];
    return { params: [I32, type, type], results: [type], width };
  }
  throw new UnknownInstruction(`not an atomic access: 0xfe ${sub}`);
}

/**
 * What an access instruction takes and gives, and how far it reaches: `bound`, for an access at one
 * address, is its memarg offset plus the bytes it accesses; `checks` compute each end (an i64)
 * of the ranges memory.fill, memory.copy and memory.init access.
 */
interface Shape {
  params: number[];
  results: number[];
  /** Whether it may write memory (the map is marked for what it reaches). */
  writes: boolean;
  bound?: bigint;
  checks?: number[][];
  /** Atomic accesses: the alignment (bytes) the engine checks before the bound. */
  atomic?: { offset: bigint; width: number };
}

function shape(ins: Uint8Array): Shape {
  const r = new ByteReader(ins);
  const op = r.u8();
  if (op === 0xfc) {
    const sub = r.u32();
    // memory.init (dest, src, n), memory.copy (dest, src, n), memory.fill (dest, value, n).
    const checks = sub === 10 ? [end64(0, 2), end64(1, 2)] : [end64(0, 2)];
    return { params: [I32, I32, I32], results: [], checks, writes: true };
  }
  const sub = op === 0xfd || op === 0xfe ? r.u32() : undefined;
  r.u32(); // alignment
  const offset = BigInt(r.u32());
  if (op === 0xfe) {
    const atomic = atomicShape(sub as number);
    // Stores, read-modify-writes and compare-exchanges (0x17 on) write; notify and wait do not.
    const writes = (sub as number) >= 0x17;
    return { params: atomic.params, results: atomic.results, bound: offset + BigInt(atomic.width), atomic: { offset, width: atomic.width }, writes };
  }
  if (sub !== undefined) {
    const simd = SIMD[sub];
    if (!simd) r.fail(`not a SIMD access: ${sub}`);
    const { width, store, lane } = simd as { width: number; store?: boolean; lane?: boolean };
    return {
      params: store || lane ? [I32, V128] : [I32],
      results: store ? [] : [V128],
      bound: offset + BigInt(width),
      writes: store === true,
    };
  }
  const load = LOADS[op];
  if (load) return { params: [I32], results: [load[0]], bound: offset + BigInt(load[1]), writes: false };
  const store = STORES[op];
  if (!store) r.fail(`not an access: ${op}`);
  const [type, width] = store as [number, number];
  return { params: [I32, type], results: [], bound: offset + BigInt(width), writes: true };
}

/**
 * (func (param $delta i32) (result i32) (local $old i32) (local $new i64)): memory.grow against
 * the global size, growing the real memory only past its real size. 65,536 pages is the most a
 * 32-bit memory can have; a real growth that fails (the maximum) answers -1 as memory.grow does.
 */
function growBody(g: number[]): number[] {
  return [
    ...[2, 1, I32, 1, 0x7e], // locals: one i32, one i64
    ...[0x23, ...g, 0x42, 16, 0x88, 0xa7, 0x21, 1], // old = size in bytes >> 16
    ...[0x20, 1, 0xad, 0x20, 0, 0xad, 0x7c, 0x21, 2], // new = u64(old) + u64(delta)
    ...[0x20, 2, 0x42, 0x80, 0x80, 0x04, 0x56, 0x04, 0x40, 0x41, 0x7f, 0x0f, 0x0b], // if new > 65536: return -1
    ...[0x20, 2, 0x3f, 0, 0xad, 0x56, 0x04, 0x40], // if new > real size:
    ...[0x20, 2, 0xa7, 0x3f, 0, 0x6b, 0x40, 0], //   memory.grow(new - real size)
    ...[0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 0x7f, 0x0f, 0x0b], //   == -1: return -1
    0x0b,
    ...[0x20, 2, 0x42, 16, 0x86, 0x24, ...g], // size in bytes = new << 16
    ...[0x20, 1, OP.end], // return old
  ];
}

/** (func (result i32)): the global size, in pages. */
function sizeBody(g: number[]): number[] {
  return [0, 0x23, ...g, 0x42, 16, 0x88, 0xa7, OP.end];
}

function withSize(body: number[]): number[] {
  return [...encodeU32(body.length), ...body];
}

function exportEntry(name: string, index: number, kind = 0): number[] {
  const raw = encoder.encode(name);
  return [...encodeU32(raw.length), ...raw, kind, ...encodeU32(index)];
}

/** Signed LEB128 of a 64-bit value (the global's initialiser, the ends of accesses). */
function encodeS64(value: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asIntN(64, value);
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}
