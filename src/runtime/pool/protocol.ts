/** Messages between the pool (main thread) and its sandbox workers. Kept small: this is the hot path. */
import type { ErrorCode } from '../../errors.js';
import type { SandboxCall } from '../abi/call.js';
import type { ExposedState } from '../reuse/expose.js';
import type { Abi, InvocationResult } from '../types.js';
import type { WasmModule } from '../wasm-api.js';

/** A compiled module as a worker receives it, once. */
export interface ModuleTransfer {
  /** Structured clone of a compiled module shares its code: the worker neither recompiles nor gets the bytes. */
  module: WasmModule;
  /** Where the module's state is exported, when its instances may be reused (reuse/expose.ts). */
  state?: ExposedState;
  /** Why they may not, otherwise. */
  noReuse?: string;
}

/**
 * The state of a call sent to a worker, in a cell of an Int32Array shared with it: the worker
 * changes PENDING to STARTED before it runs the call, the pool PENDING to WITHDRAWN to take it
 * back. Both use Atomics.compareExchange, so exactly one of them wins.
 */
export const CellState = { PENDING: 0, STARTED: 1, WITHDRAWN: 2 } as const;

/** Cells per worker: more than the calls it can hold at once, withdrawn ones not yet acknowledged included. */
export const CELLS_PER_WORKER = 16;

export interface InvokeMessage {
  type: 'invoke';
  id: number;
  /** The call's cell (see CellState). */
  cell: number;
  moduleId: number;
  /** Sent only the first time a worker needs this module. */
  load?: ModuleTransfer;
  /** False when the module was unloaded meanwhile: run it once without caching it. */
  keep?: boolean;
  call: SandboxCall;
}

export interface EvictMessage {
  type: 'evict';
  moduleIds: number[];
}

/**
 * Modules sent ahead of their first call (restored functions, before the engine says it listens):
 * the worker keeps each and readies an instance for its ABI, then answers 'preloaded' with `id`.
 */
export interface PreloadMessage {
  type: 'preload';
  id: number;
  modules: { moduleId: number; load: ModuleTransfer; abi: Abi }[];
}

export type ToWorker = InvokeMessage | EvictMessage | PreloadMessage;

export type FromWorker =
  | { type: 'ready' }
  | { type: 'done'; id: number; result: InvocationResult }
  | { type: 'failed'; id: number; code: ErrorCode; message: string }
  /** The call was withdrawn before the worker reached it. */
  | { type: 'skipped'; id: number }
  | { type: 'preloaded'; id: number };

/** What the pool tells a worker when it starts (worker_threads workerData). */
export interface WorkerSettings {
  /** Reuse instances (restore after each call) where that is exact; else a fresh instance per call. */
  reuseInstances: boolean;
  /** Guest memory the worker may keep in idle instances; least recently used modules' go first. */
  instanceBytes: number;
  /** An instance unused this long is dropped, so that idle functions cost no guest memory. */
  idleInstanceMs: number;
  /** The worker's call cells (see CellState), shared with the pool. */
  cells: Int32Array;
}
