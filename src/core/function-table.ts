/**
 * What other threads of this process need to run a function's calls themselves (the HTTP threads,
 * src/api/threads): the function as it is invoked now, and what they report back of the calls they
 * ran. The engine stays the one owner of functions; these are its copies and its reports.
 */
import type { InvocationLimits, ModuleAnalysis, PortableModule } from '../runtime/index.js';
import type { DurationCounts, Outcome } from './events.js';

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

/**
 * The calls another thread ran of one function version that ended one way, reported together to
 * the engine (Engine.recordInvocations): one entry per report, however many calls.
 */
export interface ThreadInvocations {
  name: string;
  digest: string;
  outcome: Outcome;
  /** Their durations, binned with the metrics' invocation buckets (metrics/durations.ts). */
  durations: DurationCounts;
}

/** What one of those calls wrote to stderr: [function, text], in the order the calls ended. */
export type ThreadStderr = [name: string, text: string];
