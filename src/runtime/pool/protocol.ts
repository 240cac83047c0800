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
  /** Ready its instances only inside calls (see LazyMessage). */
  lazy?: true;
}

/**
 * The state of a call sent to a worker, in a cell of an Int32Array shared with it: the worker
 * changes PENDING to STARTED before it runs the call, the pool PENDING to WITHDRAWN to take it
 * back. Both use Atomics.compareExchange, so exactly one of them wins. The worker stores ENDED once
 * the call has ended, before it posts the answer: a pool whose timer fires while that answer waits
 * behind it in its own event loop can tell a worker that finished the call from one stuck in it.
 */
export const CellState = { PENDING: 0, STARTED: 1, WITHDRAWN: 2, ENDED: 3 } as const;

/** Cells per worker: more than the calls it can hold at once, withdrawn ones not yet acknowledged included. */
export const CELLS_PER_WORKER = 16;

/**
 * One more shared cell, after the call cells: the id of the module whose next instance the worker
 * is readying outside any call (after an answer, or in a preload: a start function may run then),
 * 0 otherwise. A worker past a deadline there is stuck in that module's code, and the pool says so.
 */
export const BUSY_CELL = CELLS_PER_WORKER;

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
  /**
   * The call's time limit. The worker arms its preemption clock with it from the moment it takes
   * the call (see worker.ts): only the worker knows that moment (the pool's own deadline runs from
   * when it sent the call to an idle worker or read the answer before it), and no clock is then
   * compared across threads.
   */
  timeoutMs: number;
  call: SandboxCall;
}

export interface EvictMessage {
  type: 'evict';
  moduleIds: number[];
}

/**
 * A module sent ahead of its first call (a restored function, before the engine says it listens):
 * the worker keeps it and readies an instance for its ABI, then answers 'preloaded' with `id`.
 * One module per message, so that the pool knows which one a worker that does not answer is in.
 */
export interface PreloadMessage {
  type: 'preload';
  id: number;
  moduleId: number;
  load: ModuleTransfer;
  abi: Abi;
}

/**
 * Modules whose instances are from now on made only inside their own calls, under the call's
 * deadline: readying one after an answer ran past a deadline (or the worker's heap) once.
 */
export interface LazyMessage {
  type: 'lazy';
  moduleIds: number[];
}

/**
 * A call of a module the worker already holds — nearly every call — as a flat array rather than
 * an InvokeMessage: structured clone writes every key of every object it copies, and the nested
 * message cost about twice as much to post as this (and again to read on the other side).
 */
export type CompactInvoke =
  | [id: number, cell: number, moduleId: number, timeoutMs: number, abi: 0, entrypoint: string, maxOutputBytes: number, values: (number | bigint)[]]
  | [id: number, cell: number, moduleId: number, timeoutMs: number, abi: 1, entrypoint: string, maxOutputBytes: number, json: string]
  | [
      id: number,
      cell: number,
      moduleId: number,
      timeoutMs: number,
      abi: 2,
      maxOutputBytes: number,
      argv: string[],
      env: Record<string, string> | null,
      stdin: Uint8Array | null,
    ];

/** The InvokeMessage of a call whose module the worker holds, in its compact form. */
export function compactInvoke(id: number, cell: number, moduleId: number, timeoutMs: number, call: SandboxCall): CompactInvoke {
  switch (call.abi) {
    case 'numeric':
      return [id, cell, moduleId, timeoutMs, 0, call.entrypoint, call.maxOutputBytes, call.values];
    case 'string':
      return [id, cell, moduleId, timeoutMs, 1, call.entrypoint, call.maxOutputBytes, call.json];
    case 'wasi':
      return [id, cell, moduleId, timeoutMs, 2, call.maxOutputBytes, call.argv, call.env ?? null, call.stdin ?? null];
  }
}

/** Back to the InvokeMessage it stands for (what compactInvoke was given). */
export function expandInvoke(m: CompactInvoke): InvokeMessage {
  let call: SandboxCall;
  if (m[4] === 0) call = { abi: 'numeric', entrypoint: m[5], values: m[7], maxOutputBytes: m[6] };
  else if (m[4] === 1) call = { abi: 'string', entrypoint: m[5], json: m[7], maxOutputBytes: m[6] };
  else {
    call = { abi: 'wasi', argv: m[6], maxOutputBytes: m[5] };
    if (m[7] !== null) call.env = m[7];
    if (m[8] !== null) call.stdin = m[8];
  }
  return { type: 'invoke', id: m[0], cell: m[1], moduleId: m[2], timeoutMs: m[3], call };
}

export type ToWorker = InvokeMessage | CompactInvoke | EvictMessage | PreloadMessage | LazyMessage;

/**
 * A successful call's answer, flat for the same reason as CompactInvoke. Every field of
 * InvocationResult is listed (compactDone/expandDone construct one, so a new required field
 * fails to compile here rather than being dropped).
 */
export type CompactDone = [id: number, output: string, stderr: string, durationMs: number];

export function compactDone(id: number, result: InvocationResult): CompactDone {
  return [id, result.output, result.stderr, result.durationMs];
}

export function expandDone(m: CompactDone): InvocationResult {
  return { output: m[1], stderr: m[2], durationMs: m[3] };
}

export type FromWorker =
  | CompactDone
  | { type: 'ready' }
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
  /** The worker's call cells (see CellState) and its BUSY_CELL, shared with the pool. */
  cells: Int32Array;
}
