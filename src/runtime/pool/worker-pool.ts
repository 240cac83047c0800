/**
 * The runtime the engine uses: a fixed pool of worker threads, so guest code never runs on the
 * HTTP thread. Each worker runs one invocation at a time; a call past its deadline is preempted by
 * terminating its worker (the only way to stop a running WebAssembly loop), and a fresh worker
 * takes its place while every other call carries on. Invocations beyond the workers wait in a
 * bounded queue; past the bound they are refused at once with OVERLOADED.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EngineError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import type { SandboxCall } from '../abi/call.js';
import type { FunctionRuntime, InvocationRequest, InvocationResult, RuntimeStats } from '../types.js';
import { ModuleCache, type LoadedModule } from './module-cache.js';
import type { FromWorker, InvokeMessage, ToWorker } from './protocol.js';
import { defaultWorkerUrl } from './worker-url.js';

export interface WorkerPoolOptions {
  /** Sandbox worker threads (default: os.availableParallelism()). */
  workers?: number;
  /** Invocations that may wait for a worker; more are refused with OVERLOADED (default 1024). */
  maxQueue?: number;
  logger?: Logger;
  /** How long close() lets in-flight and queued invocations finish (default 10 s). */
  closeTimeoutMs?: number;
  /** The worker entry file (default: see worker-url.ts). */
  workerUrl?: URL;
}

export const DEFAULT_MAX_QUEUE = 1024;
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
  resolve: (result: InvocationResult) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type SlotState = 'starting' | 'idle' | 'busy' | 'gone';

interface Slot {
  worker: Worker;
  state: SlotState;
  /** Ids of the modules this worker holds. */
  modules: Set<number>;
  call: Call | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class WorkerPoolRuntime implements FunctionRuntime {
  private readonly size: number;
  private readonly maxQueue: number;
  private readonly logger: Logger;
  private readonly closeTimeoutMs: number;
  private readonly workerUrl: URL;
  private readonly cache = new ModuleCache();
  private readonly slots = new Set<Slot>();
  private readonly idle: Slot[] = [];
  private readonly queue: Call[] = [];
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

  constructor(options: WorkerPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.workers ?? availableParallelism()));
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? DEFAULT_MAX_QUEUE));
    this.logger = options.logger ?? silentLogger;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.workerUrl = options.workerUrl ?? defaultWorkerUrl();
    for (let i = 0; i < this.size; i++) this.spawn();
  }

  async load(digest: string, bytes: Uint8Array, memoryLimitMb: number): Promise<void> {
    await this.cache.load(digest, bytes, memoryLimitMb);
  }

  unload(digest: string): void {
    const ids = new Set(this.cache.unload(digest).map((m) => m.id));
    if (ids.size === 0) return;
    for (const slot of this.slots) {
      const held = [...slot.modules].filter((id) => ids.has(id));
      if (held.length === 0) continue;
      for (const id of held) slot.modules.delete(id);
      this.post(slot, { type: 'evict', moduleIds: held });
    }
  }

  stats(): RuntimeStats {
    let busy = 0;
    for (const slot of this.slots) if (slot.state === 'busy') busy++;
    return { workers: this.slots.size, busy, queued: this.queue.length, loadedModules: this.cache.size };
  }

  invoke(req: InvocationRequest, signal?: AbortSignal): Promise<InvocationResult> {
    if (this.closing) return Promise.reject(shuttingDown());
    if (signal?.aborted) return Promise.reject(signal.reason);
    const loaded = this.cache.get(req.digest, req.limits.memoryLimitMb);
    if (loaded === undefined) {
      return Promise.reject(new EngineError('INTERNAL', `module ${req.digest} is not loaded in the runtime`));
    }
    if (loaded instanceof Promise) return loaded.then(() => this.invoke(req, signal));
    return this.enqueue(req, loaded, signal);
  }

  private enqueue(req: InvocationRequest, loaded: LoadedModule, signal: AbortSignal | undefined): Promise<InvocationResult> {
    if (this.startError !== undefined && !this.anyWorkerUp()) {
      return Promise.reject(new EngineError('INTERNAL', `no sandbox worker could start: ${this.startError}`));
    }
    // Workers still starting will each take a call soon: those calls are not "queued beyond a bound".
    const starting = this.countState('starting');
    if (this.idle.length === 0 && this.queue.length >= this.maxQueue + starting) {
      return Promise.reject(
        new EngineError('OVERLOADED', `too many invocations: all ${this.size} sandboxes are busy and ${this.queue.length} calls are queued`, {
          retryAfterSeconds: 1,
        }),
      );
    }
    return new Promise<InvocationResult>((resolve, reject) => {
      const call: Call = {
        id: this.nextCallId++,
        loaded,
        // Only what the sandbox reads crosses to the worker (not the export list, not the digest).
        sandbox: {
          analysis: {
            abi: req.analysis.abi,
            entrypoint: req.analysis.entrypoint,
            ...(req.analysis.params ? { params: req.analysis.params } : {}),
            ...(req.analysis.results ? { results: req.analysis.results } : {}),
          },
          args: req.args,
          limits: { maxOutputBytes: req.limits.maxOutputBytes },
          ...(req.env && Object.keys(req.env).length > 0 ? { env: req.env } : {}),
          ...(req.stdin && req.stdin.length > 0 ? { stdin: req.stdin } : {}),
        },
        timeoutMs: req.limits.timeoutMs,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        call.onAbort = () => {
          const at = this.queue.indexOf(call);
          if (at < 0) return; // already running: it finishes or times out
          this.queue.splice(at, 1);
          reject(signal.reason);
          this.onSettled?.();
        };
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      this.queue.push(call);
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Let queued and running calls finish, within the bound.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.queue.length === 0 && this.countState('busy') === 0) done();
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
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    for (const call of this.queue.splice(0)) this.settle(call, shuttingDown());
    const stopping: Promise<number>[] = [];
    for (const slot of this.slots) {
      const call = slot.call;
      this.retire(slot);
      if (call) this.settle(call, new EngineError('FUNCTION_FAILED', 'the engine shut down before the function finished'));
      stopping.push(slot.worker.terminate());
    }
    await Promise.allSettled(stopping);
    this.logger.debug({}, 'sandbox workers stopped');
  }

  private anyWorkerUp(): boolean {
    for (const slot of this.slots) if (slot.state === 'idle' || slot.state === 'busy') return true;
    return false;
  }

  private countState(state: SlotState): number {
    let n = 0;
    for (const slot of this.slots) if (slot.state === state) n++;
    return n;
  }

  private spawn(): void {
    let worker: Worker;
    try {
      // No environment for the sandbox thread, and no inherited CLI flags (some are process-wide
      // only and would make the Worker constructor throw).
      worker = new Worker(this.workerUrl, { env: {}, execArgv: [] });
    } catch (err) {
      this.startFailed(err instanceof Error ? err.message : String(err));
      return;
    }
    // Idle workers must not keep the process alive; a running call's timer does.
    worker.unref();
    const slot: Slot = { worker, state: 'starting', modules: new Set(), call: undefined, timer: undefined };
    this.slots.add(slot);
    worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg));
    worker.on('error', (err: Error) => this.onDeath(slot, err.message));
    worker.on('exit', (code: number) => this.onDeath(slot, `exited with code ${code}`));
  }

  private post(slot: Slot, msg: ToWorker): void {
    slot.worker.postMessage(msg);
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    if (slot.state === 'gone') return;
    if (msg.type === 'ready') {
      slot.state = 'idle';
      this.startFailures = 0;
      this.startError = undefined;
      this.idle.push(slot);
      this.pump();
      return;
    }
    const call = slot.call;
    if (!call || call.id !== msg.id) return;
    clearTimeout(slot.timer);
    slot.call = undefined;
    slot.timer = undefined;
    slot.state = 'idle';
    this.idle.push(slot);
    if (msg.type === 'done') this.settle(call, undefined, msg.result);
    else this.settle(call, new EngineError(msg.code, msg.message));
    this.pump();
  }

  /** A worker died without being told to: its call fails, and a new worker replaces it. */
  private onDeath(slot: Slot, reason: string): void {
    if (slot.state === 'gone') return;
    const { state, call } = slot;
    this.retire(slot);
    if (state === 'starting') {
      this.startFailed(reason);
      return;
    }
    this.logger.warn({ reason, busy: call !== undefined }, 'sandbox worker crashed; replacing it');
    if (call) this.settle(call, new EngineError('FUNCTION_FAILED', 'the sandbox crashed while running the function'));
    if (!this.stopped) this.spawn();
  }

  /** A worker failed before it was ready: retried with a doubling delay, never in a tight loop. */
  private startFailed(reason: string): void {
    this.startFailures++;
    this.startError = reason;
    const delay = Math.min(RESPAWN_FIRST_MS * 2 ** (this.startFailures - 1), RESPAWN_MAX_MS);
    this.logger.error({ reason, failures: this.startFailures, retryInMs: delay }, 'sandbox worker failed to start');
    if (!this.anyWorkerUp()) {
      for (const call of this.queue.splice(0)) {
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
    const call = slot.call;
    if (!call || slot.state !== 'busy') return;
    this.retire(slot);
    void slot.worker.terminate();
    this.logger.warn({ timeoutMs: call.timeoutMs }, 'invocation timed out; its sandbox worker was terminated');
    this.settle(call, new EngineError('FUNCTION_TIMEOUT', `the function ran past its time limit of ${call.timeoutMs} ms`));
    if (!this.stopped) this.spawn();
  }

  /** Takes a slot out of service (its 'exit' event is then ignored). */
  private retire(slot: Slot): void {
    clearTimeout(slot.timer);
    slot.state = 'gone';
    slot.call = undefined;
    slot.timer = undefined;
    this.slots.delete(slot);
    const at = this.idle.indexOf(slot);
    if (at >= 0) this.idle.splice(at, 1);
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      this.run(this.idle.pop() as Slot, this.queue.shift() as Call);
    }
  }

  private run(slot: Slot, call: Call): void {
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    const msg: InvokeMessage = { type: 'invoke', id: call.id, moduleId: call.loaded.id, call: call.sandbox };
    if (!slot.modules.has(call.loaded.id)) {
      msg.module = call.loaded.module;
      if (call.loaded.unloaded) msg.keep = false;
      else slot.modules.add(call.loaded.id);
    }
    slot.state = 'busy';
    slot.call = call;
    slot.timer = setTimeout(() => this.onTimeout(slot), Math.min(call.timeoutMs, MAX_TIMER_MS));
    this.post(slot, msg);
  }

  private settle(call: Call, err: unknown, result?: InvocationResult): void {
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    if (err === undefined) call.resolve(result as InvocationResult);
    else call.reject(err);
    this.onSettled?.();
  }
}

function shuttingDown(): EngineError {
  return new EngineError('OVERLOADED', 'the engine is shutting down', { retryAfterSeconds: 1 });
}
