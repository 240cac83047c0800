/**
 * Preemption checks, injected into a module before it is compiled, so that a running call can be
 * stopped without terminating its thread (as wasmtime's fuel and epoch interruption do).
 *
 * The rewritten module has a fuel counter of its own, a mutable i32 global. Every function entry
 * and every loop header subtracts a weight from it: 1 plus the size in bytes, divided by
 * BYTES_PER_FUEL, of the code that can run before the next check (the function body, the loop
 * body), so that a loop with a huge straight body pays for it and the code run between two checks
 * stays bounded whatever the module. When the counter goes below zero, an appended function asks
 * the host, through one imported function (`wasm-engine:preempt` `check`), whether the call may go
 * on: the host answers the new fuel, or a negative number, and the guest then executes
 * `unreachable`. That trap cannot be caught by the guest (a JavaScript exception thrown by the
 * import could be, by a `catch_all`), and the host knows the trap is its own because it said stop
 * (preempt/clock.ts).
 *
 * One instruction can do far more than a loop iteration: memory.fill, memory.copy and memory.init
 * of up to the whole memory, and memory.grow. Each goes through an appended helper that tells the
 * host its size (in 64 KiB pages, when it is at least one page) before it runs, so the host can
 * refuse it (the thread that serves HTTP refuses large ones: see inline/).
 *
 * The import is appended after the module's own, so every function the module defines moves up by
 * one index: calls, tail calls, function references (in code, globals and element segments),
 * exports and the start function are renumbered, and the `name` custom section (debug names by
 * index) is dropped. Types, the fuel global and the helpers are appended, so no other index moves.
 * The rewrite walks every instruction (code-walk.ts); an instruction it does not know leaves the
 * module unrewritten, and the caller validates the result.
 */
import { ByteReader, encodeU32 } from '../byte-reader.js';
import { concat, Writer, type Chunk } from '../byte-writer.js';
import { UnknownInstruction, rewriteRefusal, walkInstructions } from '../reuse/code-walk.js';
import { SECTION, globalType, parseModule, sections, skipNumericConst, type SectionSpan } from '../wasm-binary.js';

export const PREEMPT_MODULE = 'wasm-engine:preempt';
export const PREEMPT_CHECK = 'check';
/**
 * Fuel the host gives at each check. With the weights below, a tight loop asks the host about
 * every 10,000 iterations (microseconds apart), and the code run between two checks is at most
 * about 10,000 × 32 bytes of straight code, well under a millisecond (docs/runtime.md has the
 * measurements this was chosen from).
 */
export const CHECK_INTERVAL = 10_000;
/** Bytes of code one unit of fuel pays for (see the header). */
export const BYTES_PER_FUEL = 32;

export type InjectResult = { bytes: Uint8Array } | { reason: string };

const I32 = 0x7f;
const OP = { unreachable: 0x00, block: 0x02, loop: 0x03, if: 0x04, try: 0x06, end: 0x0b, call: 0x10, returnCall: 0x12, delegate: 0x18, refFunc: 0xd2 } as const;
const encoder = new TextEncoder();

/** Where each section goes in a module, by id (custom sections excepted). */
const ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };
const START_SECTION = 8;

/** The module with preemption checks, or why it was left as it is (never throws for a module analysis accepted). */
export function injectPreemption(bytes: Uint8Array): InjectResult {
  try {
    return inject(bytes);
  } catch (err) {
    return rewriteRefusal(err);
  }
}

function inject(bytes: Uint8Array): InjectResult {
  const m = parseModule(bytes);
  const spans = new Map<number, SectionSpan>();
  for (const s of sections(bytes)) if (s.id !== 0) spans.set(s.id, s);
  const codeSpan = spans.get(SECTION.code);
  if (!codeSpan) return { reason: 'it has no code' };

  const importedFuncs = m.imports.filter((i) => i.kind === 'func').length;
  const shift = (index: number): number => (index >= importedFuncs ? index + 1 : index);
  const baseType = m.types.length;
  const types = { check: baseType, slow: baseType + 1, charge: baseType + 2, bulk: baseType + 3 };
  const checkFunc = importedFuncs;
  const firstAppended = m.functionTypes.length + 1;
  const fuel = encodeU32(m.globals.length);
  const helpers = new Helpers(firstAppended, encodeU32(checkFunc), fuel, types);
  const code = rewriteCode(bytes, codeSpan, shift, helpers, fuel);

  const bodies = new Map<number, Chunk[]>();
  bodies.set(SECTION.type, appended(bytes, spans.get(SECTION.type), [
    [0x60, 1, I32, 1, I32],
    [0x60, 0, 0],
    [0x60, 1, I32, 0],
    [0x60, 3, I32, I32, I32, 0],
  ]));
  bodies.set(SECTION.import, appended(bytes, spans.get(SECTION.import), [[...name(PREEMPT_MODULE), ...name(PREEMPT_CHECK), 0, ...encodeU32(types.check)]]));
  const functions = spans.get(SECTION.function);
  if (!functions) return { reason: 'it has code but no function section' };
  bodies.set(SECTION.function, appended(bytes, functions, helpers.functions));
  bodies.set(SECTION.code, [code]);
  bodies.set(SECTION.global, rewriteGlobals(bytes, spans.get(SECTION.global), shift));
  const exports = spans.get(SECTION.export);
  if (exports) bodies.set(SECTION.export, rewriteExports(bytes, exports, shift));
  const start = spans.get(START_SECTION);
  if (start) {
    const r = new ByteReader(bytes, start.bodyStart, start.end);
    bodies.set(START_SECTION, [encodeU32(shift(r.u32()))]);
  }
  const elements = spans.get(SECTION.element);
  if (elements) bodies.set(SECTION.element, rewriteElements(bytes, elements, shift));

  // Sections the module lacks (types, imports, globals) are written where the order puts them.
  const missing = [...bodies.keys()].filter((id) => !spans.has(id)).sort((a, b) => (ORDER[a] as number) - (ORDER[b] as number));
  const out: Chunk[] = [bytes.subarray(0, 8)];
  const emitMissingBefore = (rank: number): void => {
    while (missing.length > 0 && (ORDER[missing[0] as number] as number) < rank) {
      const id = missing.shift() as number;
      out.push(...section(id, bodies.get(id) as Chunk[]));
    }
  };
  for (const s of sections(bytes)) {
    if (s.id === 0) {
      if (customName(bytes, s) !== 'name') out.push(bytes.subarray(s.start, s.end));
      continue;
    }
    emitMissingBefore(ORDER[s.id] ?? 99);
    const body = bodies.get(s.id);
    out.push(...(body ? section(s.id, body) : [bytes.subarray(s.start, s.end)]));
  }
  emitMissingBefore(Infinity);
  return { bytes: concat(out) };
}

function customName(bytes: Uint8Array, s: SectionSpan): string | undefined {
  try {
    return new ByteReader(bytes, s.bodyStart, s.end).name();
  } catch {
    return undefined;
  }
}

function name(text: string): number[] {
  const raw = encoder.encode(text);
  return [...encodeU32(raw.length), ...raw];
}

/** A section body with entries appended after the existing ones (kept byte for byte); a new one when absent. */
function appended(bytes: Uint8Array, s: SectionSpan | undefined, entries: Chunk[]): Chunk[] {
  if (!s) return [encodeU32(entries.length), ...entries];
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  return [encodeU32(count + entries.length), bytes.subarray(r.pos, s.end), ...entries];
}

function section(id: number, body: Chunk[]): Chunk[] {
  const size = body.reduce((n, c) => n + c.length, 0);
  return [[id, ...encodeU32(size)], ...body];
}

/** Copies a constant expression up to its `end`, renumbering `ref.func`. */
function copyConstExpr(r: ByteReader, out: Writer, shift: (index: number) => number): void {
  for (;;) {
    const at = r.pos;
    const op = r.u8();
    if (skipNumericConst(r, op)) {
      out.bytes(r.bytes.subarray(at, r.pos));
      continue;
    }
    switch (op) {
      case OP.end:
        out.byte(op);
        return;
      case OP.refFunc:
        out.byte(op).u32(shift(r.u32()));
        break;
      case 0x23: // global.get
        r.u32();
        out.bytes(r.bytes.subarray(at, r.pos));
        break;
      case 0xd0: // ref.null
        r.u8();
        out.bytes(r.bytes.subarray(at, r.pos));
        break;
      case 0x6a: case 0x6b: case 0x6c: case 0x7c: case 0x7d: case 0x7e: // extended-const arithmetic
        out.byte(op);
        break;
      case 0xfd: // v128.const
        if (r.u32() !== 12) throw new UnknownInstruction(`SIMD instruction in a constant expression at byte ${at}`);
        r.skip(16);
        out.bytes(r.bytes.subarray(at, r.pos));
        break;
      default:
        throw new UnknownInstruction(`opcode 0x${op.toString(16)} in a constant expression at byte ${at}`);
    }
  }
}

/** The global section with `ref.func` initialisers renumbered and the fuel counter appended. */
function rewriteGlobals(bytes: Uint8Array, s: SectionSpan | undefined, shift: (index: number) => number): Chunk[] {
  const fuel = [I32, 1, 0x41, ...encodeS32(CHECK_INTERVAL), OP.end];
  if (!s) return [encodeU32(1), fuel];
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const out = new Writer(s.end - s.bodyStart + 16);
  out.u32(count + 1);
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    globalType(r);
    out.bytes(bytes.subarray(at, r.pos));
    copyConstExpr(r, out, shift);
  }
  if (!r.done) r.fail('global section has trailing bytes');
  out.bytes(fuel);
  return [out.view()];
}

function rewriteExports(bytes: Uint8Array, s: SectionSpan, shift: (index: number) => number): Chunk[] {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const out = new Writer(s.end - s.bodyStart + 16);
  out.u32(count);
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    r.name();
    const kind = r.u8();
    out.bytes(bytes.subarray(at, r.pos));
    const index = r.u32();
    out.u32(kind === 0 ? shift(index) : index);
  }
  if (!r.done) r.fail('export section has trailing bytes');
  return [out.view()];
}

/** Element segments with every function index renumbered, in each of the eight encodings. */
function rewriteElements(bytes: Uint8Array, s: SectionSpan, shift: (index: number) => number): Chunk[] {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const out = new Writer(s.end - s.bodyStart + 16);
  out.u32(count);
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags > 7) r.fail(`unknown element segment flags ${flags}`);
    out.u32(flags);
    const passiveOrDeclarative = (flags & 0b001) !== 0;
    const explicitTable = (flags & 0b010) !== 0;
    const expressions = (flags & 0b100) !== 0;
    if (!passiveOrDeclarative && explicitTable) out.u32(r.u32());
    if (!passiveOrDeclarative) copyConstExpr(r, out, shift);
    // Flags 0 and 4 (active, table 0) have no element kind or reference type byte; the others do.
    if (flags !== 0 && flags !== 4) out.byte(r.u8());
    const n = r.count();
    out.u32(n);
    for (let j = 0; j < n; j++) {
      if (expressions) copyConstExpr(r, out, shift);
      else out.u32(shift(r.u32()));
    }
  }
  if (!r.done) r.fail('element section has trailing bytes');
  return [out.view()];
}

/** The appended functions: the slow path of a check, the charge of a bulk instruction, and one helper per bulk instruction used. */
class Helpers {
  readonly functions: number[][] = [];
  readonly bodies: number[][] = [];
  private readonly byInstruction = new Map<string, number>();
  readonly slow: number[];
  private readonly charge: number[];

  constructor(
    private readonly first: number,
    check: number[],
    fuel: number[],
    private readonly types: { check: number; slow: number; charge: number; bulk: number },
  ) {
    // fuel = check(pages); if fuel < 0: unreachable
    const ask = [0x10, ...check, 0x24, ...fuel, 0x23, ...fuel, 0x41, 0, 0x48, OP.if, 0x40, OP.unreachable, OP.end];
    this.slow = this.add(types.slow, [0, 0x41, 0, ...ask, OP.end]);
    // Asks only for an instruction of a page or more: the tick at the enclosing loop pays for small ones.
    this.charge = this.add(types.charge, [0, 0x20, 0, OP.if, 0x40, 0x20, 0, ...ask, OP.end, OP.end]);
  }

  private add(type: number, body: number[]): number[] {
    this.functions.push(encodeU32(type));
    this.bodies.push(body);
    return [OP.call, ...encodeU32(this.first + this.bodies.length - 1)];
  }

  /**
   * The call that replaces a bulk instruction or memory.grow (its bytes, from its opcode; the
   * helper runs it as it is, immediates included, on 32-bit memories: analysis refuses others).
   */
  bulk(instruction: Uint8Array): number[] {
    const key = instruction.join(',');
    const known = this.byInstruction.get(key);
    if (known !== undefined) return [OP.call, ...encodeU32(known)];
    const call =
      instruction[0] === 0x40
        ? // memory.grow: the delta is in pages already.
          this.add(this.types.check, [0, 0x20, 0, ...this.charge, 0x20, 0, ...instruction, OP.end])
        : // memory.fill, memory.copy, memory.init (dest, value or source, length): length >> 16 pages.
          this.add(this.types.bulk, [0, 0x20, 2, 0x41, 16, 0x76, ...this.charge, 0x20, 0, 0x20, 1, 0x20, 2, ...instruction, OP.end]);
    this.byInstruction.set(key, this.first + this.bodies.length - 1);
    return call;
  }
}

/** The fuel one pass through `size` bytes of code costs. */
function weight(size: number): number {
  return 1 + Math.floor(size / BYTES_PER_FUEL);
}

/** fuel -= w; if fuel < 0: the slow path (which asks the host). */
function tick(fuel: number[], w: number, slow: number[]): number[] {
  return [0x23, ...fuel, 0x41, ...encodeS32(w), 0x6b, 0x24, ...fuel, 0x23, ...fuel, 0x41, 0, 0x48, OP.if, 0x40, ...slow, OP.end];
}

/**
 * Every body copied with a tick at its entry and after each loop's block type, calls and function
 * references renumbered, and bulk instructions and memory.grow replaced by calls to
 * their helpers; then the helpers' bodies.
 */
function rewriteCode(bytes: Uint8Array, s: SectionSpan, shift: (index: number) => number, helpers: Helpers, fuel: number[]): Uint8Array {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  const out = new Writer(Math.ceil((s.end - s.bodyStart) * 1.25) + 64);
  const body = new Writer(1024);
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    r.skip(size);
    const locals = new ByteReader(bytes, start, end);
    const groups = locals.u32();
    for (let j = 0; j < groups; j++) {
      locals.u32();
      locals.u8();
    }
    const headerEnd = locals.pos;

    // First pass: the size of every loop, from its opcode to its end.
    const loopSizes = new Map<number, number>();
    const open: number[] = [];
    walkInstructions(new ByteReader(bytes, start, end), (op, at) => {
      if (op === OP.block || op === OP.if || op === OP.try) open.push(-1);
      else if (op === OP.loop) open.push(at);
      else if (op === OP.end || op === OP.delegate) {
        const opened = open.pop();
        if (opened !== undefined && opened >= 0) loopSizes.set(opened, at + 1 - opened);
      }
    });

    body.length = 0;
    body.bytes(bytes.subarray(start, headerEnd));
    body.bytes(tick(fuel, weight(end - headerEnd), helpers.slow));
    let copied = headerEnd;
    walkInstructions(new ByteReader(bytes, start, end), (op, at, opEnd) => {
      let replacement: number[] | undefined;
      switch (op) {
        case OP.loop:
          body.bytes(bytes.subarray(copied, opEnd));
          copied = opEnd;
          body.bytes(tick(fuel, weight(loopSizes.get(at) ?? end - at), helpers.slow));
          return;
        case OP.call:
        case OP.returnCall:
        case OP.refFunc: {
          const index = new ByteReader(bytes, at + 1, opEnd).u32();
          replacement = [op, ...encodeU32(shift(index))];
          break;
        }
        case 0x40: // memory.grow
          replacement = helpers.bulk(bytes.subarray(at, opEnd));
          break;
        case 0xfc: {
          const sub = new ByteReader(bytes, at + 1, opEnd).u32();
          if (sub === 8 || sub === 10 || sub === 11) replacement = helpers.bulk(bytes.subarray(at, opEnd));
          break;
        }
        default:
          break;
      }
      if (!replacement) return;
      body.bytes(bytes.subarray(copied, at));
      body.bytes(replacement);
      copied = opEnd;
    });
    body.bytes(bytes.subarray(copied, end));
    bodies.push(body.view().slice());
  }
  if (!r.done) r.fail('code section has trailing bytes');
  out.u32(count + helpers.bodies.length);
  for (const b of bodies) out.u32(b.length).bytes(b);
  for (const b of helpers.bodies) out.u32(b.length).bytes(b);
  return out.view();
}

/** Signed LEB128 of an i32. */
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
