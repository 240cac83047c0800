/**
 * The records the pool keeps: a call, a call sent to a worker, a worker (its slot), and a worker's
 * share of a preload. Shared by the scheduler, the thread protocol (worker-slot.ts) and preloading.
 */
import type { SandboxCall } from '../abi/call.js';
import type { CancelSignal, InvocationResult, PreloadFailure, PreloadRequest } from '../types.js';
import type { LoadedModule } from './module-cache.js';
import type { Worker } from 'node:worker_threads';

export interface Call {
  id: number;
  loaded: LoadedModule;
  sandbox: SandboxCall;
  timeoutMs: number;
  /** Refused with OVERLOADED if it has not started by then (performance.now() time). */
  startBy: number;
  resolve: (result: InvocationResult) => void;
  reject: (err: unknown) => void;
  signal: CancelSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Where it waits or runs: in the pool queue (undefined), or sent to a worker. */
  sent: Sent | undefined;
  settled: boolean;
  /** Taken back once from a worker that had not started it by its deadline (see deadlines.ts onTimeout). */
  moved: boolean;
}

/** A call as sent to one worker; kept until that worker acknowledges it (ran it, or skipped it). */
export interface Sent {
  call: Call;
  cell: number;
  /** Taken back before the worker started it: the worker will skip it. */
  withdrawn: boolean;
}

/** 'preloading': up, and given modules to ready ahead of their calls, but no call (see preload.ts). */
export type SlotState = 'starting' | 'up' | 'preloading' | 'gone';

export interface Slot {
  worker: Worker;
  state: SlotState;
  /** Ids of the modules this worker holds. */
  modules: Set<number>;
  /** Calls sent and not yet acknowledged, in the order the worker takes them. */
  sent: Sent[];
  /** The call the deadline timer is for: the first of `sent` not withdrawn. */
  running: Sent | undefined;
  /** When `running` started (as far as the pool can tell: when the call before it was answered). */
  runningSince: number;
  /** When `running` is past its time limit (performance.now() time); for an `overdue` call, when its grace ends. */
  deadline: number;
  /**
   * The running call once it was answered FUNCTION_TIMEOUT at its deadline: its worker, whose
   * checks stop it, has until `deadline` to say it ended before it is terminated (deadlines.ts).
   */
  overdue: Sent | undefined;
  /**
   * The deadline timer, kept from call to call: setting and clearing a timer per call cost more
   * than a small call runs. It may fire before the current deadline (it was set for an earlier
   * one) and is then set again for the rest; unreferenced while nothing runs.
   */
  timer: NodeJS.Timeout | undefined;
  /** When `timer` fires. */
  timerAt: number;
  cells: Int32Array;
  cellsInUse: boolean[];
  /** The modules this worker is to preload (state 'preloading' while it does). */
  preload: SlotPreload | undefined;
  /** When this worker last acknowledged a call (performance.now() time; see the scheduler's pump). */
  lastAnswer: number;
  /**
   * The module of the last call it answered, and that call's time limit: after an answer the
   * worker readies that module's next instance, which may run its start function (BUSY_CELL);
   * while nothing runs, `deadline` is when that must be done by.
   */
  lastModule: LoadedModule | undefined;
  lastTimeoutMs: number;
}

/** One preload() over the workers. */
export interface PreloadRun {
  /** Workers (or their replacements) still preloading. */
  active: number;
  failures: PreloadFailure[];
  /** Modules set aside during this run: skipped by the workers that have not reached them. */
  failed: Set<LoadedModule>;
  done: (failures: PreloadFailure[]) => void;
}

export interface PreloadItem {
  loaded: LoadedModule;
  request: PreloadRequest;
}

/** A worker's share of a preload: one module at a time, each under its own deadline. */
export interface SlotPreload {
  run: PreloadRun;
  queue: PreloadItem[];
  /** Sent and not yet acknowledged. */
  current: PreloadItem | undefined;
  /** The message id of `current`. */
  id: number;
  timer: NodeJS.Timeout | undefined;
}
