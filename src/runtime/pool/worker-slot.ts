/**
 * The thread protocol: one sandbox worker as the pool sees it, and the calls sent to it.
 *
 * Each worker is given up to a few calls at once (the pipeline): one runs, the next waits inside
 * the worker, so that the worker starts it the moment the first ends instead of sleeping until
 * the HTTP thread, busy with other requests, sends it. A call waiting in a worker has not started:
 * a cell of an Int32Array shared with the worker (protocol.ts CellState) says whether the worker
 * has taken it, and the pool can withdraw it as long as it has not. Both sides change the cell
 * with Atomics.compareExchange, so "withdrawn" and "started" exclude each other and a call never
 * runs twice. The worker acknowledges every call it was sent, in order: its answer, or "skipped".
 */
import { Worker } from 'node:worker_threads';
import type { EngineError } from '../../errors.js';
import type { LoadedModule } from './module-cache.js';
import type { Call, Sent, Slot } from './pool-records.js';
import { BUSY_CELL, CELLS_PER_WORKER, CellState, compactInvoke, type FromWorker, type InvokeMessage, type ModuleTransfer, type ToWorker, type WorkerSettings } from './protocol.js';

/** setTimeout fires at once for delays past 2^31-1 ms (about 24.8 days), so longer ones are capped. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface SpawnOptions {
  url: URL;
  heapMb: number;
  settings: Omit<WorkerSettings, 'cells'>;
}

export interface SlotEvents {
  message: (slot: Slot, msg: FromWorker) => void;
  /** The worker ended without being told to; `outOfMemory` when its heap limit ended it. */
  death: (slot: Slot, reason: string, outOfMemory: boolean) => void;
}

/** Starts a worker (state 'starting' until it says ready); throws when the Worker cannot be made. */
export function spawnSlot(options: SpawnOptions, events: SlotEvents): Slot {
  const cells = new Int32Array(new SharedArrayBuffer((CELLS_PER_WORKER + 1) * Int32Array.BYTES_PER_ELEMENT));
  // No environment for the sandbox thread, and no inherited CLI flags (some are process-wide only
  // and would make the Worker constructor throw). A heap limit, so that exhausting it ends this
  // worker (an 'error' event) rather than the process.
  const worker = new Worker(options.url, {
    env: {},
    execArgv: [],
    resourceLimits: { maxOldGenerationSizeMb: options.heapMb },
    workerData: { ...options.settings, cells } satisfies WorkerSettings,
  });
  // Idle workers must not keep the process alive; a running call's timer does.
  worker.unref();
  const slot: Slot = {
    worker,
    state: 'starting',
    modules: new Set(),
    sent: [],
    running: undefined,
    runningSince: 0,
    deadline: 0,
    overdue: undefined,
    timer: undefined,
    timerAt: 0,
    cells,
    cellsInUse: new Array<boolean>(CELLS_PER_WORKER).fill(false),
    preload: undefined,
    lastAnswer: 0,
    lastModule: undefined,
    lastTimeoutMs: 0,
  };
  worker.on('message', (msg: FromWorker) => events.message(slot, msg));
  worker.on('error', (err: Error) => events.death(slot, err.message, (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'));
  worker.on('exit', (code: number) => events.death(slot, `exited with code ${code}`, false));
  return slot;
}

export function post(slot: Slot, msg: ToWorker): void {
  slot.worker.postMessage(msg);
}

/** Calls the worker will run (sent, not withdrawn). */
export function live(slot: Slot): number {
  let n = 0;
  for (const sent of slot.sent) if (!sent.withdrawn) n++;
  return n;
}

/** Calls held by the worker behind its running one. */
export function held(slot: Slot): number {
  let n = 0;
  for (const sent of slot.sent) if (!sent.withdrawn && sent !== slot.running) n++;
  return n;
}

/** Whether the worker has taken a call sent to it (it may be running it now). */
export function started(slot: Slot, sent: Sent): boolean {
  const state = Atomics.load(slot.cells, sent.cell);
  return state === CellState.STARTED || state === CellState.ENDED;
}

/** Whether the worker has ended a call it took (its answer may not have been read yet). */
export function ended(slot: Slot, sent: Sent): boolean {
  return Atomics.load(slot.cells, sent.cell) === CellState.ENDED;
}

/** The module whose next instance the worker is readying outside any call, 0 when none (BUSY_CELL). */
export function busyModule(slot: Slot): number {
  return Atomics.load(slot.cells, BUSY_CELL);
}

/**
 * Gives a call a cell of the worker and adds it to the worker's line; undefined when every cell
 * is held by withdrawn calls not yet acknowledged. post the call after with postCall.
 */
export function enlist(slot: Slot, call: Call): Sent | undefined {
  const cell = slot.cellsInUse.indexOf(false);
  if (cell < 0) return undefined;
  slot.cellsInUse[cell] = true;
  Atomics.store(slot.cells, cell, CellState.PENDING);
  const sent: Sent = { call, cell, withdrawn: false };
  call.sent = sent;
  slot.sent.push(sent);
  return sent;
}

/** Posts an enlisted call: as a flat array when the worker holds its module, else with the module. */
export function postCall(slot: Slot, sent: Sent, transfer: (loaded: LoadedModule) => ModuleTransfer): void {
  const { call, cell } = sent;
  if (slot.modules.has(call.loaded.id)) {
    post(slot, compactInvoke(call.id, cell, call.loaded.id, call.timeoutMs, call.sandbox));
    return;
  }
  const msg: InvokeMessage = { type: 'invoke', id: call.id, cell, moduleId: call.loaded.id, timeoutMs: call.timeoutMs, call: call.sandbox, load: transfer(call.loaded) };
  if (call.loaded.unloaded) msg.keep = false;
  else slot.modules.add(call.loaded.id);
  post(slot, msg);
}

/**
 * Takes a sent call back if its worker has not started it. True when taken back: the worker
 * will skip it (and acknowledge it as skipped).
 */
export function withdraw(slot: Slot, sent: Sent): boolean {
  if (sent.withdrawn) return true;
  if (Atomics.compareExchange(slot.cells, sent.cell, CellState.PENDING, CellState.WITHDRAWN) !== CellState.PENDING) return false;
  sent.withdrawn = true;
  sent.call.sent = undefined;
  return true;
}

/** The worker acknowledged call `id` (answered or skipped it): out of its line, its cell free. */
export function acknowledge(slot: Slot, id: number): Sent | undefined {
  // The worker acknowledges calls in the order it was sent them.
  const sentCalls = slot.sent;
  let at = 0;
  while (at < sentCalls.length && sentCalls[at]!.call.id !== id) at++;
  if (at === sentCalls.length) return undefined;
  const sent = sentCalls[at]!;
  sentCalls.splice(at, 1);
  slot.cellsInUse[sent.cell] = false;
  slot.lastAnswer = performance.now();
  return sent;
}

/** What a worker's failure message means for its call: the error, or null for a skipped call. */
export type Acknowledgement = EngineError | null | undefined;
