/** What one ABI runner needs from an invocation request, and what it gives back. */
import type { FunctionArgs, InvocationLimits, ModuleAnalysis } from '../types.js';

/**
 * The part of an InvocationRequest the sandbox reads (an InvocationRequest is one). The pool sends
 * exactly this to its workers, so the hot path's message stays small.
 */
export interface SandboxCall {
  analysis: Pick<ModuleAnalysis, 'abi' | 'entrypoint' | 'params' | 'results'>;
  args: FunctionArgs;
  limits: Pick<InvocationLimits, 'maxOutputBytes'>;
  env?: Record<string, string>;
  stdin?: Uint8Array;
}

export interface AbiOutput {
  output: string;
  stderr: string;
}
