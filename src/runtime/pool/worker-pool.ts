/**
 * The runtime the engine uses: a fixed pool of worker threads. A call first runs on the HTTP thread
 * within a short budget when inline running is on (inline/inline-executor.ts), and comes here when
 * it does not finish there. This file is the pool's public face (load, invoke, preload, close)
 * and what a worker's messages mean. Each other part has a file: which call goes to which worker
 * and when (scheduler.ts, over the queue of call-queue.ts and the fairness rules of fairness.ts),
 * the deadlines of the calls on the workers and what happens past them (deadlines.ts), the
 * workers' start, deaths and replacement (worker-lifecycle.ts), the thread protocol with each
 * worker and its shared-memory cells (worker-slot.ts), preloading (preload.ts), warm-up
 * (warm-up.ts) and the compiled modules (module-cache.ts).
 *
 * Invocations beyond the workers wait in a bounded queue; past the bound they are refused at once
 * with OVERLOADED.
 */
import { availableParallelism } from 'node:os';
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
  PortableModule,
  PreloadRequest,
  RuntimeStats,
} from '../types.js';
import { Deadlines } from './deadlines.js';
import { SLOW_CALL_MS, markSlow, trust } from './fairness.js';
import { ModuleCache, type LoadedModule } from './module-cache.js';
import type { Call, PreloadItem, Sent, Slot, SlotState } from './pool-records.js';
import { Preloader } from './preload.js';
import { DEFAULT_MAX_TABLE_ENTRIES, ModulePreparer } from './preparer.js';
import { Scheduler } from './scheduler.js';
import { CELLS_PER_WORKER, expandDone, type FromWorker, type ModuleTransfer, type WorkerSettings } from './protocol.js';
import { warmUpPool } from './warm-up.js';
import { WorkerLifecycle } from './worker-lifecycle.js';
import { MAX_TIMER_MS, acknowledge, enlist, held, live, post, postCall, withdraw } from './worker-slot.js';
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
 * Calls given to a worker at once. With two, a worker that finished its held call often slept
 * before the HTTP thread sent the next; more than four gained nothing (docs/runtime.md).
 */
export const DEFAULT_PIPELINE_DEPTH = 4;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export class WorkerPoolRuntime implements FunctionRuntime {
  private readonly size: number;
  private readonly maxQueue: number;
  private readonly depth: number;
  private readonly logger: Logger;
  private readonly closeTimeoutMs: number;
  private readonly workerSettings: Omit<WorkerSettings, 'cells'>;
  private readonly cache: ModuleCache;
  private readonly preparer: ModulePreparer;
  private readonly slots = new Set<Slot>();
  private readonly scheduler: Scheduler;
  private nextCallId = 1;
  private closing: Promise<void> | undefined;
  /** Called whenever a call settles, for close() to notice the pool draining. */
  private onSettled: (() => void) | undefined;
  private readonly moduleCacheBytes: number | undefined;
  /** Digests whose preload ran past its deadline or killed its worker, and why (see preload); until unloaded. */
  private readonly setAside = new Map<string, string>();
  private readonly preloader: Preloader;
  private readonly deadlines: Deadlines;
  private readonly lifecycle: WorkerLifecycle;
  /** Runs calls on this thread first, within a budget; undefined when that is off. */
  private readonly inline: InlineExecutor | undefined;
  /** Calls the workers answered FUNCTION_TIMEOUT: stopped by their own checks. */
  private selfStopped = 0;

  constructor(options: WorkerPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.workers ?? availableParallelism()));
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? DEFAULT_MAX_QUEUE));
    this.depth = Math.max(1, Math.min(CELLS_PER_WORKER / 2, Math.floor(options.pipelineDepth ?? DEFAULT_PIPELINE_DEPTH)));
    this.logger = options.logger ?? silentLogger;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const workerUrl = options.workerUrl ?? defaultWorkerUrl();
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
    this.scheduler = new Scheduler({
      slots: this.slots,
      size: this.size,
      depth: this.depth,
      stopped: () => this.lifecycle.stopped,
      anyWorkerUp: () => this.lifecycle.anyWorkerUp(),
      send: (slot, call) => this.send(slot, call),
      settle: (call, err) => this.settle(call, err),
    });
    this.preloader = new Preloader({
      slots: this.slots,
      logger: this.logger,
      transferOf: (loaded) => this.transferOf(loaded),
      replace: (slot) => {
        const requeue = this.lifecycle.takeBack(slot, undefined);
        const next = this.lifecycle.replace(slot, 'preload');
        this.scheduler.requeue(requeue);
        return next;
      },
      setAside: (digest, reason) => this.setAside.set(digest, reason),
      available: () => this.scheduler.pump(),
    });
    this.deadlines = new Deadlines({
      slots: this.slots,
      logger: this.logger,
      settle: (call, err) => this.settle(call, err),
      takeBack: (slot, running) => this.lifecycle.takeBack(slot, running),
      replace: (slot, reason) => this.lifecycle.replace(slot, reason),
      requeue: (calls) => this.scheduler.requeue(calls),
    });
    this.lifecycle = new WorkerLifecycle({
      slots: this.slots,
      logger: this.logger,
      spawn: { url: workerUrl, heapMb: options.workerHeapMb ?? DEFAULT_WORKER_HEAP_MB, settings: this.workerSettings },
      message: (slot, msg) => this.onMessage(slot, msg),
      settle: (call, err) => this.settle(call, err),
      requeue: (calls) => this.scheduler.requeue(calls),
      drain: () => this.scheduler.drain(),
      preloadFailed: (slot, reason) => this.preloader.failed(slot, reason),
      abandonPreload: (slot) => this.preloader.abandon(slot),
      blame: (slot, busy, what) => this.deadlines.blame(slot, busy, what),
    });
    const inlineBudgetMs = options.inlineBudgetMs ?? 0;
    const heavyMs = (options.inlineHeavyUs ?? DEFAULT_INLINE_HEAVY_US) / 1000;
    this.inline = inlineBudgetMs > 0 ? new InlineExecutor({ budgetMs: inlineBudgetMs, reuseInstances: this.workerSettings.reuseInstances, heavyMs }) : undefined;
    this.lifecycle.start(this.size);
  }

  /**
   * Resolves once every first worker has started (or failed to: this never hangs). A worker takes
   * tens of milliseconds to start; an engine that waits for this before it listens does not make
   * its first invocation wait for it.
   */
  ready(): Promise<void> {
    return this.lifecycle.ready();
  }

  async load(digest: string, bytes: Uint8Array, memoryLimitMb: number, owned = false): Promise<void> {
    await this.cache.load(digest, bytes, memoryLimitMb, owned);
  }

  /** Analyses, compiles and tries a deploy's module off this thread, and loads it (module-cache.ts admit). */
  admit(bytes: Uint8Array, request: AdmitRequest): Promise<AdmittedModule> {
    const { memoryLimitMb, timeoutMs, ...analyze } = request;
    return this.cache.admit(bytes, memoryLimitMb, analyze, timeoutMs);
  }

  /** Warms this thread's side of a call up (warm-up.ts warmUpPool). Never throws. */
  warmUp(): Promise<void> {
    return warmUpPool({
      loadFast: async (digest, bytes) => {
        if (this.moduleCacheBytes !== undefined && this.cache.bytes + 4 * bytes.byteLength > this.moduleCacheBytes) return false;
        const loaded = await this.cache.load(digest, bytes, 1);
        loaded.guarded = false;
        loaded.notInline = 'the pool warm-up is for the workers';
        loaded.proven = true;
        return true;
      },
      invoke: (req) => this.invoke(req),
      unload: (digest) => this.unload(digest),
      workersUp: () => this.countState('up'),
    });
  }

  /**
   * Sends compiled modules to every worker, ahead of their first call, and has each ready an
   * instance for the module's ABI (preload.ts); resolves once they have (or have gone). Modules
   * not in the compiled cache now (never loaded, evicted) are skipped: this never compiles or
   * fetches.
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
    return this.preloader.start([...items.values()]);
  }

  portable(digest: string, memoryLimitMb: number): PortableModule | undefined {
    if (this.inline === undefined || this.setAside.has(digest)) return undefined;
    const loaded = this.cache.peek(digest, memoryLimitMb);
    if (loaded === undefined || loaded.unloaded || loaded.notInline !== undefined) return undefined;
    const { module, state, noReuse } = loaded;
    return { module, ...(state ? { state } : {}), ...(noReuse === undefined ? {} : { noReuse }) };
  }

  /** Bytes of guest memory kept in idle instances for inline calls on this thread (not in stats(): the engine reads those per refused call). */
  inlineInstanceBytes(): number {
    return this.inline?.idleInstanceBytes ?? 0;
  }

  unload(digest: string): void {
    this.setAside.delete(digest);
    this.evictFromWorkers(new Set(this.cache.unload(digest).map((m) => m.id)));
  }

  /** Calls waiting for a worker: in the pool's queue, or held by a worker behind its running call. */
  queued(): number {
    let n = this.scheduler.waiting;
    for (const slot of this.slots) n += held(slot);
    return n;
  }

  stats(): RuntimeStats {
    let busy = 0;
    for (const slot of this.slots) if (slot.running) busy++;
    return {
      workers: this.slots.size,
      busy,
      queued: this.queued(),
      loadedModules: this.cache.size,
      loadedModuleBytes: this.cache.bytes,
      evictedModules: this.cache.evictedCount,
      ...(this.inline ? { inlineRan: this.inline.stats.ran, inlineAbandoned: this.inline.stats.abandoned } : {}),
      preemptions: { worker: this.selfStopped, inline: this.inline?.stats.stopped ?? 0 },
      workerReplacements: { ...this.lifecycle.replacements },
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
    if (this.inline !== undefined && req.inlineTried !== true) {
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
    if (this.lifecycle.startError !== undefined && !this.lifecycle.anyWorkerUp()) {
      return Promise.reject(new EngineError('INTERNAL', `no sandbox worker could start: ${this.lifecycle.startError}`));
    }
    // Workers still starting will each take a call soon: those calls are not "queued beyond a bound".
    // Counted only when no worker is idle (the common case under load is a full pipeline, but an
    // idle worker answers the question at once and without allocating).
    let queued: number;
    if (!this.anyIdle() && (queued = this.queued()) >= this.maxQueue + this.countState('starting')) {
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
      this.scheduler.add(call);
    });
  }

  /** The client went away: a call that has not started is dropped; a running one finishes or times out. */
  private abort(call: Call): void {
    if (call.settled) return;
    if (call.sent === undefined) {
      this.scheduler.remove(call);
      this.settle(call, cancelled());
      return;
    }
    const slot = this.slotOf(call.sent);
    if (slot && call.sent !== slot.running && withdraw(slot, call.sent)) this.settle(call, cancelled());
  }

  private async shutDown(): Promise<void> {
    // Let queued and running calls finish, within the bound.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.scheduler.waiting === 0 && this.stats().busy === 0) done();
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
    this.lifecycle.stop();
    this.scheduler.stop();
    for (const call of this.scheduler.drain()) this.settle(call, shuttingDown());
    const stopping: Promise<number>[] = [];
    for (const slot of [...this.slots]) {
      const sent = this.lifecycle.retire(slot);
      for (const { call } of sent) this.settle(call, new EngineError('FUNCTION_FAILED', 'the engine shut down before the function finished'));
      stopping.push(slot.worker.terminate());
    }
    stopping.push(this.preparer.close().then(() => 0));
    await Promise.allSettled(stopping);
    this.logger.debug({}, 'sandbox workers stopped');
  }

  private evictFromWorkers(ids: Set<number>): void {
    if (ids.size === 0) return;
    this.inline?.dropUnloaded();
    for (const slot of this.slots) {
      const held = [...slot.modules].filter((id) => ids.has(id));
      if (held.length === 0) continue;
      for (const id of held) slot.modules.delete(id);
      post(slot, { type: 'evict', moduleIds: held });
    }
  }

  private anyIdle(): boolean {
    for (const slot of this.slots) if (slot.state === 'up' && live(slot) === 0) return true;
    return false;
  }

  private countState(state: SlotState): number {
    let n = 0;
    for (const slot of this.slots) if (slot.state === state) n++;
    return n;
  }

  private slotOf(sent: Sent): Slot | undefined {
    for (const slot of this.slots) if (slot.sent.includes(sent)) return slot;
    return undefined;
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    if (slot.state === 'gone') return;
    if (Array.isArray(msg)) {
      this.answered(slot, msg[0], undefined, expandDone(msg));
      return;
    }
    if (msg.type === 'ready') {
      this.lifecycle.up(slot);
      if (slot.preload) this.preloader.next(slot);
      else this.scheduler.pump();
      return;
    }
    if (msg.type === 'preloaded') {
      this.preloader.preloaded(slot, msg.id);
      return;
    }
    if (msg.type === 'failed') {
      // Only a worker's own checks make it answer this (worker.ts).
      if (msg.code === 'FUNCTION_TIMEOUT') this.selfStopped++;
      this.answered(slot, msg.id, new EngineError(msg.code, msg.message));
    }
    // 'skipped' for a call not withdrawn cannot happen (only the pool withdraws): no answer to give.
    else this.answered(slot, msg.id, null);
  }

  /** A call's acknowledgement: its result, its error, or null when the worker skipped it. */
  private answered(slot: Slot, id: number, err: EngineError | null | undefined, result?: InvocationResult): void {
    const sent = acknowledge(slot, id);
    if (sent === undefined) return;
    if (sent === slot.running) {
      // The worker's own measure of the call: this thread may have read the answer late.
      if (result !== undefined) {
        if (result.durationMs >= SLOW_CALL_MS) markSlow(sent.call.loaded, slot.lastAnswer, result.durationMs);
        else if (sent.call.loaded.guarded) trust(sent.call.loaded, slot.lastAnswer);
      }
      this.deadlines.startNext(slot);
    }
    if (!sent.withdrawn && err !== null) this.settle(sent.call, err, result);
    this.scheduler.pump();
  }

  /** False when the worker could not take the call: every cell is held by withdrawn calls not yet acknowledged. */
  private send(slot: Slot, call: Call): boolean {
    const sent = enlist(slot, call);
    if (sent === undefined) return false;
    if (!slot.running) this.deadlines.startNext(slot);
    postCall(slot, sent, (loaded) => this.transferOf(loaded));
    return true;
  }

  /** A compiled module as a worker receives it. */
  private transferOf(loaded: LoadedModule): ModuleTransfer {
    const { module, state, noReuse } = loaded;
    return { module, ...(state ? { state } : {}), ...(noReuse === undefined ? {} : { noReuse }), ...(this.deadlines.isLazy(loaded) ? { lazy: true as const } : {}) };
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

function shuttingDown(): EngineError {
  return new EngineError('OVERLOADED', 'the engine is shutting down', { retryAfterSeconds: 1 });
}
