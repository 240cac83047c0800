/**
 * What other threads of this process need to run a function's calls themselves (the HTTP threads,
 * src/api/threads): the function as it is invoked now, and what they report back of the calls they
 * ran. The engine stays the one owner of functions; these are its copies and its reports.
 */
import type { InvocationLimits, ModuleAnalysis, PortableModule } from '../runtime/index.js';
import type { Outcome } from './events.js';

/** A deployed function whose calls may run on another thread: everything such a call needs. */
export interface InvocableFunction {
  name: string;
  digest: string;
  memoryLimitMb: number;
  analysis: ModuleAnalysis;
  limits: InvocationLimits;
  env: Record<string, string>;
  /** Its concurrency gate's shared cells (function-gate.ts tryTakeGateCell, releaseGateCell). */
  gate: Int32Array;
  module: PortableModule;
}

/** One call another thread ran, reported to the engine (Engine.recordInvocations). */
export interface ThreadInvocation {
  name: string;
  digest: string;
  outcome: Outcome;
  seconds: number;
  /** Its stderr, '' when none. */
  stderr: string;
}
