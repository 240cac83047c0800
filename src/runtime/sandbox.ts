/**
 * Runs one invocation, synchronously, in a FRESH instance of a compiled module: the simple form of
 * the sandbox, for callers that hold no instances between calls (tests, tools). The pool's workers
 * keep an InstanceRunner per module instead, which may restore and reuse an instance (SPEC
 * isolation holds either way: nothing one call changes — memory, globals, tables — is seen by the next).
 */
import { toSandboxCall } from './abi/call.js';
import { InstanceRunner } from './instance-runner.js';
import type { InvocationRequest, InvocationResult } from './types.js';
import type { WasmModule } from './wasm-api.js';

export type { SandboxCall } from './abi/call.js';

/** Throws EngineError: INVALID_ARGS, FUNCTION_FAILED, or INTERNAL for an engine bug. */
export function runInvocation(
  module: WasmModule,
  req: Pick<InvocationRequest, 'analysis' | 'args' | 'limits' | 'env' | 'stdin'>,
): InvocationResult {
  return new InstanceRunner(module, req.analysis.abi, undefined).run(toSandboxCall(req));
}
