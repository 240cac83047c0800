/**
 * The trial instance deploy makes of a module (in a preparation worker, under the function's time
 * limit, which the preparer enforces by terminating the worker): instantiation runs the module's
 * start function, and every sandbox would run it again before each call. A start function that
 * never ends, traps or exits with an error would make every call fail, so such a module is refused
 * at deploy rather than deployed to fail (or to hold a sandbox worker until its deadline) forever.
 * The instance is made as a sandbox makes it (instance-runner.ts): the WASI host for a WASI
 * module, with no arguments, environment or input yet (they are set per call), and no imports
 * otherwise.
 */
import { EngineError } from '../../errors.js';
import { wasiHost } from '../abi/wasi.js';
import { guestFailure } from '../traps.js';
import type { Abi } from '../types.js';
import { OutputLimitExceeded, ProcExit } from '../wasi/exit.js';
import { wasm, type WasmModule } from '../wasm-api.js';
import { UNARMED_CLOCK } from '../preempt/clock.js';

/** Throws INVALID_FUNCTION_IMAGE when the module's instantiation fails in a way every call would. */
export function tryInstance(module: WasmModule, abi: Abi): void {
  try {
    new wasm.Instance(module, abi === 'wasi' ? { ...UNARMED_CLOCK.imports, ...wasiHost().imports } : UNARMED_CLOCK.imports);
  } catch (err) {
    // The sandbox counts proc_exit(0) in a start function as a successful (empty) call.
    if (err instanceof ProcExit && err.code === 0) return;
    // Memory this machine could not give now is no fault of the module: calls may yet run.
    if (err instanceof RangeError && !/call stack/i.test(err.message)) return;
    throw new EngineError('INVALID_FUNCTION_IMAGE', `the module cannot be instantiated: ${instantiationFailure(err)}`, { cause: err });
  }
}

function instantiationFailure(err: unknown): string {
  if (err instanceof ProcExit) return `its start function exited with exit code ${err.code}`;
  // Output belongs to a call: before one begins there is no room for any.
  if (err instanceof OutputLimitExceeded) return 'its start function wrote to stdout or stderr before any call began';
  return guestFailure(err).message;
}
