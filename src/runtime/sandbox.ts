/**
 * Runs one invocation, synchronously, in a FRESH instance of a compiled module (SPEC isolation:
 * nothing one call changes — memory, globals, tables — is seen by the next). The pool's workers
 * call this; it never runs on the HTTP thread.
 */
import { runNumeric } from './abi/numeric.js';
import { runStringAbi } from './abi/string-abi.js';
import { runWasi } from './abi/wasi.js';
import type { AbiOutput, SandboxCall } from './abi/call.js';
import { guestFailure } from './traps.js';
import type { InvocationResult } from './types.js';
import type { WasmModule } from './wasm-api.js';

export type { SandboxCall } from './abi/call.js';

function runAbi(module: WasmModule, call: SandboxCall): AbiOutput {
  switch (call.analysis.abi) {
    case 'wasi':
      return runWasi(module, call);
    case 'string':
      return runStringAbi(module, call);
    case 'numeric':
      return runNumeric(module, call);
  }
}

/** Throws EngineError: INVALID_ARGS, FUNCTION_FAILED, or INTERNAL for an engine bug. */
export function runInvocation(module: WasmModule, call: SandboxCall): InvocationResult {
  const started = performance.now();
  let out: AbiOutput;
  try {
    out = runAbi(module, call);
  } catch (err) {
    throw guestFailure(err);
  }
  return { ...out, durationMs: performance.now() - started };
}
