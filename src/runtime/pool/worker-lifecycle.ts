/**
 * The life of the pool's workers: their start, their deaths and their replacement. A worker that
 * dies without being told to fails the call it ran (one it had not started runs elsewhere, once)
 * and a new worker takes its place; one that fails to start is tried again after a doubling delay,
 * and while no worker is up the waiting calls fail instead of hanging. When a worker is stopped on
 * purpose (a deadline, see deadlines.ts; a preload, see preload.ts), the calls it held and had not
 * started are taken back to run elsewhere.
 */
import { EngineError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { WorkerReplaceReason } from '../types.js';
import { moved } from './deadlines.js';
import type { Call, Sent, Slot } from './pool-records.js';
import { busyModule, spawnSlot, withdraw, type SlotEvents, type SpawnOptions } from './worker-slot.js';

/** Respawn delays after a worker fails to start: doubling from the first to the last. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;

/** What the workers' lifecycle needs of the pool. */
export interface LifecycleHost {
  /** The pool's workers: a worker is in it from its start until it is retired. */
  readonly slots: Set<Slot>;
  readonly logger: Logger;
  readonly spawn: SpawnOptions;
  /** A message from a worker. */
  readonly message: SlotEvents['message'];
  settle(call: Call, err: unknown): void;
  /** Calls that never started wait again, at the head of the queue. */
  requeue(calls: Call[]): void;
  /** Every call waiting for a worker, taken out. */
  drain(): Call[];
  /** The worker died readying the module it was preloading (preload.ts failed). */
  preloadFailed(slot: Slot, reason: string): void;
  /** The worker is taken out of service: its share of a preload ends. */
  abandonPreload(slot: Slot): void;
  /** The worker died readying an instance outside any call (deadlines.ts blame). */
  blame(slot: Slot, busy: number, what: string): void;
}

export class WorkerLifecycle {
  private readonly events: SlotEvents;
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private startFailures = 0;
  private lastStartError: string | undefined;
  private isStopped = false;
  /** Workers of the first generation that have not yet said ready or failed. */
  private firstPending = 0;
  private firstStarted: (() => void)[] = [];
  private readonly replaced: Record<WorkerReplaceReason, number> = { deadline: 0, not_started: 0, preload: 0, crash: 0, out_of_memory: 0 };

  constructor(private readonly host: LifecycleHost) {
    this.events = { message: host.message, death: (slot, reason, outOfMemory) => this.onDeath(slot, reason, outOfMemory) };
  }

  /** Why the last worker failed to start, while no worker has started since. */
  get startError(): string | undefined {
    return this.lastStartError;
  }

  /** Set once close() has drained (or given up): from then on no worker is started. */
  get stopped(): boolean {
    return this.isStopped;
  }

  /** Workers replaced so far, by why. */
  get replacements(): Readonly<Record<WorkerReplaceReason, number>> {
    return this.replaced;
  }

  /** Starts the first generation of workers. */
  start(count: number): void {
    this.firstPending = count;
    for (let i = 0; i < count; i++) this.spawn();
  }

  /** Resolves once every first worker has started (or failed to: this never hangs). */
  ready(): Promise<void> {
    if (this.firstPending <= 0) return Promise.resolve();
    return new Promise((resolve) => this.firstStarted.push(resolve));
  }

  /** The worker said it is ready. */
  up(slot: Slot): void {
    this.firstDone();
    slot.state = 'up';
    this.startFailures = 0;
    this.lastStartError = undefined;
  }

  /** No worker is started from now on. */
  stop(): void {
    this.isStopped = true;
    for (const resolve of this.firstStarted.splice(0)) resolve();
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
  }

  anyWorkerUp(): boolean {
    for (const slot of this.host.slots) if (slot.state === 'up' || slot.state === 'preloading') return true;
    return false;
  }

  /** Takes a worker out of service and stops it; returns the new worker in its place (none once the pool has stopped). */
  replace(slot: Slot, reason: WorkerReplaceReason): Slot | undefined {
    this.replaced[reason]++;
    this.retire(slot);
    void slot.worker.terminate();
    return this.isStopped ? undefined : this.spawn();
  }

  /**
   * Before a worker is stopped: withdraws every call sent to it but `running`. Returns those that
   * had not started (to run elsewhere); any that had (it began as the deadline fell) is failed.
   */
  takeBack(slot: Slot, running: Sent | undefined): Call[] {
    const back: Call[] = [];
    for (const sent of slot.sent) {
      if (sent === running || sent.withdrawn) continue;
      if (withdraw(slot, sent)) back.push(sent.call);
      else this.host.settle(sent.call, new EngineError('FUNCTION_FAILED', 'the sandbox was stopped while running the function'));
    }
    return back;
  }

  /** Takes a slot out of service (its 'exit' event is then ignored); returns the calls it had. */
  retire(slot: Slot): Sent[] {
    clearTimeout(slot.timer);
    slot.state = 'gone';
    slot.timer = undefined;
    slot.running = undefined;
    slot.overdue = undefined;
    this.host.slots.delete(slot);
    this.host.abandonPreload(slot);
    return slot.sent.splice(0).filter((sent) => !sent.withdrawn);
  }

  private firstDone(): void {
    if (this.firstPending <= 0) return;
    this.firstPending--;
    if (this.firstPending === 0) for (const resolve of this.firstStarted.splice(0)) resolve();
  }

  private spawn(): Slot | undefined {
    let slot: Slot;
    try {
      slot = spawnSlot(this.host.spawn, this.events);
    } catch (err) {
      this.startFailed(err instanceof Error ? err.message : String(err));
      return undefined;
    }
    this.host.slots.add(slot);
    return slot;
  }

  /** A worker died without being told to: its call fails, and a new worker replaces it. */
  private onDeath(slot: Slot, reason: string, outOfMemory = false): void {
    if (slot.state === 'gone') return;
    const { heapMb } = this.host.spawn;
    if (slot.preload?.current) {
      this.host.preloadFailed(slot, outOfMemory ? `readying its first instance exhausted the sandbox's heap (${heapMb} MiB)` : `its sandbox crashed while readying its first instance (${reason})`);
      return;
    }
    const { state } = slot;
    let running = slot.running;
    const busy = busyModule(slot);
    // A call the worker had not started (it died readying an instance after an answer) runs
    // elsewhere, once: a call that kills workers before it starts must not go round them all.
    const requeue: Call[] = [];
    if (running && !running.call.moved && withdraw(slot, running)) {
      moved(running.call);
      requeue.push(running.call);
      running = undefined;
    }
    requeue.push(...this.takeBack(slot, running));
    this.retire(slot);
    if (state === 'starting') {
      this.startFailed(reason);
      return;
    }
    this.host.logger.warn({ reason, busy: running !== undefined }, 'sandbox worker crashed; replacing it');
    this.replaced[outOfMemory ? 'out_of_memory' : 'crash']++;
    if (running === undefined) this.host.blame(slot, busy, outOfMemory ? 'exhausted the sandbox heap' : 'crashed the sandbox');
    if (running) {
      const message = outOfMemory
        ? `the sandbox ran out of memory while running the function (its heap limit is ${heapMb} MiB; table entries count against it)`
        : 'the sandbox crashed while running the function';
      this.host.settle(running.call, new EngineError('FUNCTION_FAILED', message));
    }
    if (!this.isStopped) this.spawn();
    this.host.requeue(requeue);
  }

  /** A worker failed before it was ready: retried with a doubling delay, never in a tight loop. */
  private startFailed(reason: string): void {
    this.firstDone();
    this.startFailures++;
    this.lastStartError = reason;
    const delay = Math.min(RESPAWN_FIRST_MS * 2 ** (this.startFailures - 1), RESPAWN_MAX_MS);
    this.host.logger.error({ reason, failures: this.startFailures, retryInMs: delay }, 'sandbox worker failed to start');
    if (!this.anyWorkerUp()) {
      for (const call of this.host.drain()) {
        this.host.settle(call, new EngineError('INTERNAL', `no sandbox worker could start: ${reason}`));
      }
    }
    if (this.isStopped) return;
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (!this.isStopped) this.spawn();
    }, delay);
    timer.unref();
    this.respawnTimers.add(timer);
  }
}
