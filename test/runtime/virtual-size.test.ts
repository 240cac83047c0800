/**
 * The memory-size rewrite behind reuse of instances that grow (src/runtime/reuse/virtual-size.ts):
 * the rewritten module must do what the original does, instruction for instruction, and answer
 * memory.size and memory.grow as a fresh instance does once its size global is put back.
 */
import { describe, expect, it } from 'vitest';
import { prepareForReuse, virtualizeMemorySize, wasm, type ExposedState } from '../../src/runtime/index.js';
import { ByteReader } from '../../src/runtime/byte-reader.js';
import { UnknownInstruction, walkBody } from '../../src/runtime/reuse/code-walk.js';
import { wat, watText } from './support.js';

type Exports = Record<string, (...args: number[]) => number>;

function rewritten(bytes: Uint8Array): Uint8Array {
  const result = virtualizeMemorySize(bytes);
  if (!('bytes' in result)) throw new Error(`not rewritten: ${result.reason}`);
  expect(wasm.validate(result.bytes)).toBe(true);
  return result.bytes;
}

const instance = (bytes: Uint8Array): Exports => new wasm.Instance(new wasm.Module(bytes)).exports as unknown as Exports;

/** Grows and sizes in a row: what a program sees of its memory. */
const GROWS = [0, 1, 0, 2, 10, 1, 1, 0, -1, 65536, 0];
const sequence = (e: Exports): number[] => [e['size']!(), ...GROWS.map((d) => e['grow']!(d)), e['size']!()];

describe('virtualizeMemorySize', () => {
  it('keeps what every instruction does: the rewritten module answers what the original answers', () => {
    const bytes = wat('virtual-size');
    const original = instance(bytes);
    const virtual = instance(rewritten(bytes));
    const run = (e: Exports): number[] => [0, 1, 2, 5].map((x) => e['mix']!(x));
    expect(run(virtual)).toEqual(run(original));
    expect(virtual['size']!()).toBe(original['size']!());
  });

  it('memory.grow answers as on the real memory, up to and past the maximum', () => {
    const bytes = wat('virtual-size');
    const expected = sequence(instance(bytes));
    expect(expected).toContain(-1);
    expect(sequence(instance(rewritten(bytes)))).toEqual(expected);
    // No maximum: 65,536 pages is the bound.
    const open = watText('(module (memory 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))) (func (export "size") (result i32) (memory.size)))');
    expect(sequence(instance(rewritten(open)))).toEqual(sequence(instance(open)));
  });

  it('an instance whose size global is put back answers as a fresh one, although its real memory stays grown', () => {
    const exposed = prepareForReuse(wat('virtual-size'));
    if (!('state' in exposed)) throw new Error(exposed.reason);
    const { state, bytes } = exposed as { state: Required<ExposedState>; bytes: Uint8Array };
    expect(state.virtualSize).toBeDefined();
    const made = new wasm.Instance(new wasm.Module(bytes)).exports;
    const e = made as unknown as Exports;
    const sizeGlobal = made[state.globals[state.globals.length - 1] as string] as { value: bigint };
    const memory = made[state.memory as string] as { buffer: ArrayBuffer };
    const fresh = sequence(instance(wat('virtual-size')));
    expect(sequence(e)).toEqual(fresh);
    const realPages = memory.buffer.byteLength / 65536;
    expect(realPages).toBe(6);
    sizeGlobal.value = 65536n;
    expect(sequence(e)).toEqual(fresh);
    expect(memory.buffer.byteLength / 65536).toBe(realPages);
  });

  it('every access past the size the guest sees traps as in a fresh instance, whatever the real memory grew to', () => {
    // One export per access instruction, each taking an address (and answering a value or 0).
    const accesses = [
      'i32.load', 'i64.load', 'f32.load', 'f64.load', 'i32.load8_s', 'i32.load8_u', 'i32.load16_s', 'i32.load16_u',
      'i64.load8_s', 'i64.load8_u', 'i64.load16_s', 'i64.load16_u', 'i64.load32_s', 'i64.load32_u',
    ].map((op) => `(drop (${op} offset=3 (local.get 0)))`);
    for (const [op, value] of [['i32.store', 'i32.const 1'], ['i64.store', 'i64.const 1'], ['f32.store', 'f32.const 1'], ['f64.store', 'f64.const 1'], ['i32.store8', 'i32.const 1'], ['i32.store16', 'i32.const 1'], ['i64.store8', 'i64.const 1'], ['i64.store16', 'i64.const 1'], ['i64.store32', 'i64.const 1']]) {
      accesses.push(`(${op} offset=5 (local.get 0) (${value}))`);
    }
    for (const op of ['v128.load', 'v128.load8x8_s', 'v128.load16x4_u', 'v128.load32x2_s', 'v128.load8_splat', 'v128.load16_splat', 'v128.load32_splat', 'v128.load64_splat', 'v128.load32_zero', 'v128.load64_zero']) {
      accesses.push(`(drop (${op} (local.get 0)))`);
    }
    accesses.push('(v128.store offset=1 (local.get 0) (v128.const i64x2 1 2))');
    for (const [w, lane] of [['8', 15], ['16', 7], ['32', 3], ['64', 1]]) {
      accesses.push(`(drop (v128.load${w}_lane ${lane} (local.get 0) (v128.const i64x2 0 0)))`, `(v128.store${w}_lane ${lane} (local.get 0) (v128.const i64x2 -1 -1))`);
    }
    accesses.push(
      '(drop (i32.atomic.load (local.get 0)))',
      '(drop (i64.atomic.load16_u (local.get 0)))',
      '(i64.atomic.store offset=8 (local.get 0) (i64.const 1))',
      '(drop (i32.atomic.rmw.add (local.get 0) (i32.const 1)))',
      '(drop (i64.atomic.rmw32.xchg_u (local.get 0) (i64.const 1)))',
      '(drop (i32.atomic.rmw8.cmpxchg_u (local.get 0) (i32.const 0) (i32.const 1)))',
      '(drop (memory.atomic.notify (local.get 0) (i32.const 1)))',
      '(memory.fill (local.get 0) (i32.const 9) (i32.const 7))',
      '(memory.copy (local.get 0) (i32.const 0) (i32.const 7))',
      '(memory.copy (i32.const 0) (local.get 0) (i32.const 7))',
      '(memory.init $d (local.get 0) (i32.const 1) (i32.const 3))',
    );
    const text = `(module (memory (export "memory") 1 4) (data $d "abcdef")
      ${accesses.map((a, i) => `(func (export "a${i}") (param i32) ${a})`).join('\n')})`;
    const bytes = watText(text);
    const made = new wasm.Instance(new wasm.Module(rewritten(bytes))).exports;
    // The real memory grows to 3 pages while the guest still sees 1, as after a restore.
    (made['memory'] as { grow: (pages: number) => number }).grow(2);
    const outcome = (e: Exports, name: string, addr: number): string => {
      try {
        return String(e[name]!(addr));
      } catch (err) {
        return (err as Error).message;
      }
    };
    const addresses = [0, 1, 2, 65516, 65520, 65521, 65526, 65528, 65529, 65530, 65531, 65532, 65533, 65534, 65535, 65536, 65537, 131072, -1, -16];
    let traps = 0;
    for (let i = 0; i < accesses.length; i++) {
      for (const addr of addresses) {
        const expected = outcome(instance(bytes), `a${i}`, addr);
        if (expected === 'memory access out of bounds') traps++;
        expect(`${accesses[i]} at ${addr}: ${outcome(made as unknown as Exports, `a${i}`, addr)}`).toBe(`${accesses[i]} at ${addr}: ${expected}`);
      }
    }
    expect(traps).toBeGreaterThan(accesses.length * 5);
  });

  it('V8 checks the alignment of an atomic access before its bound, which the check in front of it relies on', () => {
    const e = instance(watText('(module (memory 1) (func (export "f") (param i32) (result i32) (i32.atomic.load (local.get 0))))'));
    const message = (addr: number): string => {
      try {
        return String(e['f']!(addr));
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(message(1)).toMatch(/unaligned/);
    expect(message(65535)).toMatch(/unaligned/);
    expect(message(65537)).toMatch(/unaligned/);
    expect(message(65536)).toBe('memory access out of bounds');
  });

  it('adds a global section to a module that has none', () => {
    const bytes = watText('(module (memory 2) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))) (func (export "size") (result i32) (memory.size)))');
    expect(sequence(instance(rewritten(bytes)))).toEqual(sequence(instance(bytes)));
  });

  it('leaves alone, with the reason, what it cannot rewrite', () => {
    const module = (body: string): Uint8Array => watText(`(module ${body})`);
    expect(virtualizeMemorySize(module('(import "env" "m" (memory 1)) (func (export "f"))'))).toEqual({ reason: expect.stringMatching(/imported/) });
    expect(virtualizeMemorySize(module('(func (export "f"))'))).toEqual({ reason: expect.stringMatching(/exactly one memory/) });
    expect(virtualizeMemorySize(module('(memory 1) (func (export "\\00wasm-engine:memory.grow"))'))).toEqual({ reason: expect.stringMatching(/reserved prefix/) });
  });

  it('leaves alone, with the reason, a module with more than 10,000 distinct accesses that need a helper function', () => {
    // Compare-exchanges at 10,001 offsets: each would need a helper of its own.
    const body = (n: number): string => Array.from({ length: n }, (_, i) => `(drop (i32.atomic.rmw.cmpxchg offset=${i * 4} (local.get 0) (i32.const 0) (i32.const 1)))`).join('');
    const module = (n: number): Uint8Array => watText(`(module (memory 1) (func (export "f") (param i32) ${body(n)}))`);
    expect(virtualizeMemorySize(module(10_001))).toEqual({ reason: expect.stringMatching(/more than 10000 distinct accesses need a helper/) });
    expect('bytes' in virtualizeMemorySize(module(10_000))).toBe(true);
  });

  it('stops at an instruction it does not know instead of guessing its immediates', () => {
    // No locals, call_ref (typed function references, not run by Node 20), end.
    const body = new Uint8Array([0x00, 0x14, 0x00, 0x0b]);
    expect(() => walkBody(new ByteReader(body), () => undefined)).toThrow(UnknownInstruction);
    // memory.grow and memory.size on memory 0 are found with the bytes they span.
    const found: [string, number, number][] = [];
    walkBody(new ByteReader(new Uint8Array([0x00, 0x41, 0x01, 0x40, 0x00, 0x1a, 0x3f, 0x00, 0x1a, 0x0b])), (op, start, end) => found.push([op, start, end]));
    expect(found).toEqual([
      ['grow', 3, 5],
      ['size', 6, 8],
    ]);
    // So are the accesses of memory, with their memarg: i32.load offset=300, memory.fill.
    found.length = 0;
    walkBody(new ByteReader(new Uint8Array([0x00, 0x41, 0x00, 0x28, 0x02, 0xac, 0x02, 0x1a, 0x41, 0x00, 0x41, 0x00, 0x41, 0x00, 0xfc, 0x0b, 0x00, 0x0b])), (op, start, end) =>
      found.push([op, start, end]),
    );
    expect(found).toEqual([
      ['access', 3, 7],
      ['access', 14, 17],
    ]);
  });
});
