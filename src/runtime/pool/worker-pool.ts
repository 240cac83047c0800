/**
 * The runtime the engine uses: a fixed pool of worker threads, so guest code never runs on the
 * HTTP thread. This file is the scheduler: which waiting call goes to which worker, when, and what
 * happens at a deadline or when a worker dies. The rest has a file each: the queue
 * (call-queue.ts), the thread protocol with each worker and its shared-memory cells
 * (worker-slot.ts), fairness between fast and slow functions (fairness.ts), preloading
 * (preload.ts), warm-up (warm-up.ts) and the compiled modules (module-cache.ts).
 *
 * A call past its deadline is preempted by terminating its worker (the only way to stop a running
 * WebAssembly loop), and a fresh worker takes its place while every other call carries on.
 * Invocations beyond the workers wait in a bounded queue; past the bound they are refused at once
 * with OVERLOADED. Each worker is given up to `pipelineDepth` calls at once (worker-slot.ts); a
 * call waiting in a worker is withdrawn when its client goes away, when another worker is idle
 * while it waits behind a call running for more than STEAL_AFTER_MS (so a call never waits long
 * behind a slow one while a worker is free), or when its worker is terminated.
 *
 * Calls of guarded functions (fairness.ts) that may not start yet wait in `parked`, and take an
 * idle worker in their turn (oldest call first, parked or queued). Nothing waits in a worker
 * behind a guarded call: the watch (a timer running while anything runs or waits) takes such calls
 * back. No call waits longer than its time limit to start: the watch refuses with OVERLOADED any
 * call queued, parked or held in a worker past `startBy` (its arrival at the engine plus its time
 * limit).
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
  PreloadRequest,
  RuntimeStats,
} from '../types.js';
import { FifoQueue, type CallQueue } from './call-queue.js';
import { SLOW_CALL_MS, markSlow, mayStartGuarded, trust } from './fairness.js';
import { ModuleCache, type LoadedModule } from './module-cache.js';
import { Preloader, type PreloadItem } from './preload.js';
import { DEFAULT_MAX_TABLE_ENTRIES, ModulePreparer } from './preparer.js';
import { CELLS_PER_WORKER, expandDone, type FromWorker, type ModuleTransfer, type WorkerSettings } from './protocol.js';
import { warmUpPool } from './warm-up.js';
import {
  MAX_TIMER_MS,
  acknowledge,
  busyModule,
  enlist,
  held,
  live,
  post,
  postCall,
  spawnSlot,
  started,
  withdraw,
  type Call,
  type Sent,
  type Slot,
  type SlotState,
} from './worker-slot.js';
import { defaultWorkerUrl } from './worker-url.js';

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
/**
 * An idle worker takes over a call waiting behind one that has run this long. Sooner would move
 * calls that were about to start anyway (a message and a thread wake-up each, for nothing).
 */
const STEAL_AFTER_MS = 2;
/** The watch's period while anything runs or waits. */
const WATCH_MS = 10;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;
/** Respawn delays after a worker fails to start: doubling from the first to the last. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;

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
  private readonly queue: CallQueue<Call> = new FifoQueue();
  /** Calls of guarded functions waiting for an idle worker their share allows (fairness.ts). */
  private readonly parked: CallQueue<Call> = new FifoQueue();
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
  private readonly moduleCacheBytes: number | undefined;
  private readonly workerHeapMb: number;
  /** Digests whose preload ran past its deadline or killed its worker, and why (see preload); until unloaded. */
  private readonly setAside = new Map<string, string>();
  /** Modules whose instances workers make only inside calls (see blame). */
  private readonly lazy = new WeakSet<LoadedModule>();
  private readonly preloader: Preloader;

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
    this.preloader = new Preloader({
      slots: this.slots,
      logger: this.logger,
      transferOf: (loaded) => this.transferOf(loaded),
      replace: (slot) => {
        const requeue = this.takeBack(slot, undefined);
        const next = this.replace(slot);
        this.requeue(requeue);
        return next;
      },
      setAside: (digest, reason) => this.setAside.set(digest, reason),
      available: () => this.pump(),
    });
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

  /** Warms this thread's side of a call up (warm-up.ts warmUpPool). Never throws. */
  warmUp(): Promise<void> {
    return warmUpPool({
      loadFast: async (digest, bytes) => {
        if (this.moduleCacheBytes !== undefined && this.cache.bytes + 4 * bytes.byteLength > this.moduleCacheBytes) return false;
        const loaded = await this.cache.load(digest, bytes, 1);
        loaded.guarded = false;
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

  unload(digest: string): void {
    this.setAside.delete(digest);
    this.evictFromWorkers(new Set(this.cache.unload(digest).map((m) => m.id)));
  }

  /** Calls waiting for a worker: in the pool's queue, or held by a worker behind its running call. */
  private queuedCount(): number {
    let n = this.queue.size + this.parked.size;
    for (const slot of this.slots) n += held(slot);
    return n;
  }

  stats(): RuntimeStats {
    let busy = 0;
    let waitingInWorkers = 0;
    for (const slot of this.slots) {
      if (slot.running) busy++;
      waitingInWorkers += held(slot);
    }
    return {
      workers: this.slots.size,
      busy,
      queued: this.queue.size + this.parked.size + waitingInWorkers,
      loadedModules: this.cache.size,
      loadedModuleBytes: this.cache.bytes,
      evictedModules: this.cache.evictedCount,
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
      if (!this.queue.remove(call)) this.parked.remove(call);
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
        if (this.queue.size === 0 && this.parked.size === 0 && this.stats().busy === 0) done();
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
    for (const call of this.queue.drain()) this.settle(call, shuttingDown());
    for (const call of this.parked.drain()) this.settle(call, shuttingDown());
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
      post(slot, { type: 'evict', moduleIds: held });
    }
  }

  private anyWorkerUp(): boolean {
    for (const slot of this.slots) if (slot.state === 'up' || slot.state === 'preloading') return true;
    return false;
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

  private spawn(): Slot | undefined {
    let slot: Slot;
    try {
      slot = spawnSlot(
        { url: this.workerUrl, heapMb: this.workerHeapMb, settings: this.workerSettings },
        { message: (s, msg) => this.onMessage(s, msg), death: (s, reason, outOfMemory) => this.onDeath(s, reason, outOfMemory) },
      );
    } catch (err) {
      this.startFailed(err instanceof Error ? err.message : String(err));
      return undefined;
    }
    this.slots.add(slot);
    return slot;
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
      if (slot.preload) this.preloader.next(slot);
      else this.pump();
      return;
    }
    if (msg.type === 'preloaded') {
      this.preloader.preloaded(slot, msg.id);
      return;
    }
    if (msg.type === 'failed') this.answered(slot, msg.id, new EngineError(msg.code, msg.message));
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

  /** A worker died without being told to: its call fails, and a new worker replaces it. */
  private onDeath(slot: Slot, reason: string, outOfMemory = false): void {
    if (slot.state === 'gone') return;
    if (slot.preload?.current) {
      this.preloader.failed(slot, outOfMemory ? `readying its first instance exhausted the sandbox's heap (${this.workerHeapMb} MiB)` : `its sandbox crashed while readying its first instance (${reason})`);
      return;
    }
    const { state } = slot;
    let running = slot.running;
    const busy = busyModule(slot);
    // A call the worker had not started (it died readying an instance after an answer) runs
    // elsewhere, once: a call that kills workers before it starts must not go round them all.
    const requeue: Call[] = [];
    if (running && !running.call.moved && withdraw(slot, running)) {
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
      for (const call of [...this.queue.drain(), ...this.parked.drain()]) {
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
    if (!running.call.moved && withdraw(slot, running)) {
      // Not started by its deadline: the worker is stuck outside any call (readying an instance
      // after an answer, see BUSY_CELL). It is replaced, and the call runs on another, once.
      this.moved(running.call);
      const busy = busyModule(slot);
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
    const busy = busyModule(slot);
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
    for (const other of this.slots) if (other.modules.has(loaded.id)) post(other, { type: 'lazy', moduleIds: [loaded.id] });
  }

  /**
   * Before a worker is stopped: withdraws every call sent to it but `running`. Returns those that
   * had not started (to run elsewhere); any that had (it began as the deadline fell) is failed.
   */
  private takeBack(slot: Slot, running: Sent | undefined): Call[] {
    const back: Call[] = [];
    for (const sent of slot.sent) {
      if (sent === running || sent.withdrawn) continue;
      if (withdraw(slot, sent)) back.push(sent.call);
      else this.settle(sent.call, new EngineError('FUNCTION_FAILED', 'the sandbox was stopped while running the function'));
    }
    return back;
  }

  /** Puts calls that never started back at the head of the queue, in their order. */
  private requeue(calls: Call[]): void {
    const waiting = calls.filter((call) => !call.settled);
    if (waiting.length === 0) return;
    this.queue.unshift(waiting);
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
    this.preloader.abandon(slot);
    return slot.sent.splice(0).filter((sent) => !sent.withdrawn);
  }

  /**
   * Gives queued calls to workers: idle workers first, then workers with room in their pipeline.
   * A worker that is idle while another holds a call it has not started takes that call over.
   */
  private pump(): void {
    if (this.stopped) return;
    this.parkedReady = false;
    if (this.parked.size > 0) this.unpark();
    // Idle workers first, the one that answered last first: it is the likeliest to be still awake,
    // and a post to a sleeping worker costs the HTTP thread a thread wake-up.
    while (this.queue.size > 0) {
      const best = this.idleSlot();
      if (best === undefined) break;
      const call = this.queue.shift() as Call;
      if (call.loaded.guarded && !mayStartGuarded(this.slots, this.size, call.loaded, performance.now())) {
        this.parked.push(call);
        continue;
      }
      // A worker whose every cell is held by withdrawn calls takes none now (send gives it back).
      if (!this.send(best, call)) break;
    }
    // No worker holds a call behind a guarded one, and none is given any while a parked call waits
    // for a worker to go idle (it would otherwise wait for as long as calls keep coming).
    for (let level = 1; level < this.depth && this.queue.size > 0 && !this.parkedReady; level++) {
      for (const slot of this.slots) {
        if (this.queue.size === 0) break;
        if (slot.state !== 'up' || live(slot) !== level || slot.running?.call.loaded.guarded) continue;
        let call = this.queue.shift() as Call | undefined;
        while (call?.loaded.guarded) {
          this.parked.push(call);
          call = this.queue.shift();
        }
        if (call !== undefined) this.send(slot, call);
      }
    }
    if (this.depth > 1 && this.queue.size === 0) this.rebalance();
  }

  /** The idle worker to send a call to: the one that answered last (see pump). */
  private idleSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.state === 'up' && (best === undefined || slot.lastAnswer > best.lastAnswer) && live(slot) === 0) best = slot;
    }
    return best;
  }

  /**
   * Starts the parked calls that may start, oldest first, on idle workers unless an older call
   * waits in the queue; gives those of functions no longer guarded back to the queue's head.
   */
  private unpark(): void {
    const now = performance.now();
    const back: Call[] = [];
    this.parked.retain((call) => {
      if (call.settled) return false;
      if (!call.loaded.guarded) {
        back.push(call);
        return false;
      }
      if (!mayStartGuarded(this.slots, this.size, call.loaded, now)) return true;
      // Call ids follow arrival at the pool.
      const first = this.queue.peek();
      const idle = first !== undefined && first.id < call.id ? undefined : this.idleSlot();
      if (idle === undefined) {
        this.parkedReady = true;
        return true;
      }
      // On failure the call is back in the queue, where pump finds it.
      this.send(idle, call);
      return false;
    });
    this.queue.unshift(back);
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
    let active = this.queue.size > 0 || this.parked.size > 0;
    for (const slot of this.slots) {
      const running = slot.running;
      if (slot.state !== 'up' || running === undefined) continue;
      active = true;
      const ranFor = seen - slot.runningSince;
      // A call its worker has not taken yet is not slow: the worker is (a stalled thread, say).
      if (ranFor >= SLOW_CALL_MS && started(slot, running)) markSlow(running.call.loaded, now, ranFor);
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
        if (!withdraw(slot, sent)) continue;
        if (late) this.settle(sent.call, notStarted(sent.call));
        else (back ??= []).push(sent.call);
      }
    }
    if (back) this.queue.unshift(back);
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
  private expire(calls: CallQueue<Call>, now: number): void {
    calls.retain((call) => {
      if (now < call.startBy) return !call.settled;
      this.settle(call, notStarted(call));
      return false;
    });
  }

  private rebalance(): void {
    const now = performance.now();
    let soonest = Infinity;
    for (const idle of this.slots) {
      if (idle.state !== 'up' || live(idle) > 0) continue;
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
        if (withdraw(busy, waiting)) {
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
    const sent = enlist(slot, call);
    if (sent === undefined) {
      // Every cell is held by withdrawn calls not yet acknowledged: keep the call queued.
      this.queue.unshift([call]);
      return false;
    }
    if (!slot.running) this.startNext(slot);
    if (this.watchTimer === undefined) this.armWatch();
    postCall(slot, sent, (loaded) => this.transferOf(loaded));
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

/** What a call that could not start within its time limit ends with (the function gate says the same). */
function notStarted(call: Call): EngineError {
  return new EngineError('OVERLOADED', `the invocation could not start within its time limit of ${call.timeoutMs} ms: the sandboxes were busy`, {
    retryAfterSeconds: 1,
  });
}

function shuttingDown(): EngineError {
  return new EngineError('OVERLOADED', 'the engine is shutting down', { retryAfterSeconds: 1 });
}
