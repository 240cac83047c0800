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
 * What a guest can still tell apart from a fresh instance: a load or store past the size it sees
 * but within pages an earlier call grew does not trap (it reads zeros, and what it writes is zeroed
 * after the call). No byte reaches another call either way. The host's own accesses (WASI calls,
 * the string ABI's output) are checked against the size the guest sees.
 *
 * Appends two types, two functions, one global and two exports; no existing index moves.
 */
import { ByteReader, encodeU32 } from '../byte-reader.js';
import { WASM_PAGE_BYTES } from '../wasm-api.js';
import { SECTION, parseModule, sections, type SectionSpan } from '../wasm-binary.js';
import { UnknownInstruction, walkBody, type MemoryOp } from './code-walk.js';
import { EXPORT_PREFIX } from './expose.js';

/** Export names of the functions the host uses in place of the memory's own size and grow. */
export interface VirtualSize {
  size: string;
  grow: string;
}

export type VirtualizeResult = { bytes: Uint8Array; virtualSize: VirtualSize } | { reason: string };

export const VIRTUAL_SIZE_EXPORTS: VirtualSize = { size: `${EXPORT_PREFIX}memory.size`, grow: `${EXPORT_PREFIX}memory.grow` };

/** The size in bytes a guest of a rewritten module sees of its memory, read from its instance. */
export function visibleMemoryBytes(exports: Readonly<Record<string, unknown>>, names: VirtualSize): () => number {
  const size = exports[names.size] as () => number;
  return () => (size() >>> 0) * WASM_PAGE_BYTES;
}

const OP = { call: 0x10, end: 0x0b } as const;
const I32 = 0x7f;
const encoder = new TextEncoder();

/**
 * The module with memory size and growth made virtual, or why it was left as it is. Reads only
 * modules that analysis has accepted; anything it does not know gives a reason, never an error.
 */
export function virtualizeMemorySize(bytes: Uint8Array): VirtualizeResult {
  try {
    return virtualize(bytes);
  } catch (err) {
    if (err instanceof UnknownInstruction) return { reason: `its code holds an instruction the rewrite does not know (${err.message})` };
    return { reason: `its binary could not be rewritten: ${err instanceof Error ? err.message : String(err)}` };
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
  const code = spans.get(SECTION.code);
  const functions = spans.get(SECTION.function);
  const types = spans.get(SECTION.type);
  const exports = spans.get(SECTION.export);
  if (!code || !functions || !types || !exports) return { reason: 'it has no code or no exports' };

  const growType = m.types.length;
  const sizeType = growType + 1;
  const growFunc = m.functionTypes.length;
  const sizeFunc = growFunc + 1;
  const global = m.globals.length;
  const calls: Record<MemoryOp, number[]> = { grow: [OP.call, ...encodeU32(growFunc)], size: [OP.call, ...encodeU32(sizeFunc)] };

  const bodies: Record<number, Chunk[]> = {
    [SECTION.type]: appended(bytes, types, [
      [0x60, 1, I32, 1, I32],
      [0x60, 0, 1, I32],
    ]),
    [SECTION.function]: appended(bytes, functions, [encodeU32(growType), encodeU32(sizeType)]),
    [SECTION.export]: appended(bytes, exports, [exportEntry(VIRTUAL_SIZE_EXPORTS.grow, growFunc), exportEntry(VIRTUAL_SIZE_EXPORTS.size, sizeFunc)]),
    [SECTION.code]: rewriteCode(bytes, code, calls, [withSize(growBody(global)), withSize(sizeBody(global))]),
  };
  const newGlobal = [I32, 1, 0x41, ...encodeS32(memory.min), OP.end];
  const globals = spans.get(SECTION.global);
  if (globals) bodies[SECTION.global] = appended(bytes, globals, [newGlobal]);

  const out: Chunk[] = [bytes.subarray(0, 8)];
  for (const s of sections(bytes)) {
    // A module without globals gets a global section just before its exports, where the order puts it.
    if (s.id === SECTION.export && !globals) out.push(...section(SECTION.global, [encodeU32(1), newGlobal]));
    const body = s.id === 0 ? undefined : bodies[s.id];
    out.push(...(body ? section(s.id, body) : [bytes.subarray(s.start, s.end)]));
  }
  return { bytes: concat(out), virtualSize: VIRTUAL_SIZE_EXPORTS };
}

type Chunk = Uint8Array | number[];

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

/** Every body copied, with memory.size and memory.grow on memory 0 replaced by calls. */
function rewriteCode(bytes: Uint8Array, s: SectionSpan, calls: Record<MemoryOp, number[]>, extra: Chunk[]): Chunk[] {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const out: Chunk[] = [encodeU32(count + extra.length)];
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    r.skip(size);
    const parts: Chunk[] = [];
    let copied = start;
    walkBody(new ByteReader(bytes, start, end), (op, opStart, opEnd) => {
      parts.push(bytes.subarray(copied, opStart), calls[op]);
      copied = opEnd;
    });
    if (parts.length === 0) {
      out.push(encodeU32(size), bytes.subarray(start, end));
      continue;
    }
    parts.push(bytes.subarray(copied, end));
    out.push(encodeU32(parts.reduce((n, c) => n + c.length, 0)), ...parts);
  }
  if (!r.done) r.fail('code section has trailing bytes');
  out.push(...extra);
  return out;
}

/**
 * (func (param $delta i32) (result i32) (local $old i32) (local $new i64)): memory.grow against
 * the global size, growing the real memory only past its real size. 65,536 pages is the most a
 * 32-bit memory can have; a real growth that fails (the maximum) answers -1 as memory.grow does.
 */
function growBody(global: number): number[] {
  const g = encodeU32(global);
  return [
    ...[2, 1, I32, 1, 0x7e], // locals: one i32, one i64
    ...[0x23, ...g, 0x21, 1], // old = size
    ...[0x20, 1, 0xad, 0x20, 0, 0xad, 0x7c, 0x21, 2], // new = u64(old) + u64(delta)
    ...[0x20, 2, 0x42, 0x80, 0x80, 0x04, 0x56, 0x04, 0x40, 0x41, 0x7f, 0x0f, 0x0b], // if new > 65536: return -1
    ...[0x20, 2, 0x3f, 0, 0xad, 0x56, 0x04, 0x40], // if new > real size:
    ...[0x20, 2, 0xa7, 0x3f, 0, 0x6b, 0x40, 0], //   memory.grow(new - real size)
    ...[0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 0x7f, 0x0f, 0x0b], //   == -1: return -1
    0x0b,
    ...[0x20, 2, 0xa7, 0x24, ...g], // size = new
    ...[0x20, 1, OP.end], // return old
  ];
}

/** (func (result i32)): the global size. */
function sizeBody(global: number): number[] {
  return [0, 0x23, ...encodeU32(global), OP.end];
}

function withSize(body: number[]): number[] {
  return [...encodeU32(body.length), ...body];
}

function exportEntry(name: string, func: number): number[] {
  const raw = encoder.encode(name);
  return [...encodeU32(raw.length), ...raw, 0, ...encodeU32(func)];
}

/** Signed LEB128 of a 32-bit value (the global's initialiser). */
function encodeS32(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function concat(chunks: Chunk[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
