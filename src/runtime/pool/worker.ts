/**
 * A sandbox worker thread: keeps the compiled modules it was sent and, per module and ABI, an
 * InstanceRunner that decides which instance each call runs in (a restored one, or a fresh one).
 * One invocation at a time, in the order sent; the pool may send the next before this one ends,
 * and may take it back until this thread marks it started in its shared cell. The answer is posted
 * before the runner readies the next instance (settle), so the caller never waits for a restore or
 * an instantiation.
 *
 * A call past its time limit stops itself: this thread's PreemptClock is armed with the limit from
 * the moment the call is taken (its instantiation included), the module's checks (preempt/) then
 * trap it, and the call is answered FUNCTION_TIMEOUT; its instance is discarded like any trapped
 * one's and the thread serves on. Readying the next instance after an answer is armed with the same
 * limit. The pool terminates this thread only when it has not heard the call end shortly after the
 * deadline (what the checks cannot reach: a blocking host call, a module left without checks).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { toEngineError } from '../../errors.js';
import { InstanceRunner } from '../instance-runner.js';
import { PreemptClock, timeLimitError } from '../preempt/clock.js';
import { warmUp } from './warm-up.js';
import type { Abi } from '../types.js';
import {
  BUSY_CELL,
  CELLS_PER_WORKER,
  CellState,
  compactDone,
  expandInvoke,
  type FromWorker,
  type InvokeMessage,
  type ModuleTransfer,
  type PreloadMessage,
  type ToWorker,
  type WorkerSettings,
} from './protocol.js';

const port = parentPort;
if (!port) throw new Error('the sandbox worker must run as a worker thread');

const DEFAULTS: WorkerSettings = {
  reuseInstances: true,
  instanceBytes: 64 * 1024 * 1024,
  idleInstanceMs: 60_000,
  cells: new Int32Array(new SharedArrayBuffer((CELLS_PER_WORKER + 1) * Int32Array.BYTES_PER_ELEMENT)),
};
const settings: WorkerSettings = { ...DEFAULTS, ...((workerData as Partial<WorkerSettings> | null) ?? {}) };

/** Answers the checks of every module on this thread; armed for one call (or one settle) at a time. */
const clock = new PreemptClock();
/** setTimeout's bound, as the pool caps its deadlines with (worker-slot.ts MAX_TIMER_MS): never later than the pool's. */
const MAX_DEADLINE_MS = 2 ** 31 - 1;

const modules = new Map<number, ModuleTransfer>();
/** Modules whose instances are made only inside their calls (see LazyMessage). */
const lazy = new Set<number>();
/** Runners by `moduleId abi`, least recently used first (a Map keeps insertion order). */
const runners = new Map<string, InstanceRunner>();

/** Calls since the budget was last checked; it is checked on a new runner and every TRIM_EVERY calls. */
let sinceTrim = 0;
const TRIM_EVERY = 32;

function runnerFor(moduleId: number, abi: Abi, transfer: ModuleTransfer): InstanceRunner {
  const key = `${moduleId} ${abi}`;
  let runner = runners.get(key);
  if (runner) {
    runners.delete(key);
  } else {
    sinceTrim = TRIM_EVERY;
    // The state goes along even when reuse is off: a module whose memory size was made virtual
    // must have its string-ABI growth go through that size either way.
    runner = new InstanceRunner(transfer.module, abi, transfer.state, settings.reuseInstances ? transfer.noReuse : 'instance reuse is off', clock);
  }
  runners.set(key, runner);
  return runner;
}

/** Drops the least recently used runners' instances until the idle ones fit the budget. */
function trim(current: InstanceRunner | undefined): void {
  let total = 0;
  for (const runner of runners.values()) total += runner.memoryBytes;
  for (const [key, runner] of runners) {
    if (total <= settings.instanceBytes) break;
    if (runner === current) continue;
    total -= runner.memoryBytes;
    runner.dispose();
    runners.delete(key);
  }
}

function dropModule(id: number): void {
  modules.delete(id);
  lazy.delete(id);
  for (const key of [...runners.keys()]) {
    if (key.startsWith(`${id} `)) {
      runners.get(key)?.dispose();
      runners.delete(key);
    }
  }
}

function invoke(msg: InvokeMessage): void {
  const transfer = msg.load ?? modules.get(msg.moduleId);
  if (msg.load && msg.keep !== false) modules.set(msg.moduleId, msg.load);
  if (msg.load?.lazy) lazy.add(msg.moduleId);
  if (Atomics.compareExchange(settings.cells, msg.cell, CellState.PENDING, CellState.STARTED) !== CellState.PENDING) {
    port!.postMessage({ type: 'skipped', id: msg.id } satisfies FromWorker);
    return;
  }
  if (!transfer) {
    Atomics.store(settings.cells, msg.cell, CellState.ENDED);
    port!.postMessage({ type: 'failed', id: msg.id, code: 'INTERNAL', message: `module ${msg.moduleId} was never sent to this worker` } satisfies FromWorker);
    return;
  }
  let runner: InstanceRunner | undefined;
  let reply: FromWorker;
  const limitMs = Math.min(msg.timeoutMs, MAX_DEADLINE_MS);
  const startedAt = performance.now();
  clock.arm(startedAt + limitMs);
  let endedAt: number;
  try {
    runner = runnerFor(msg.moduleId, msg.call.abi, transfer);
    const result = runner.run(msg.call);
    // The run measured itself: no second read of the clock on the common path.
    endedAt = startedAt + result.durationMs;
    reply = compactDone(msg.id, result);
  } catch (err) {
    endedAt = performance.now();
    // The guest trapped because the clock said stop: its own trap message would hide why.
    const e = clock.disarm() === 'deadline' ? timeLimitError(msg.timeoutMs) : toEngineError(err);
    reply = { type: 'failed', id: msg.id, code: e.code, message: e.message };
  }
  clock.disarm();
  Atomics.store(settings.cells, msg.cell, CellState.ENDED);
  port!.postMessage(reply);
  if (!runner) return;
  if (msg.keep === false) {
    dropModule(msg.moduleId);
    return;
  }
  // Guest code may run here (a start function), outside any call: under the call's time limit, and
  // the pool watches BUSY_CELL for what the checks cannot stop.
  const cells = settings.cells;
  Atomics.store(cells, BUSY_CELL, msg.moduleId);
  clock.arm(endedAt + limitMs);
  runner.settle(lazy.size === 0 || !lazy.has(msg.moduleId));
  // Stopped there: its start function is too slow to run between calls; from now on it runs inside
  // the module's calls, under their deadlines.
  if (clock.disarm() === 'deadline') lazy.add(msg.moduleId);
  Atomics.store(cells, BUSY_CELL, 0);
  // Summing every runner's memory per call would cost more than the calls of small functions.
  if (++sinceTrim >= TRIM_EVERY) {
    sinceTrim = 0;
    trim(runner);
  }
}

/**
 * Keeps a module sent ahead of its first call and readies an instance of it, while the idle
 * instances fit the budget (past it, the module is kept and its first call instantiates). The pool
 * gives each module a deadline: its start function runs here.
 */
function preload(msg: PreloadMessage): void {
  modules.set(msg.moduleId, msg.load);
  let total = 0;
  for (const runner of runners.values()) total += runner.memoryBytes;
  if (total < settings.instanceBytes) {
    const runner = runnerFor(msg.moduleId, msg.abi, msg.load);
    Atomics.store(settings.cells, BUSY_CELL, msg.moduleId);
    // settle() instantiates (it never throws: a failing instantiation fails again on the call).
    runner.settle();
    Atomics.store(settings.cells, BUSY_CELL, 0);
    sinceTrim = 0;
    if (total + runner.memoryBytes > settings.instanceBytes) trim(undefined);
  }
  port!.postMessage({ type: 'preloaded', id: msg.id } satisfies FromWorker);
}

port.on('message', (msg: ToWorker) => {
  if (Array.isArray(msg)) {
    invoke(expandInvoke(msg));
    return;
  }
  if (msg.type === 'invoke') {
    invoke(msg);
    return;
  }
  if (msg.type === 'evict') {
    for (const id of msg.moduleIds) dropModule(id);
    return;
  }
  if (msg.type === 'lazy') {
    for (const id of msg.moduleIds) if (modules.has(id)) lazy.add(id);
    return;
  }
  preload(msg);
});

// Idle functions should cost no guest memory: drop instances nobody called for a while.
const sweep = setInterval(
  () => {
    const before = performance.now() - settings.idleInstanceMs;
    for (const [key, runner] of runners) {
      if (runner.lastUsed < before) {
        runner.dispose();
        runners.delete(key);
      }
    }
  },
  Math.max(1_000, Math.min(settings.idleInstanceMs, 30_000)),
);
sweep.unref();

// Compile the call path before saying ready (see warm-up.ts); a failure only costs speed.
warmUp();
port.postMessage({ type: 'ready' } satisfies FromWorker);
