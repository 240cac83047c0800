/**
 * The runtime the engine uses: a fixed pool of worker threads. A call first runs on the HTTP thread
 * within a short budget when inline running is on (inline/inline-executor.ts), and comes here when
 * it does not finish there. A call past its deadline is preempted by terminating its worker (the only way to
 * stop a running WebAssembly loop), and a fresh worker takes its place while every other call
 * carries on. Invocations beyond the workers wait in a bounded queue; past the bound they are
 * refused at once with OVERLOADED.
 *
 * Each worker is given up to PIPELINE_DEPTH calls at once: one runs, the next waits inside the
 * worker, so that the worker starts it the moment the first ends instead of sleeping until the
 * HTTP thread, busy with other requests, sends it. Waking a sleeping thread costs tens of
 * microseconds here, more than a small function runs. A call waiting in a worker has not started:
 * a shared cell per call (Atomics, see CellState) says whether the worker has taken it, and the
 * pool can withdraw it as long as it has not: when its client goes away, when another worker is
 * idle while it waits behind a call running for more than STEAL_AFTER_MS (so a call never waits
 * long behind a slow one while a worker is free), or when its worker is terminated. The cell
 * makes "withdrawn" and "started" exclusive, so a call never runs twice.
 *
 * Fairness: calls are not preempted, so a worker taken by a call that runs for seconds is lost to
 * every other function for that long. A function is therefore "guarded" until one of its calls has
 * answered within SLOW_CALL_MS, and again whenever one of its calls is seen running that long or
 * times out, for as long as that call ran (at most SLOW_HOLD_MAX_MS) and until a call of it answers
 * fast: a function that just held a worker for seconds is kept to its share for as long, while a
 * fast one that a busy machine stalled once is back to normal soon after. Calls of guarded
 * functions run on idle workers only, never held in a pipeline, and together on at most all
 * workers but one (a worker being replaced counts as that one): the last is kept for the functions
 * known to be fast, whose calls are scheduled as before, so a fast function alone still has every
 * worker and its pipeline. Guarded calls that may not start yet wait in `parked`, and take an idle
 * worker in their turn (oldest call first, parked or queued). Nothing waits in a worker behind a
 * guarded call: the watch (a timer running while anything runs or waits) takes such calls back.
 * Exception: the first call of a function never seen (nor seen slow lately) may take an idle worker
 * past that share while no other call of it is in a worker, or a new function would wait for the
 * slow ones.
 *
 * No call waits longer than its time limit to start: the watch refuses with OVERLOADED any call
 * queued, parked or held in a worker past `startBy` (its arrival at the engine plus its time limit).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EngineError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import { toSandboxCall, type SandboxCall } from '../abi/call.js';
import type {
  AdmitRequest,
  AdmittedModule,
  CancelSignal,
  FunctionRuntime,
  InvocationRequest,
  InvocationResult,
  PreloadFailure,
  PreloadRequest,
  RuntimeStats,
} from '../types.js';
import { normalizeArgs } from '../args.js';
import { ModuleCache, type LoadedModule } from './module-cache.js';
import { DEFAULT_MAX_TABLE_ENTRIES, ModulePreparer } from './preparer.js';
import { WARM_UP_STRING } from './warm-up.js';
import {
  BUSY_CELL,
  CELLS_PER_WORKER,
  CellState,
  compactInvoke,
  expandDone,
  type FromWorker,
  type InvokeMessage,
  type ModuleTransfer,
  type ToWorker,
  type WorkerSettings,
} from './protocol.js';
import { defaultWorkerUrl } from './worker-url.js';
import { DEFAULT_INLINE_HEAVY_US, InlineExecutor } from '../inline/inline-executor.js';

export interface WorkerPoolOptions {
  /** Sandbox worker threads (default: os.availableParallelism()). */
  workers?: number;
  /** Each worker's V8 heap limit, in MiB (default DEFAULT_WORKER_HEAP_MB). */
  workerHeapMb?: number;
  /** Invocations that may wait for a worker; more are refused with OVERLOADED (default 1024). */
  maxQueue?: number;
  logger?: Logger;
  /** How long close() lets in-flight and queued invocations finish (default 10 s). */
  closeTimeoutMs?: number;
  /** The worker entry file (default: see worker-url.ts). */
  workerUrl?: URL;
  /** Bytes of module binaries kept compiled, least recently used evicted first (default: unbounded). */
  moduleCacheBytes?: number;
  /**
   * Gets the bytes of a module evicted from the compiled cache, to compile it again on its next
   * call (the engine reads its store). Without it an evicted module cannot be invoked again.
   */
  fetchModule?: (digest: string) => Promise<Uint8Array>;
  /** Restore and reuse instances where that is exact (default true); false: a fresh instance per call. */
  reuseInstances?: boolean;
  /** Guest memory each worker may keep in idle instances (default 64 MiB). */
  instanceBytesPerWorker?: number;
  /** An instance unused this long is dropped (default 60 s). */
  idleInstanceMs?: number;
  /** Calls a worker is given at once: one runs, the others wait in it (default 4; 1 turns this off). */
  pipelineDepth?: number;
  /** Entries a module's tables may hold in all (default DEFAULT_MAX_TABLE_ENTRIES): see preparer.ts. */
  maxTableEntries?: number;
  /** The preparation worker's entry file (default: see worker-url.ts). */
  prepareWorkerUrl?: URL;
  /** Run each call on this thread first, for up to this long (inline/inline-executor.ts); 0 (the default here) never. */
  inlineBudgetMs?: number;
  /** Inline calls of a module averaging longer than this go to the workers (default DEFAULT_INLINE_HEAVY_US; 0: no bound). */
  inlineHeavyUs?: number;
}

export const DEFAULT_MAX_QUEUE = 1024;
/**
 * A worker's V8 heap (old generation) limit. Guest memory is not on it (a WebAssembly memory is an
 * ArrayBuffer), but what the engine allocates for a guest is: table entries, output strings,
 * instances. Without a limit a worker has the process's own (several GiB), and reaching it ends
 * the whole process; with one, Node ends only the worker. 512 MiB is far above what a call within
 * the limits needs (output up to its cap, decoded; tables up to the cap), well below the process's.
 */
export const DEFAULT_WORKER_HEAP_MB = 512;
/**
 * Four rather than two: with two, a worker that finished its held call often slept before the HTTP
 * thread sent the next, and gcd under wrk at 32 connections went at about 21k req/s against about
 * 28k with four (2 cores; more than four gained nothing measurable).
 */
export const DEFAULT_PIPELINE_DEPTH = 4;
/**
 * An idle worker takes over a call waiting behind one that has run this long. Sooner would move
 * calls that were about to start anyway (a message and a thread wake-up each, for nothing).
 */
const STEAL_AFTER_MS = 2;
/**
 * A call that runs this long makes its function guarded (see the header). Well above the few
 * milliseconds a busy machine's scheduler can take from a thread, so that a fast function is seldom
 * taken for a slow one (it would then lose its pipeline and a worker for about as long as it stalled).
 */
const SLOW_CALL_MS = 50;
/** The longest a function stays guarded after one of its calls was seen slow (see the header). */
const SLOW_HOLD_MAX_MS = 10_000;
/** The watch's period while anything runs or waits. */
const WATCH_MS = 10;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;
/** Respawn delays after a worker fails to start: doubling from the first to the last. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;
/** setTimeout fires at once for delays past 2^31-1 ms (about 24.8 days), so longer ones are capped. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Call {
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
  /** Taken back once from a worker that had not started it by its deadline (see onTimeout). */
  moved: boolean;
}

/** A call as sent to one worker; kept until that worker acknowledges it (ran it, or skipped it). */
interface Sent {
  call: Call;
  cell: number;
  /** Taken back before the worker started it: the worker will skip it. */
  withdrawn: boolean;
}

/** 'preloading': up, and given modules to ready ahead of their calls, but no call (see preload). */
type SlotState = 'starting' | 'up' | 'preloading' | 'gone';

interface Slot {
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
  /** When `running` is past its time limit (performance.now() time). */
  deadline: number;
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
  /** When this worker last acknowledged a call (performance.now() time; see pump). */
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
interface PreloadRun {
  /** Workers (or their replacements) still preloading. */
  active: number;
  failures: PreloadFailure[];
  /** Modules set aside during this run: skipped by the workers that have not reached them. */
  failed: Set<LoadedModule>;
  done: (failures: PreloadFailure[]) => void;
}

interface PreloadItem {
  loaded: LoadedModule;
  request: PreloadRequest;
}

/** A worker's share of a preload: one module at a time, each under its own deadline. */
interface SlotPreload {
  run: PreloadRun;
  queue: PreloadItem[];
  /** Sent and not yet acknowledged. */
  current: PreloadItem | undefined;
  /** The message id of `current`. */
  id: number;
  timer: NodeJS.Timeout | undefined;
}

export class WorkerPoolRuntime implements FunctionRuntime {
  private readonly size: number;
  private readonly maxQueue: number;
  private readonly depth: number;
  private readonly logger: Logger;
  private readonly closeTimeoutMs: number;
  private readonly workerUrl: URL;
  private readonly workerSettings: Omit<WorkerSettings, 'cells'>;
  private readonly cache: ModuleCache;
  private readonly preparer: ModulePreparer;
  private readonly slots = new Set<Slot>();
  private readonly queue: Call[] = [];
  /** Calls of guarded functions waiting for an idle worker their share allows (see the header). */
  private readonly parked: Call[] = [];
  /** A parked call could start now if a worker were idle: no worker is given calls to hold meanwhile. */
  private parkedReady = false;
  /** See watch(); undefined while nothing runs or waits. */
  private watchTimer: NodeJS.Timeout | undefined;
  /** When watchTimer was due (performance.now() time). */
  private watchDue = 0;
  /** Since when no worker has been up, while calls wait (see watch). */
  private downSince: number | undefined;
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private nextCallId = 1;
  private startFailures = 0;
  /** Why the last worker failed to start, while no worker has started since. */
  private startError: string | undefined;
  private closing: Promise<void> | undefined;
  /** Set once close() has drained (or given up): from then on no worker is started. */
  private stopped = false;
  /** Called whenever a call settles, for close() to notice the pool draining. */
  private onSettled: (() => void) | undefined;
  /** A later look for calls to take over (see rebalance). */
  private rebalanceTimer: NodeJS.Timeout | undefined;
  /** Workers of the first generation that have not yet said ready or failed. */
  private firstPending: number;
  private firstStarted: (() => void)[] = [];
  private nextPreloadId = 1;
  private readonly moduleCacheBytes: number | undefined;
  private readonly workerHeapMb: number;
  /** Digests whose preload ran past its deadline or killed its worker, and why (see preload); until unloaded. */
  private readonly setAside = new Map<string, string>();
  /** Modules whose instances workers make only inside calls (see blame). */
  private readonly lazy = new WeakSet<LoadedModule>();
  /** Runs calls on this thread first, within a budget; undefined when that is off. */
  private readonly inline: InlineExecutor | undefined;

  constructor(options: WorkerPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.workers ?? availableParallelism()));
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? DEFAULT_MAX_QUEUE));
    this.depth = Math.max(1, Math.min(CELLS_PER_WORKER / 2, Math.floor(options.pipelineDepth ?? DEFAULT_PIPELINE_DEPTH)));
    this.logger = options.logger ?? silentLogger;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.workerUrl = options.workerUrl ?? defaultWorkerUrl();
    this.workerSettings = {
      reuseInstances: options.reuseInstances ?? true,
      instanceBytes: options.instanceBytesPerWorker ?? 64 * 1024 * 1024,
      idleInstanceMs: options.idleInstanceMs ?? 60_000,
    };
    this.preparer = new ModulePreparer({
      maxTableEntries: options.maxTableEntries ?? DEFAULT_MAX_TABLE_ENTRIES,
      ...(options.prepareWorkerUrl ? { workerUrl: options.prepareWorkerUrl } : {}),
    });
    this.cache = new ModuleCache({
      preparer: this.preparer,
      ...(options.moduleCacheBytes === undefined ? {} : { maxBytes: options.moduleCacheBytes }),
      ...(options.fetchModule ? { fetch: options.fetchModule } : {}),
      onEvict: (evicted) => {
        this.logger.debug({ modules: evicted.map((m) => m.digest) }, 'compiled modules evicted from the cache');
        this.evictFromWorkers(new Set(evicted.map((m) => m.id)));
      },
    });
    this.moduleCacheBytes = options.moduleCacheBytes;
    this.workerHeapMb = options.workerHeapMb ?? DEFAULT_WORKER_HEAP_MB;
    const inlineBudgetMs = options.inlineBudgetMs ?? 0;
    const heavyMs = (options.inlineHeavyUs ?? DEFAULT_INLINE_HEAVY_US) / 1000;
    this.inline = inlineBudgetMs > 0 ? new InlineExecutor({ budgetMs: inlineBudgetMs, reuseInstances: this.workerSettings.reuseInstances, heavyMs }) : undefined;
    this.firstPending = this.size;
    for (let i = 0; i < this.size; i++) this.spawn();
  }

  /**
   * Resolves once every first worker has started (or failed to: this never hangs). A worker takes
   * tens of milliseconds to start; an engine that waits for this before it listens does not make
   * its first invocation wait for it.
   */
  ready(): Promise<void> {
    if (this.firstPending <= 0) return Promise.resolve();
    return new Promise((resolve) => this.firstStarted.push(resolve));
  }

  private firstDone(): void {
    if (this.firstPending <= 0) return;
    this.firstPending--;
    if (this.firstPending === 0) for (const resolve of this.firstStarted.splice(0)) resolve();
  }

  async load(digest: string, bytes: Uint8Array, memoryLimitMb: number, owned = false): Promise<void> {
    await this.cache.load(digest, bytes, memoryLimitMb, owned);
  }

  /** Analyses, compiles and tries a deploy's module off this thread, and loads it (module-cache.ts admit). */
  admit(bytes: Uint8Array, request: AdmitRequest): Promise<AdmittedModule> {
    const { memoryLimitMb, timeoutMs, ...analyze } = request;
    return this.cache.admit(bytes, memoryLimitMb, analyze, timeoutMs);
  }

  /**
   * Runs a tiny built-in string-ABI module once on every worker through the whole pool path
   * (queue, messages, answers), so that this thread's side of a call is compiled before the first
   * real invocation. The module is loaded under a digest no function can have and unloaded after;
   * skipped when it would push the compiled cache past its bound. Never throws.
   */
  async warmUp(): Promise<void> {
    const bytes = new Uint8Array(Buffer.from(WARM_UP_STRING, 'base64'));
    if (this.moduleCacheBytes !== undefined && this.cache.bytes + 4 * bytes.byteLength > this.moduleCacheBytes) return;
    const digest = 'wasm-engine:warm-up';
    try {
      const loaded = await this.cache.load(digest, bytes, 1);
      // Known fast: its calls spread over every worker at once, as the warm-up means them to.
      loaded.guarded = false;
      loaded.notInline = 'the pool warm-up is for the workers';
      loaded.proven = true;
      const req: InvocationRequest = {
        digest,
        analysis: { abi: 'string', entrypoint: 'f', exports: [], wasiCap: false },
        args: normalizeArgs({ k: 'v' }),
        limits: { timeoutMs: 1_000, memoryLimitMb: 1, maxOutputBytes: 1024 },
      };
      await Promise.allSettled(Array.from({ length: this.countState('up') }, () => this.invoke(req)));
    } catch {
      // Only speed is at stake.
    } finally {
      this.unload(digest);
    }
  }

  /**
   * Sends compiled modules to every worker, ahead of their first call, and has each ready an
   * instance for the module's ABI, one module at a time; resolves once they have (or have gone).
   * A worker gets no call while it preloads. Modules not in the compiled cache now (never loaded,
   * evicted) are skipped: this never compiles or fetches.
   *
   * Readying an instance runs the module's start function, so each module has a deadline there,
   * its time limit. A worker past it, or one that dies in it (its heap exhausted, say), is replaced,
   * and the replacement goes on with the modules after it; the module is set aside: reported in
   * the result, and its invocations answer FUNCTION_FAILED until it is loaded again.
   */
  preload(modules: PreloadRequest[]): Promise<PreloadFailure[]> {
    if (this.closing || modules.length === 0) return Promise.resolve([]);
    const items = new Map<LoadedModule, PreloadItem>();
    for (const request of modules) {
      const loaded = this.cache.peek(request.digest, request.memoryLimitMb);
      if (!loaded || loaded.unloaded) continue;
      const seen = items.get(loaded);
      // Functions sharing a module: the most patient one's time limit.
      if (!seen || seen.request.timeoutMs < request.timeoutMs) items.set(loaded, { loaded, request });
    }
    if (items.size === 0) return Promise.resolve([]);
    return new Promise<PreloadFailure[]>((resolve) => {
      const run: PreloadRun = { active: 0, failures: [], failed: new Set(), done: resolve };
      for (const slot of this.slots) {
        if ((slot.state !== 'up' && slot.state !== 'starting') || slot.preload) continue;
        const queue = [...items.values()].filter((item) => !slot.modules.has(item.loaded.id));
        if (queue.length === 0) continue;
        run.active++;
        slot.preload = { run, queue, current: undefined, id: 0, timer: undefined };
        if (slot.state === 'up') this.preloadNext(slot);
      }
      if (run.active === 0) resolve([]);
    });
  }

  /** Sends a worker its next module to preload, or ends its preload. */
  private preloadNext(slot: Slot): void {
    const preload = slot.preload;
    if (!preload) return;
    let item: PreloadItem | undefined;
    while ((item = preload.queue.shift()) !== undefined) {
      if (!item.loaded.unloaded && !preload.run.failed.has(item.loaded) && !slot.modules.has(item.loaded.id)) break;
    }
    if (item === undefined) {
      slot.preload = undefined;
      slot.state = 'up';
      this.preloadEnded(preload.run);
      this.pump();
      return;
    }
    slot.state = 'preloading';
    slot.modules.add(item.loaded.id);
    preload.current = item;
    preload.id = this.nextPreloadId++;
    preload.timer = setTimeout(this.onPreloadDeadline, Math.min(item.request.timeoutMs, MAX_TIMER_MS), slot, preload.id);
    const { loaded, request } = item;
    this.post(slot, { type: 'preload', id: preload.id, moduleId: loaded.id, load: this.transferOf(loaded), abi: request.abi });
  }

  private readonly onPreloadDeadline = (slot: Slot, id: number): void => {
    const current = slot.preload?.current;
    if (slot.state === 'gone' || slot.preload?.id !== id || !current) return;
    this.preloadFailed(slot, `readying its first instance (its start function) ran past its time limit of ${current.request.timeoutMs} ms`);
  };

  /**
   * The worker did not get through the module it was preloading: the module is set aside, the
   * worker replaced, and so is every other worker stuck in the same module; each replacement
   * preloads what its worker had left.
   */
  private preloadFailed(slot: Slot, reason: string): void {
    const preload = slot.preload as SlotPreload;
    const item = preload.current as PreloadItem;
    const { run } = preload;
    if (!run.failed.has(item.loaded)) {
      run.failed.add(item.loaded);
      const { digest, memoryLimitMb } = item.request;
      run.failures.push({ digest, memoryLimitMb, reason });
      this.setAside.set(digest, reason);
      this.logger.error({ digest, reason }, 'a restored module was set aside: its sandbox worker is replaced');
    }
    for (const other of [...this.slots]) {
      if (other.preload?.run === run && other.preload.current?.loaded === item.loaded) this.replacePreloading(other);
    }
    if (slot.state !== 'gone') this.replacePreloading(slot);
  }

  /** Stops a preloading worker; a new one takes over the modules it had not reached. */
  private replacePreloading(slot: Slot): void {
    const preload = slot.preload as SlotPreload;
    clearTimeout(preload.timer);
    slot.preload = undefined;
    const requeue = this.takeBack(slot, undefined);
    const next = this.replace(slot);
    if (next) next.preload = { run: preload.run, queue: preload.queue, current: undefined, id: 0, timer: undefined };
    else this.preloadEnded(preload.run);
    this.requeue(requeue);
  }

  private preloadEnded(run: PreloadRun): void {
    if (--run.active === 0) run.done(run.failures);
  }

  unload(digest: string): void {
    this.setAside.delete(digest);
    this.evictFromWorkers(new Set(this.cache.unload(digest).map((m) => m.id)));
  }

  /** Calls waiting for a worker: in the pool's queue, or held by a worker behind its running call. */
  private queuedCount(): number {
    let n = this.queue.length + this.parked.length;
    for (const slot of this.slots) for (const sent of slot.sent) if (!sent.withdrawn && sent !== slot.running) n++;
    return n;
  }

  stats(): RuntimeStats {
    let busy = 0;
    let waitingInWorkers = 0;
    for (const slot of this.slots) {
      if (slot.running) busy++;
      for (const sent of slot.sent) if (!sent.withdrawn && sent !== slot.running) waitingInWorkers++;
    }
    return {
      workers: this.slots.size,
      busy,
      queued: this.queue.length + this.parked.length + waitingInWorkers,
      loadedModules: this.cache.size,
      loadedModuleBytes: this.cache.bytes,
      evictedModules: this.cache.evictedCount,
      ...(this.inline ? { inlineRan: this.inline.stats.ran, inlineAbandoned: this.inline.stats.abandoned } : {}),
    };
  }

  invoke(req: InvocationRequest, signal?: CancelSignal): Promise<InvocationResult> {
    if (this.closing) return Promise.reject(shuttingDown());
    if (signal?.aborted) return Promise.reject(cancelled());
    const loaded = this.cache.get(req.digest, req.limits.memoryLimitMb);
    if (loaded === undefined) {
      return Promise.reject(new EngineError('INTERNAL', `module ${req.digest} is not loaded in the runtime`));
    }
    if (loaded instanceof Promise) return loaded.then(() => this.invoke(req, signal));
    if (this.setAside.size !== 0) {
      const reason = this.setAside.get(req.digest);
      if (reason !== undefined) {
        return Promise.reject(new EngineError('FUNCTION_FAILED', `the function was set aside when the engine started: ${reason}`));
      }
    }
    let sandbox: SandboxCall;
    try {
      // Numeric arguments are parsed here: a bad one is refused without a trip to a worker.
      sandbox = toSandboxCall(req);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.inline !== undefined) {
      const ran = this.inline.invoke(loaded, sandbox, req.limits.timeoutMs);
      if (ran !== undefined) return ran;
    }
    return this.enqueue(req, sandbox, loaded, signal);
  }

  async close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private enqueue(req: InvocationRequest, sandbox: SandboxCall, loaded: LoadedModule, signal: CancelSignal | undefined): Promise<InvocationResult> {
    if (this.startError !== undefined && !this.anyWorkerUp()) {
      return Promise.reject(new EngineError('INTERNAL', `no sandbox worker could start: ${this.startError}`));
    }
    // Workers still starting will each take a call soon: those calls are not "queued beyond a bound".
    // Counted only when no worker is idle (the common case under load is a full pipeline, but an
    // idle worker answers the question at once and without allocating).
    let queued: number;
    if (!this.anyIdle() && (queued = this.queuedCount()) >= this.maxQueue + this.countState('starting')) {
      return Promise.reject(
        new EngineError('OVERLOADED', `too many invocations: all ${this.size} sandboxes are busy and ${queued} calls are queued`, {
          retryAfterSeconds: 1,
        }),
      );
    }
    return new Promise<InvocationResult>((resolve, reject) => {
      const call: Call = {
        id: this.nextCallId++,
        loaded,
        sandbox,
        timeoutMs: req.limits.timeoutMs,
        startBy: (req.arrivedAt ?? performance.now()) + Math.min(req.limits.timeoutMs, MAX_TIMER_MS),
        resolve,
        reject,
        signal,
        onAbort: undefined,
        sent: undefined,
        settled: false,
        moved: false,
      };
      if (signal) {
        call.onAbort = () => this.abort(call);
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      this.queue.push(call);
      if (this.watchTimer === undefined) this.armWatch();
      this.pump();
    });
  }

  /** The client went away: a call that has not started is dropped; a running one finishes or times out. */
  private abort(call: Call): void {
    if (call.settled) return;
    if (call.sent === undefined) {
      const at = this.queue.indexOf(call);
      if (at >= 0) this.queue.splice(at, 1);
      else {
        const parkedAt = this.parked.indexOf(call);
        if (parkedAt >= 0) this.parked.splice(parkedAt, 1);
      }
      this.settle(call, cancelled());
      return;
    }
    const slot = this.slotOf(call.sent);
    if (slot && call.sent !== slot.running && this.withdraw(slot, call.sent)) this.settle(call, cancelled());
  }

  private async shutDown(): Promise<void> {
    // Let queued and running calls finish, within the bound.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.queue.length === 0 && this.parked.length === 0 && this.stats().busy === 0) done();
      };
      const timer = setTimeout(() => done(), this.closeTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.onSettled = undefined;
        resolve();
      };
      this.onSettled = check;
      check();
    });
    this.stopped = true;
    clearTimeout(this.rebalanceTimer);
    clearTimeout(this.watchTimer);
    for (const resolve of this.firstStarted.splice(0)) resolve();
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    for (const call of this.queue.splice(0)) this.settle(call, shuttingDown());
    for (const call of this.parked.splice(0)) this.settle(call, shuttingDown());
    const stopping: Promise<number>[] = [];
    for (const slot of [...this.slots]) {
      const sent = this.retire(slot);
      for (const { call } of sent) this.settle(call, new EngineError('FUNCTION_FAILED', 'the engine shut down before the function finished'));
      stopping.push(slot.worker.terminate());
    }
    stopping.push(this.preparer.close().then(() => 0));
    await Promise.allSettled(stopping);
    this.logger.debug({}, 'sandbox workers stopped');
  }

  private evictFromWorkers(ids: Set<number>): void {
    if (ids.size === 0) return;
    for (const slot of this.slots) {
      const held = [...slot.modules].filter((id) => ids.has(id));
      if (held.length === 0) continue;
      for (const id of held) slot.modules.delete(id);
      this.post(slot, { type: 'evict', moduleIds: held });
    }
  }

  private anyWorkerUp(): boolean {
    for (const slot of this.slots) if (slot.state === 'up' || slot.state === 'preloading') return true;
    return false;
  }

  private anyIdle(): boolean {
    for (const slot of this.slots) if (slot.state === 'up' && this.live(slot) === 0) return true;
    return false;
  }

  private countState(state: SlotState): number {
    let n = 0;
    for (const slot of this.slots) if (slot.state === state) n++;
    return n;
  }

  /** Calls the worker will run (sent, not withdrawn). */
  private live(slot: Slot): number {
    let n = 0;
    for (const sent of slot.sent) if (!sent.withdrawn) n++;
    return n;
  }

  private slotOf(sent: Sent): Slot | undefined {
    for (const slot of this.slots) if (slot.sent.includes(sent)) return slot;
    return undefined;
  }

  private spawn(): Slot | undefined {
    const cells = new Int32Array(new SharedArrayBuffer((CELLS_PER_WORKER + 1) * Int32Array.BYTES_PER_ELEMENT));
    let worker: Worker;
    try {
      // No environment for the sandbox thread, and no inherited CLI flags (some are process-wide
      // only and would make the Worker constructor throw). A heap limit, so that exhausting it ends
      // this worker (an 'error' event, see onDeath) rather than the process.
      worker = new Worker(this.workerUrl, {
        env: {},
        execArgv: [],
        resourceLimits: { maxOldGenerationSizeMb: this.workerHeapMb },
        workerData: { ...this.workerSettings, cells } satisfies WorkerSettings,
      });
    } catch (err) {
      this.startFailed(err instanceof Error ? err.message : String(err));
      return undefined;
    }
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
      timer: undefined,
      timerAt: 0,
      cells,
      cellsInUse: new Array<boolean>(CELLS_PER_WORKER).fill(false),
      preload: undefined,
      lastAnswer: 0,
      lastModule: undefined,
      lastTimeoutMs: 0,
    };
    this.slots.add(slot);
    worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg));
    worker.on('error', (err: Error) => this.onDeath(slot, err.message, (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'));
    worker.on('exit', (code: number) => this.onDeath(slot, `exited with code ${code}`));
    return slot;
  }

  private post(slot: Slot, msg: ToWorker): void {
    slot.worker.postMessage(msg);
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    if (slot.state === 'gone') return;
    if (Array.isArray(msg)) {
      this.answered(slot, msg[0], undefined, expandDone(msg));
      return;
    }
    if (msg.type === 'ready') {
      this.firstDone();
      slot.state = 'up';
      this.startFailures = 0;
      this.startError = undefined;
      if (slot.preload) this.preloadNext(slot);
      else this.pump();
      return;
    }
    if (msg.type === 'preloaded') {
      const preload = slot.preload;
      if (preload?.id !== msg.id) return;
      clearTimeout(preload.timer);
      preload.current = undefined;
      this.preloadNext(slot);
      return;
    }
    if (msg.type === 'failed') this.answered(slot, msg.id, new EngineError(msg.code, msg.message));
    // 'skipped' for a call not withdrawn cannot happen (only the pool withdraws): no answer to give.
    else this.answered(slot, msg.id, null);
  }

  /** A call's acknowledgement: its result, its error, or null when the worker skipped it. */
  private answered(slot: Slot, id: number, err: EngineError | null | undefined, result?: InvocationResult): void {
    // The worker acknowledges calls in the order it was sent them.
    const sentCalls = slot.sent;
    let at = 0;
    while (at < sentCalls.length && sentCalls[at]!.call.id !== id) at++;
    if (at === sentCalls.length) return;
    const sent = sentCalls[at]!;
    sentCalls.splice(at, 1);
    slot.cellsInUse[sent.cell] = false;
    slot.lastAnswer = performance.now();
    if (sent === slot.running) {
      // The worker's own measure of the call: this thread may have read the answer late.
      if (result !== undefined) {
        if (result.durationMs >= SLOW_CALL_MS) markSlow(sent.call.loaded, slot.lastAnswer, result.durationMs);
        else if (sent.call.loaded.guarded) trust(sent.call.loaded, slot.lastAnswer);
      }
      this.startNext(slot);
    }
    if (!sent.withdrawn && err !== null) this.settle(sent.call, err, result);
    this.pump();
  }

  /** The worker has moved on to its next call: that one's deadline runs from now. */
  private startNext(slot: Slot): void {
    const answered = slot.running;
    if (answered !== undefined) {
      slot.lastModule = answered.call.loaded;
      slot.lastTimeoutMs = answered.call.timeoutMs;
    }
    slot.running = slot.sent.find((s) => !s.withdrawn);
    const running = slot.running;
    const now = performance.now();
    if (!running) {
      // The worker readies its last module's next instance now (see BUSY_CELL), by that call's
      // time limit. A timer set for a later deadline is kept (a backstop may be late; re-arming
      // per answer would cost more than small calls run). Idle workers must not keep the process
      // alive: the timer is unreferenced.
      slot.deadline = now + Math.min(slot.lastTimeoutMs, MAX_TIMER_MS);
      if (slot.timer === undefined) this.armDeadline(slot, now);
      slot.timer?.unref();
      return;
    }
    slot.runningSince = now;
    const { call } = running;
    // A running call is past cancelling: it finishes or times out.
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    slot.deadline = now + Math.min(call.timeoutMs, MAX_TIMER_MS);
    if (slot.timer === undefined || slot.timerAt > slot.deadline) this.armDeadline(slot, now);
    else slot.timer.ref();
  }

  private armDeadline(slot: Slot, now: number): void {
    clearTimeout(slot.timer);
    const delay = Math.max(1, Math.ceil(slot.deadline - now));
    slot.timerAt = now + delay;
    slot.timer = setTimeout(this.onDeadline, delay, slot);
  }

  private readonly onDeadline = (slot: Slot): void => {
    slot.timer = undefined;
    // A worker given modules to preload still runs the calls it was sent before them.
    if (slot.state === 'gone') return;
    if (!slot.running) {
      this.idleDeadline(slot);
      return;
    }
    const now = performance.now();
    // Set for an earlier call's deadline: wait for the rest of this one's. (Within a millisecond
    // is due: timers have millisecond precision, as the timer per call had.)
    if (slot.deadline - now > 1) {
      this.armDeadline(slot, now);
      return;
    }
    this.onTimeout(slot);
  };

  /**
   * Takes a sent call back if its worker has not started it. True when taken back: the worker
   * will skip it (and acknowledge it as skipped).
   */
  private withdraw(slot: Slot, sent: Sent): boolean {
    if (sent.withdrawn) return true;
    if (Atomics.compareExchange(slot.cells, sent.cell, CellState.PENDING, CellState.WITHDRAWN) !== CellState.PENDING) return false;
    sent.withdrawn = true;
    sent.call.sent = undefined;
    return true;
  }

  /** A worker died without being told to: its call fails, and a new worker replaces it. */
  private onDeath(slot: Slot, reason: string, outOfMemory = false): void {
    if (slot.state === 'gone') return;
    if (slot.preload?.current) {
      this.preloadFailed(slot, outOfMemory ? `readying its first instance exhausted the sandbox's heap (${this.workerHeapMb} MiB)` : `its sandbox crashed while readying its first instance (${reason})`);
      return;
    }
    const { state } = slot;
    let running = slot.running;
    const busy = Atomics.load(slot.cells, BUSY_CELL);
    // A call the worker had not started (it died readying an instance after an answer) runs
    // elsewhere, once: a call that kills workers before it starts must not go round them all.
    const requeue: Call[] = [];
    if (running && !running.call.moved && this.withdraw(slot, running)) {
      this.moved(running.call);
      requeue.push(running.call);
      running = undefined;
    }
    requeue.push(...this.takeBack(slot, running));
    this.retire(slot);
    if (state === 'starting') {
      this.startFailed(reason);
      return;
    }
    this.logger.warn({ reason, busy: running !== undefined }, 'sandbox worker crashed; replacing it');
    if (running === undefined) this.blame(slot, busy, outOfMemory ? 'exhausted the sandbox heap' : 'crashed the sandbox');
    if (running) {
      const message = outOfMemory
        ? `the sandbox ran out of memory while running the function (its heap limit is ${this.workerHeapMb} MiB; table entries count against it)`
        : 'the sandbox crashed while running the function';
      this.settle(running.call, new EngineError('FUNCTION_FAILED', message));
    }
    if (!this.stopped) this.spawn();
    this.requeue(requeue);
  }

  /** A worker failed before it was ready: retried with a doubling delay, never in a tight loop. */
  private startFailed(reason: string): void {
    this.firstDone();
    this.startFailures++;
    this.startError = reason;
    const delay = Math.min(RESPAWN_FIRST_MS * 2 ** (this.startFailures - 1), RESPAWN_MAX_MS);
    this.logger.error({ reason, failures: this.startFailures, retryInMs: delay }, 'sandbox worker failed to start');
    if (!this.anyWorkerUp()) {
      for (const call of [...this.queue.splice(0), ...this.parked.splice(0)]) {
        this.settle(call, new EngineError('INTERNAL', `no sandbox worker could start: ${reason}`));
      }
    }
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (!this.stopped) this.spawn();
    }, delay);
    timer.unref();
    this.respawnTimers.add(timer);
  }

  private onTimeout(slot: Slot): void {
    const running = slot.running;
    if (!running || slot.state === 'gone') return;
    if (!running.call.moved && this.withdraw(slot, running)) {
      // Not started by its deadline: the worker is stuck outside any call (readying an instance
      // after an answer, see BUSY_CELL). It is replaced, and the call runs on another, once.
      this.moved(running.call);
      const busy = Atomics.load(slot.cells, BUSY_CELL);
      const requeue = [running.call, ...this.takeBack(slot, undefined)];
      this.replace(slot);
      this.logger.warn({ timeoutMs: running.call.timeoutMs }, 'a sandbox worker did not start a call by its deadline; it was terminated and the call moved');
      this.blame(slot, busy, 'ran past its time limit');
      this.requeue(requeue);
      return;
    }
    // Withdraw the calls waiting behind it first, so that none can start while the worker stops.
    const requeue = this.takeBack(slot, running);
    this.replace(slot);
    const { call } = running;
    this.logger.warn({ timeoutMs: call.timeoutMs }, 'invocation timed out; its sandbox worker was terminated');
    this.settle(call, new EngineError('FUNCTION_TIMEOUT', `the function ran past its time limit of ${call.timeoutMs} ms`));
    this.requeue(requeue);
  }

  /** A call taken back from a worker that never started it: it waits again, and may be cancelled again. */
  private moved(call: Call): void {
    call.moved = true;
    // It was given a worker in time, which never started it: its time to start begins again.
    call.startBy = performance.now() + Math.min(call.timeoutMs, MAX_TIMER_MS);
    if (call.signal && call.onAbort) call.signal.addEventListener('abort', call.onAbort, { once: true });
  }

  /**
   * Nothing runs on the worker: has it got through readying its last module's next instance by
   * that call's deadline? When not, it is stuck in that module's start function: replaced.
   */
  private idleDeadline(slot: Slot): void {
    const busy = Atomics.load(slot.cells, BUSY_CELL);
    if (busy === 0 || slot.preload || busy !== slot.lastModule?.id) return;
    const now = performance.now();
    if (slot.deadline - now > 1) {
      this.armDeadline(slot, now);
      slot.timer?.unref();
      return;
    }
    const requeue = this.takeBack(slot, undefined);
    this.replace(slot);
    this.blame(slot, busy, 'ran past its time limit');
    this.requeue(requeue);
  }

  /** Takes a worker out of service and stops it; returns the new worker in its place (none once the pool has stopped). */
  private replace(slot: Slot): Slot | undefined {
    this.retire(slot);
    void slot.worker.terminate();
    return this.stopped ? undefined : this.spawn();
  }

  /**
   * A worker was stopped while it readied an instance of module `busy` outside any call (its
   * start function looped, or exhausted the heap): that module's instances are from now on made
   * only inside its own calls, under their deadlines, in every worker.
   */
  private blame(slot: Slot, busy: number, what: string): void {
    const loaded = slot.lastModule;
    if (busy === 0 || loaded === undefined || loaded.id !== busy || this.lazy.has(loaded)) return;
    this.lazy.add(loaded);
    this.logger.warn({ digest: loaded.digest, timeoutMs: slot.lastTimeoutMs }, `readying an instance of a module after a call ${what}: its instances are now made inside its calls`);
    for (const other of this.slots) if (other.modules.has(loaded.id)) this.post(other, { type: 'lazy', moduleIds: [loaded.id] });
  }

  /**
   * Before a worker is stopped: withdraws every call sent to it but `running`. Returns those that
   * had not started (to run elsewhere); any that had (it began as the deadline fell) is failed.
   */
  private takeBack(slot: Slot, running: Sent | undefined): Call[] {
    const back: Call[] = [];
    for (const sent of slot.sent) {
      if (sent === running || sent.withdrawn) continue;
      if (this.withdraw(slot, sent)) back.push(sent.call);
      else this.settle(sent.call, new EngineError('FUNCTION_FAILED', 'the sandbox was stopped while running the function'));
    }
    return back;
  }

  /** Puts calls that never started back at the head of the queue, in their order. */
  private requeue(calls: Call[]): void {
    const waiting = calls.filter((call) => !call.settled);
    if (waiting.length === 0) return;
    this.queue.unshift(...waiting);
    if (this.watchTimer === undefined) this.armWatch();
    this.pump();
  }

  /** Takes a slot out of service (its 'exit' event is then ignored); returns the calls it had. */
  private retire(slot: Slot): Sent[] {
    clearTimeout(slot.timer);
    slot.state = 'gone';
    slot.timer = undefined;
    slot.running = undefined;
    this.slots.delete(slot);
    if (slot.preload) {
      clearTimeout(slot.preload.timer);
      this.preloadEnded(slot.preload.run);
      slot.preload = undefined;
    }
    return slot.sent.splice(0).filter((sent) => !sent.withdrawn);
  }

  /**
   * Gives queued calls to workers: idle workers first, then workers with room in their pipeline.
   * A worker that is idle while another holds a call it has not started takes that call over.
   */
  private pump(): void {
    if (this.stopped) return;
    this.parkedReady = false;
    if (this.parked.length > 0) this.unpark();
    // Idle workers first, the one that answered last first: it is the likeliest to be still awake,
    // and a post to a sleeping worker costs the HTTP thread a thread wake-up (about 10 µs here).
    while (this.queue.length > 0) {
      const best = this.idleSlot();
      if (best === undefined) break;
      const call = this.queue.shift() as Call;
      if (call.loaded.guarded && !this.mayStartGuarded(call.loaded)) {
        this.parked.push(call);
        continue;
      }
      // A worker whose every cell is held by withdrawn calls takes none now (send gives it back).
      if (!this.send(best, call)) break;
    }
    // No worker holds a call behind a guarded one, and none is given any while a parked call waits
    // for a worker to go idle (it would otherwise wait for as long as calls keep coming).
    for (let level = 1; level < this.depth && this.queue.length > 0 && !this.parkedReady; level++) {
      for (const slot of this.slots) {
        if (this.queue.length === 0) break;
        if (slot.state !== 'up' || this.live(slot) !== level || slot.running?.call.loaded.guarded) continue;
        let call = this.queue.shift() as Call | undefined;
        while (call?.loaded.guarded) {
          this.parked.push(call);
          call = this.queue.shift();
        }
        if (call !== undefined) this.send(slot, call);
      }
    }
    if (this.depth > 1 && this.queue.length === 0) this.rebalance();
  }

  /** The idle worker to send a call to: the one that answered last (see pump). */
  private idleSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.state === 'up' && (best === undefined || slot.lastAnswer > best.lastAnswer) && this.live(slot) === 0) best = slot;
    }
    return best;
  }

  /**
   * Starts the parked calls that may start, oldest first, on idle workers unless an older call
   * waits in the queue; gives those of functions no longer guarded back to the queue's head.
   */
  private unpark(): void {
    const now = performance.now();
    const parked = this.parked;
    const back: Call[] = [];
    let kept = 0;
    for (let i = 0; i < parked.length; i++) {
      const call = parked[i]!;
      if (call.settled) continue;
      if (!call.loaded.guarded) {
        back.push(call);
        continue;
      }
      if (!this.mayStartGuarded(call.loaded, now)) {
        parked[kept++] = call;
        continue;
      }
      // Call ids follow arrival at the pool.
      const idle = this.queue.length > 0 && this.queue[0]!.id < call.id ? undefined : this.idleSlot();
      if (idle === undefined) {
        this.parkedReady = true;
        parked[kept++] = call;
        continue;
      }
      // On failure the call is back in the queue, where pump finds it.
      this.send(idle, call);
    }
    parked.length = kept;
    if (back.length > 0) this.queue.unshift(...back);
  }

  /** Whether a call of a guarded function may start on an idle worker now (see the header). */
  private mayStartGuarded(loaded: LoadedModule, now = performance.now()): boolean {
    let guardedRunning = 0;
    for (const slot of this.slots) if (slot.state !== 'starting' && slot.running?.call.loaded.guarded) guardedRunning++;
    // One worker alone is shared by all; else one is kept from guarded calls. A worker being
    // replaced counts as that one: else a slow function's call would wait for it (it may take
    // longer to start than the call may wait), while the fast ones wait only that long.
    if (guardedRunning < Math.max(1, this.size - 1)) return true;
    if (loaded.proven || now < loaded.slowUntil) return false;
    for (const slot of this.slots) for (const sent of slot.sent) if (!sent.withdrawn && sent.call.loaded === loaded) return false;
    return true;
  }

  private armWatch(): void {
    if (this.stopped) return;
    this.watchDue = performance.now() + WATCH_MS;
    this.watchTimer = setTimeout(this.watch, WATCH_MS);
    this.watchTimer.unref();
  }

  /**
   * Every WATCH_MS while anything runs or waits: a call running past SLOW_CALL_MS makes its
   * function guarded; calls held in a worker behind a guarded call, or of a guarded function, are
   * taken back to the queue; and every call waiting past its start deadline is refused.
   */
  private readonly watch = (): void => {
    this.watchTimer = undefined;
    if (this.stopped) return;
    const now = performance.now();
    // Time this thread was too busy to run the watch is not counted against a running call: its
    // answer may be waiting behind that work.
    const seen = Math.min(now, this.watchDue);
    let active = this.queue.length > 0 || this.parked.length > 0;
    for (const slot of this.slots) {
      const running = slot.running;
      if (slot.state !== 'up' || running === undefined) continue;
      active = true;
      const ranFor = seen - slot.runningSince;
      // A call its worker has not taken yet is not slow: the worker is (a stalled thread, say).
      if (ranFor >= SLOW_CALL_MS && Atomics.load(slot.cells, running.cell) === CellState.STARTED) markSlow(running.call.loaded, now, ranFor);
    }
    let back: Call[] | undefined;
    for (const slot of this.slots) {
      const running = slot.running;
      if (slot.state !== 'up' || running === undefined || slot.sent.length < 2) continue;
      for (const sent of slot.sent) {
        if (sent === running || sent.withdrawn) continue;
        const late = now >= sent.call.startBy;
        if (!late && !running.call.loaded.guarded && !sent.call.loaded.guarded) continue;
        // Not withdrawn: it started meanwhile.
        if (!this.withdraw(slot, sent)) continue;
        if (late) this.settle(sent.call, notStarted(sent.call));
        else (back ??= []).push(sent.call);
      }
    }
    if (back) this.queue.unshift(...back);
    if (!this.anyWorkerUp()) {
      // Every worker is being started or replaced: waiting for one is not counted against the
      // calls' time to start (it is the engine's doing, and short; a worker that cannot start
      // fails the calls, see startFailed).
      this.downSince ??= now;
    } else {
      if (this.downSince !== undefined) {
        for (const call of this.queue) this.postpone(call, now, this.downSince);
        for (const call of this.parked) this.postpone(call, now, this.downSince);
        this.downSince = undefined;
      }
      this.expire(this.queue, now);
      this.expire(this.parked, now);
    }
    this.pump();
    if (active) this.armWatch();
  };

  /** Adds to a call's time to start the part of [since, now] it waited. */
  private postpone(call: Call, now: number, since: number): void {
    const arrived = call.startBy - Math.min(call.timeoutMs, MAX_TIMER_MS);
    call.startBy += now - Math.max(since, arrived);
  }

  /** Refuses the calls of `calls` past their start deadline, keeping the others in order. */
  private expire(calls: Call[], now: number): void {
    let kept = 0;
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i]!;
      if (now >= call.startBy) this.settle(call, notStarted(call));
      else if (!call.settled) calls[kept++] = call;
    }
    calls.length = kept;
  }

  private rebalance(): void {
    const now = performance.now();
    let soonest = Infinity;
    for (const idle of this.slots) {
      if (idle.state !== 'up' || this.live(idle) > 0) continue;
      for (const busy of this.slots) {
        if (busy === idle || busy.state !== 'up') continue;
        const waiting = busy.sent.find((s) => !s.withdrawn && s !== busy.running);
        // A guarded function's call goes back to the queue instead (see watch).
        if (!waiting || waiting.call.loaded.guarded) continue;
        const ranFor = now - busy.runningSince;
        if (ranFor < STEAL_AFTER_MS) {
          soonest = Math.min(soonest, STEAL_AFTER_MS - ranFor);
          continue;
        }
        if (this.withdraw(busy, waiting)) {
          this.send(idle, waiting.call);
          break;
        }
      }
    }
    if (soonest !== Infinity && this.rebalanceTimer === undefined) {
      this.rebalanceTimer = setTimeout(() => {
        this.rebalanceTimer = undefined;
        this.pump();
      }, Math.ceil(soonest));
      this.rebalanceTimer.unref();
    }
  }

  /** False when the worker could not take the call (it is back at the head of the queue). */
  private send(slot: Slot, call: Call): boolean {
    const cell = slot.cellsInUse.indexOf(false);
    if (cell < 0) {
      // Every cell is held by withdrawn calls not yet acknowledged: keep the call queued.
      this.queue.unshift(call);
      return false;
    }
    slot.cellsInUse[cell] = true;
    Atomics.store(slot.cells, cell, CellState.PENDING);
    const sent: Sent = { call, cell, withdrawn: false };
    call.sent = sent;
    slot.sent.push(sent);
    if (!slot.running) this.startNext(slot);
    if (this.watchTimer === undefined) this.armWatch();
    if (slot.modules.has(call.loaded.id)) {
      this.post(slot, compactInvoke(call.id, cell, call.loaded.id, call.sandbox));
      return true;
    }
    const msg: InvokeMessage = { type: 'invoke', id: call.id, cell, moduleId: call.loaded.id, call: call.sandbox, load: this.transferOf(call.loaded) };
    if (call.loaded.unloaded) msg.keep = false;
    else slot.modules.add(call.loaded.id);
    this.post(slot, msg);
    return true;
  }

  /** A compiled module as a worker receives it. */
  private transferOf(loaded: LoadedModule): ModuleTransfer {
    const { module, state, noReuse } = loaded;
    return { module, ...(state ? { state } : {}), ...(noReuse === undefined ? {} : { noReuse }), ...(this.lazy.has(loaded) ? { lazy: true as const } : {}) };
  }

  private settle(call: Call, err: unknown, result?: InvocationResult): void {
    if (call.settled) return;
    call.settled = true;
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    if (err === undefined) call.resolve(result as InvocationResult);
    else {
      // It held a worker up to its limit, and its worker is replaced: its function is slow.
      if (err instanceof EngineError && err.code === 'FUNCTION_TIMEOUT') markSlow(call.loaded, performance.now(), call.timeoutMs);
      call.reject(err);
    }
    this.onSettled?.();
  }
}

/** What a queued call whose client went away ends with (the engine's function gate says the same). */
function cancelled(): EngineError {
  return new EngineError('UNAVAILABLE', 'invocation cancelled: the client went away');
}

/** A call of a function seen slow, having run `ranMs` so far: guarded for as long (see the header). */
function markSlow(loaded: LoadedModule, now: number, ranMs: number): void {
  loaded.guarded = true;
  loaded.slowUntil = Math.max(loaded.slowUntil, now + Math.min(ranMs, SLOW_HOLD_MAX_MS));
}

/** A call answered within SLOW_CALL_MS: its function is no longer guarded once its hold is over. */
function trust(loaded: LoadedModule, now: number): void {
  loaded.proven = true;
  if (now >= loaded.slowUntil) loaded.guarded = false;
}

/** What a call that could not start within its time limit ends with (the function gate says the same). */
function notStarted(call: Call): EngineError {
  return new EngineError('OVERLOADED', `the invocation could not start within its time limit of ${call.timeoutMs} ms: the sandboxes were busy`, {
    retryAfterSeconds: 1,
  });
}

function shuttingDown(): EngineError {
  return new EngineError('OVERLOADED', 'the engine is shutting down', { retryAfterSeconds: 1 });
}
