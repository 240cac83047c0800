/**
 * SPEC §3b, the historical convention for wasm32-unknown-unknown: the compact JSON of args is
 * written at `__heap_base`, `f(ptr, len)` answers `(ptr, len)` of its UTF-8 output.
 *
 * The engine's growth of memory is split in two: one page when the instance is made (prepare),
 * the rest, if the input needs more, at the call. The state a call starts from is the same as one
 * grow by the total, and the first part can then belong to the pristine state a reused instance
 * is restored to.
 */
import { EngineError } from '../../errors.js';
import { WASM_PAGE_BYTES, type WasmGlobal, type WasmMemory } from '../wasm-api.js';
import type { AbiOutput } from './call.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

const failed = (message: string): EngineError => new EngineError('FUNCTION_FAILED', message);

export interface StringInstance {
  exports: Readonly<Record<string, unknown>>;
  memory: WasmMemory;
  heapBase: number;
  /** Memory size in bytes before the engine grew it. */
  initialBytes: number;
  /** False when not even the first page could be grown (the memory is at its maximum). */
  grown: boolean;
}

/** Grows the first page, as the historical engine did for every call. */
export function prepareString(exports: Readonly<Record<string, unknown>>): StringInstance {
  const memory = exports['memory'] as WasmMemory;
  const heapBase = Number((exports['__heap_base'] as WasmGlobal).value) >>> 0;
  const initialBytes = memory.buffer.byteLength;
  let grown = true;
  try {
    memory.grow(1);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    grown = false;
  }
  return { exports, memory, heapBase, initialBytes, grown };
}

/** Writes the input, calls the entry, reads the output; traps propagate to the caller. */
export function callString(inst: StringInstance, entrypoint: string, json: string, maxOutputBytes: number): AbiOutput {
  const input = encoder.encode(json);
  const { memory, heapBase } = inst;
  // At least one page (grown by prepare), and enough to hold the input.
  const pages = Math.max(1, Math.ceil((heapBase + input.length - inst.initialBytes) / WASM_PAGE_BYTES));
  const more = pages - 1;
  try {
    if (!inst.grown) throw new RangeError('memory at its maximum');
    if (more > 0) memory.grow(more);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw failed(`the input (${input.length} bytes at __heap_base ${heapBase}) does not fit within the function's memory limit`);
  }
  new Uint8Array(memory.buffer, heapBase, input.length).set(input);
  const entry = inst.exports[entrypoint] as (ptr: number, len: number) => unknown;
  const result = entry(heapBase, input.length);
  if (!Array.isArray(result) || result.length !== 2 || typeof result[0] !== 'number' || typeof result[1] !== 'number') {
    throw failed('the function did not return (ptr, len)');
  }
  const ptr = result[0] >>> 0;
  const len = result[1] >>> 0;
  if (len > maxOutputBytes) {
    throw failed(`output limit exceeded: the function returned ${len} bytes, more than ${maxOutputBytes}`);
  }
  const size = memory.buffer.byteLength;
  if (ptr + len > size) {
    throw failed(`the function returned an out-of-range output [${ptr}, ${ptr + len}) (memory is ${size} bytes)`);
  }
  return { output: decoder.decode(new Uint8Array(memory.buffer, ptr, len)), stderr: '' };
}
