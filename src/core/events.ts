/**
 * What the engine reports as it works, for metrics and function logs. The engine calls these on its
 * hot path, so implementations must be cheap (O(1), no I/O) and must not throw.
 */
import type { ErrorCode } from '../errors.js';

/** How an operation ended: `success`, or the code name of the error it ended with. */
export type Outcome = 'success' | ErrorCode;

export type DeployOperation = 'deploy' | 'update';

/**
 * Durations already binned into a histogram's buckets (the metrics' own bounds, which the binning
 * side shares): counts per bucket, not cumulative, the last for anything past the last bound;
 * their sum and how many.
 */
export interface DurationCounts {
  buckets: ArrayLike<number>;
  sum: number;
  count: number;
}

export interface EngineEvents {
  /** An invocation of a deployed function ended; `coldStart` when it was its version's first run. */
  invocation(fn: string, outcome: Outcome, seconds: number, coldStart: boolean): void;
  /** Many invocations of one function with one outcome, run and binned on an HTTP thread; `coldStarts` of them were cold. */
  invocationBatch(fn: string, outcome: Outcome, durations: DurationCounts, coldStarts: number): void;
  /** A function wrote to stderr (one invocation's whole text). */
  functionStderr(fn: string, text: string): void;
  deploy(operation: DeployOperation, outcome: Outcome, seconds: number): void;
  /** An image pull ended; `bytes` is the module's size (0 when it failed). */
  pull(outcome: Outcome, bytes: number, seconds: number): void;
  /** A function was deleted: forget everything kept under its name. */
  functionRemoved(fn: string): void;
}

const noop = (): void => {};

export const noEvents: EngineEvents = {
  invocation: noop,
  invocationBatch: noop,
  functionStderr: noop,
  deploy: noop,
  pull: noop,
  functionRemoved: noop,
};

/** Sends every event to each of `sinks`, in order. */
export function fanOut(...sinks: EngineEvents[]): EngineEvents {
  if (sinks.length === 1) return sinks[0]!;
  return {
    invocation: (fn, outcome, seconds, cold) => {
      for (const s of sinks) s.invocation(fn, outcome, seconds, cold);
    },
    invocationBatch: (fn, outcome, durations, coldStarts) => {
      for (const s of sinks) s.invocationBatch(fn, outcome, durations, coldStarts);
    },
    functionStderr: (fn, text) => {
      for (const s of sinks) s.functionStderr(fn, text);
    },
    deploy: (op, outcome, seconds) => {
      for (const s of sinks) s.deploy(op, outcome, seconds);
    },
    pull: (outcome, bytes, seconds) => {
      for (const s of sinks) s.pull(outcome, bytes, seconds);
    },
    functionRemoved: (fn) => {
      for (const s of sinks) s.functionRemoved(fn);
    },
  };
}
