/**
 * SPEC §3b, the historical convention for wasm32-unknown-unknown: the compact JSON of args is
 * written at `__heap_base`, `f(ptr, len)` answers `(ptr, len)` of its UTF-8 output.
 *
 * The engine's growth of memory is split in two: one page when the instance is made (prepare),
 * the rest, if the input needs more, at the call. The state a call starts from is the same as one
 * grow by the total, and the first part can then belong to the pristine state a reused instance
 * is restored to. When the module's memory size was made virtual (reuse/virtual-size.ts) both the
 * growth and the size the output is checked against go through the guest's virtual size, so that
 * they agree with what the guest sees.
 */
import { EngineError } from '../../errors.js';
import { visibleMemoryBytes, type VirtualSize } from '../reuse/virtual-size.js';
import type { WrittenMap } from '../reuse/written-map.js';
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
  /** Grows memory as the guest sees it; false at the maximum. */
  grow: (pages: number) => boolean;
  /** Memory size in bytes as the guest sees it. */
  size: () => number;
  /** Marks what the engine writes, when the instance keeps a written map (reuse/written-map.ts). */
  written: WrittenMap | undefined;
}

/** Grows the first page, as the historical engine did for every call. */
export function prepareString(exports: Readonly<Record<string, unknown>>, virtualSize?: VirtualSize, written?: WrittenMap): StringInstance {
  const memory = exports['memory'] as WasmMemory;
  const heapBase = Number((exports['__heap_base'] as WasmGlobal).value) >>> 0;
  const { grow, size } = virtualSize ? virtualOps(exports, virtualSize) : realOps(memory);
  const initialBytes = size();
  const grown = grow(1);
  return { exports, memory, heapBase, initialBytes, grown, grow, size, written };
}

function realOps(memory: WasmMemory): Pick<StringInstance, 'grow' | 'size'> {
  return {
    grow: (pages) => {
      try {
        memory.grow(pages);
        return true;
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        return false;
      }
    },
    size: () => memory.buffer.byteLength,
  };
}

function virtualOps(exports: Readonly<Record<string, unknown>>, names: VirtualSize): Pick<StringInstance, 'grow' | 'size'> {
  const grow = exports[names.grow] as (pages: number) => number;
  return { grow: (pages) => grow(pages) !== -1, size: visibleMemoryBytes(exports, names) };
}

/** Writes the input, calls the entry, reads the output; traps propagate to the caller. */
export function callString(inst: StringInstance, entrypoint: string, json: string, maxOutputBytes: number): AbiOutput {
  const input = encoder.encode(json);
  const { memory, heapBase } = inst;
  // At least one page (grown by prepare), and enough to hold the input.
  const pages = Math.max(1, Math.ceil((heapBase + input.length - inst.initialBytes) / WASM_PAGE_BYTES));
  const more = pages - 1;
  if (!inst.grown || (more > 0 && !inst.grow(more))) {
    throw failed(`the input (${input.length} bytes at __heap_base ${heapBase}) does not fit within the function's memory limit`);
  }
  new Uint8Array(memory.buffer, heapBase, input.length).set(input);
  inst.written?.mark(heapBase, input.length);
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
  const size = inst.size();
  if (ptr + len > size) {
    throw failed(`the function returned an out-of-range output [${ptr}, ${ptr + len}) (memory is ${size} bytes)`);
  }
  return { output: decoder.decode(new Uint8Array(memory.buffer, ptr, len)), stderr: '' };
}
