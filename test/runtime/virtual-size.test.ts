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
    const sizeGlobal = made[state.globals[state.globals.length - 1] as string] as { value: number };
    const memory = made[state.memory as string] as { buffer: ArrayBuffer };
    const fresh = sequence(instance(wat('virtual-size')));
    expect(sequence(e)).toEqual(fresh);
    const realPages = memory.buffer.byteLength / 65536;
    expect(realPages).toBe(6);
    sizeGlobal.value = 1;
    expect(sequence(e)).toEqual(fresh);
    expect(memory.buffer.byteLength / 65536).toBe(realPages);
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
  });
});
