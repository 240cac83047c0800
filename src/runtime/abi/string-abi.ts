/**
 * SPEC §3b, the historical convention for wasm32-unknown-unknown: the compact JSON of args is
 * written at `__heap_base`, `f(ptr, len)` answers `(ptr, len)` of its UTF-8 output.
 */
import { EngineError } from '../../errors.js';
import { guestFailure } from '../traps.js';
import { WASM_PAGE_BYTES, wasm, type WasmGlobal, type WasmMemory, type WasmModule } from '../wasm-api.js';
import type { AbiOutput, SandboxCall } from './call.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

const failed = (message: string): EngineError => new EngineError('FUNCTION_FAILED', message);

export function runStringAbi(module: WasmModule, call: SandboxCall): AbiOutput {
  const input = encoder.encode(call.args.json);
  let memory: WasmMemory;
  let result: unknown;
  try {
    const instance = new wasm.Instance(module, {});
    memory = instance.exports['memory'] as WasmMemory;
    const heapBase = Number((instance.exports['__heap_base'] as WasmGlobal).value) >>> 0;
    // At least one page, as the historical engine grew, and enough to hold the input.
    const missing = heapBase + input.length - memory.buffer.byteLength;
    const pages = Math.max(1, Math.ceil(missing / WASM_PAGE_BYTES));
    try {
      memory.grow(pages);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw failed(`the input (${input.length} bytes at __heap_base ${heapBase}) does not fit within the function's memory limit`);
    }
    new Uint8Array(memory.buffer, heapBase, input.length).set(input);
    const entry = instance.exports[call.analysis.entrypoint] as (ptr: number, len: number) => unknown;
    result = entry(heapBase, input.length);
  } catch (err) {
    throw guestFailure(err);
  }
  if (!Array.isArray(result) || result.length !== 2 || typeof result[0] !== 'number' || typeof result[1] !== 'number') {
    throw failed('the function did not return (ptr, len)');
  }
  const ptr = result[0] >>> 0;
  const len = result[1] >>> 0;
  if (len > call.limits.maxOutputBytes) {
    throw failed(`output limit exceeded: the function returned ${len} bytes, more than ${call.limits.maxOutputBytes}`);
  }
  const size = memory.buffer.byteLength;
  if (ptr + len > size) {
    throw failed(`the function returned an out-of-range output [${ptr}, ${ptr + len}) (memory is ${size} bytes)`);
  }
  return { output: decoder.decode(new Uint8Array(memory.buffer, ptr, len)), stderr: '' };
}
