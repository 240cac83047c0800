/**
 * Walks the instructions of a function body, immediates included, so that a rewrite can find
 * `memory.size`, `memory.grow` and every access of memory, and copy every other byte unchanged. Only the opcodes Node 20
 * runs without flags are known (MVP, sign extension, saturating truncation, bulk memory,
 * reference types, SIMD, threads, tail calls, legacy exception handling); anything else throws
 * UnknownInstruction and the caller leaves the module as it was. Misreading an immediate would make
 * the copy wrong, so the table below follows the binary format exactly, and the rewritten module
 * is validated again by its caller.
 */
import type { ByteReader } from '../byte-reader.js';
import { skipNumericConst } from '../wasm-binary.js';

export class UnknownInstruction extends Error {}

/** Why a module rewrite (the checks, the virtual memory size) left a module as it was, from what it threw. */
export function rewriteRefusal(err: unknown): { reason: string } {
  if (err instanceof UnknownInstruction) return { reason: `its code holds an instruction the rewrite does not know (${err.message})` };
  return { reason: `its binary could not be rewritten: ${err instanceof Error ? err.message : String(err)}` };
}

const unknown = (what: string, at: number): never => {
  throw new UnknownInstruction(`${what} at byte ${at}`);
};

/** Single-byte value types, as a block type or in a local declaration. */
const VALUE_TYPE_BYTES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);

/**
 * `access`: a load or store (SIMD and atomic ones included), memory.fill, memory.copy or
 * memory.init; `table`: an instruction that changes a table (table.set, table.fill, table.copy,
 * table.init, table.grow).
 */
export type MemoryOp = 'size' | 'grow' | 'access' | 'table';

/**
 * Calls `found` for every memory.size / memory.grow on memory 0, every instruction that accesses
 * memory and every one that changes a table, with the offsets of the opcode and of the end of its immediates, and returns
 * when the body ends (`r.end`).
 */
export function walkBody(r: ByteReader, found: (op: MemoryOp, start: number, end: number) => void): void {
  skipLocals(r);
  while (!r.done) {
    const start = r.pos;
    const op = r.u8();
    if (op === 0x3f || op === 0x40) {
      if (r.u32() === 0) found(op === 0x3f ? 'size' : 'grow', start, r.pos);
      continue;
    }
    const access = skipImmediates(r, op, start);
    if (access) found(access, start, r.pos);
  }
}

/**
 * Calls `visit` for every instruction of a function body after its locals, with its first byte and
 * the offsets of the opcode and of the end of its immediates (the preemption rewrite,
 * preempt/inject.ts, needs loops, block ends, calls and function references, not only memory).
 * Throws UnknownInstruction as walkBody does.
 */
export function walkInstructions(r: ByteReader, visit: (op: number, start: number, end: number) => void): void {
  skipLocals(r);
  while (!r.done) {
    const start = r.pos;
    const op = r.u8();
    if (op === 0x3f || op === 0x40) r.u32();
    else skipImmediates(r, op, start);
    visit(op, start, r.pos);
  }
}

/** A body's local declarations, checked to be single-byte value types. */
function skipLocals(r: ByteReader): void {
  const groups = r.u32();
  for (let i = 0; i < groups; i++) {
    r.u32();
    const at = r.pos;
    if (!VALUE_TYPE_BYTES.has(r.u8())) unknown('local of a reference type with a heap type', at);
  }
}

function skipImmediates(r: ByteReader, op: number, at: number): MemoryOp | undefined {
  if ((op >= 0x45 && op <= 0xc4) || NO_IMMEDIATE.has(op)) return;
  if (op >= 0x28 && op <= 0x3e) return memarg(r);
  if (skipNumericConst(r, op)) return;
  switch (op) {
    case 0x02: // block
    case 0x03: // loop
    case 0x04: // if
    case 0x06: // try
      blockType(r);
      return;
    case 0x07: // catch
    case 0x08: // throw
    case 0x09: // rethrow
    case 0x18: // delegate
    case 0x0c: // br
    case 0x0d: // br_if
    case 0x10: // call
    case 0x12: // return_call
    case 0x20: // local.get
    case 0x21: // local.set
    case 0x22: // local.tee
    case 0x23: // global.get
    case 0x24: // global.set
    case 0x25: // table.get
    case 0xd2: // ref.func
      r.u32();
      return;
    case 0x26: // table.set
      r.u32();
      return 'table';
    case 0x0e: {
      // br_table: the targets, then the default
      const n = r.count();
      for (let i = 0; i <= n; i++) r.u32();
      return;
    }
    case 0x11: // call_indirect: type, table
    case 0x13: // return_call_indirect
      r.u32();
      r.u32();
      return;
    case 0x1c: {
      // select with types
      const n = r.count();
      for (let i = 0; i < n; i++) if (!VALUE_TYPE_BYTES.has(r.u8())) unknown('select type', at);
      return;
    }
    case 0xd0: {
      // ref.null: funcref or externref
      const type = r.u8();
      if (type !== 0x70 && type !== 0x6f) unknown('ref.null heap type', at);
      return;
    }
    case 0xfc:
      return prefixedFC(r, at);
    case 0xfd:
      return prefixedSimd(r, at);
    case 0xfe:
      return prefixedAtomic(r, at);
    default:
      return unknown(`opcode 0x${op.toString(16)}`, at);
  }
}

/** unreachable, nop, else, end, return, drop, select, catch_all, ref.is_null. */
const NO_IMMEDIATE = new Set([0x00, 0x01, 0x05, 0x0b, 0x0f, 0x19, 0x1a, 0x1b, 0xd1]);

function memarg(r: ByteReader): 'access' {
  const at = r.pos;
  // Multi-memory sets bit 6 of the alignment and then names the memory; Node 20 does not run it.
  if (r.u32() & 0x40) unknown('memory index in a memarg', at);
  r.u32();
  return 'access';
}

/** Empty, one value type, or a type index (a non-negative signed LEB of up to 33 bits). */
function blockType(r: ByteReader): void {
  const at = r.pos;
  const first = r.u8();
  if (first === 0x40 || VALUE_TYPE_BYTES.has(first)) return;
  if ((first & 0x80) === 0) {
    if (first & 0x40) unknown('block type', at);
    return;
  }
  r.pos = at;
  r.skipSignedLeb(5);
}

function prefixedFC(r: ByteReader, at: number): MemoryOp | undefined {
  const sub = r.u32();
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: // memory.init: data, memory
    case 10: // memory.copy: memory, memory
      r.u32();
      r.u32();
      return 'access';
    case 11: // memory.fill
      r.u32();
      return 'access';
    case 12: // table.init: element, table
    case 14: // table.copy: table, table
      r.u32();
      r.u32();
      return 'table';
    case 15: // table.grow
    case 17: // table.fill
      r.u32();
      return 'table';
    case 9: // data.drop
    case 13: // elem.drop
    case 16: // table.size
      r.u32();
      return;
    default:
      return unknown(`opcode 0xfc ${sub}`, at);
  }
}

function prefixedSimd(r: ByteReader, at: number): MemoryOp | undefined {
  const sub = r.u32();
  if (sub <= 11) return memarg(r); // loads and v128.store
  if (sub === 12 || sub === 13) {
    r.skip(16); // v128.const, i8x16.shuffle
    return;
  }
  if (sub >= 21 && sub <= 34) {
    r.skip(1); // extract and replace lane
    return;
  }
  if (sub >= 84 && sub <= 91) {
    // load and store lane
    memarg(r);
    r.skip(1);
    return 'access';
  }
  if (sub === 92 || sub === 93) return memarg(r); // load32_zero, load64_zero
  if (sub <= 255) return; // the rest of SIMD has no immediate
  return unknown(`opcode 0xfd ${sub}`, at);
}

function prefixedAtomic(r: ByteReader, at: number): MemoryOp | undefined {
  const sub = r.u32();
  if (sub === 0x03) {
    r.skip(1); // atomic.fence
    return;
  }
  if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) return memarg(r);
  return unknown(`opcode 0xfe ${sub}`, at);
}
