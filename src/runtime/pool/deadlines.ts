/**
 * Deadlines of the calls on the workers, and what happens past them. A call's deadline runs from
 * when its worker moved on to it (startNext), under one timer per worker kept from call to call.
 *
 * A call past its deadline on a worker stops itself: the worker arms its preemption clock with the
 * call's time limit (worker.ts), the module's checks trap the guest, and the worker answers
 * FUNCTION_TIMEOUT and serves on. The pool answers the client FUNCTION_TIMEOUT at the deadline
 * whatever the worker does, and terminates the worker only when it has not said the call ended
 * within SELF_STOP_GRACE_MS after it (what the checks cannot reach: a blocking host call, a module
 * the rewrite left without checks); a fresh worker then takes its place while every other call
 * carries on, and calls the worker held and had not started run elsewhere. A call its worker had
 * not started by its deadline runs on another, once; a worker stuck readying an instance outside
 * any call is replaced, and that module's instances are made only inside its calls from then on
 * (blame). Stopping and replacing a worker is worker-lifecycle.ts's.
 */
import type { Logger } from '../../logger.js';
import { timeLimitError } from '../preempt/clock.js';
import type { WorkerReplaceReason } from '../types.js';
import type { LoadedModule } from './module-cache.js';
import type { Call, Sent, Slot } from './pool-records.js';
import { MAX_TIMER_MS, busyModule, ended, post, withdraw } from './worker-slot.js';

/**
 * How long after a call's deadline its worker may take to say the call ended (its cell, see
 * protocol.ts CellState.ENDED) before it is terminated. The checks stop a loop microseconds after
 * the worker's own deadline, so this covers the worker's thread waiting for a core on a busy
 * machine, where a shorter grace terminates workers that were about to stop. The client is
 * answered at the deadline either way and idle workers take over the calls a stuck worker holds:
 * waiting only starts a stuck worker's replacement later, by about the time a replacement takes to
 * be ready (docs/runtime.md has the measurements).
 */
export const SELF_STOP_GRACE_MS = 100;

/** What the deadlines need of the pool. */
export interface DeadlineHost {
  readonly slots: ReadonlySet<Slot>;
  readonly logger: Logger;
  settle(call: Call, err: unknown): void;
  /** Withdraws every call sent to a worker but `running`; returns those that had not started (worker-lifecycle.ts). */
  takeBack(slot: Slot, running: Sent | undefined): Call[];
  /** Stops a worker and starts another in its place. */
  replace(slot: Slot, reason: WorkerReplaceReason): void;
  /** Calls that never started wait again, at the head of the queue. */
  requeue(calls: Call[]): void;
}

export class Deadlines {
  /** Modules whose instances workers make only inside calls (see blame). */
  private readonly lazy = new WeakSet<LoadedModule>();

  constructor(private readonly host: DeadlineHost) {}

  /** The worker has moved on to its next call: that one's deadline runs from now. */
  startNext(slot: Slot): void {
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

  /** Whether workers are to make this module's instances only inside its calls (see blame). */
  isLazy(loaded: LoadedModule): boolean {
    return this.lazy.has(loaded);
  }

  /**
   * A worker was stopped while it readied an instance of module `busy` outside any call (its
   * start function looped, or exhausted the heap): that module's instances are from now on made
   * only inside its own calls, under their deadlines, in every worker.
   */
  blame(slot: Slot, busy: number, what: string): void {
    const loaded = slot.lastModule;
    if (busy === 0 || loaded === undefined || loaded.id !== busy || this.lazy.has(loaded)) return;
    this.lazy.add(loaded);
    this.host.logger.warn({ digest: loaded.digest, timeoutMs: slot.lastTimeoutMs }, `readying an instance of a module after a call ${what}: its instances are now made inside its calls`);
    for (const other of this.host.slots) if (other.modules.has(loaded.id)) post(other, { type: 'lazy', moduleIds: [loaded.id] });
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

  private onTimeout(slot: Slot): void {
    const running = slot.running;
    if (!running || slot.state === 'gone') return;
    if (!running.call.moved && withdraw(slot, running)) {
      // Not started by its deadline: the worker is stuck outside any call (readying an instance
      // after an answer, see BUSY_CELL). It is replaced, and the call runs on another, once.
      moved(running.call);
      const busy = busyModule(slot);
      const requeue = [running.call, ...this.host.takeBack(slot, undefined)];
      this.host.replace(slot, 'not_started');
      this.host.logger.warn({ timeoutMs: running.call.timeoutMs }, 'a sandbox worker did not start a call by its deadline; it was terminated and the call moved');
      this.blame(slot, busy, 'ran past its time limit');
      this.host.requeue(requeue);
      return;
    }
    // Ended in the worker, its answer not read yet (this thread was busy): that answer is the call's.
    if (ended(slot, running)) return;
    const { call } = running;
    if (slot.overdue !== running) {
      // The client has its answer now; the worker, whose checks stop the call, has a grace to say so.
      this.host.settle(call, timeLimitError(call.timeoutMs));
      slot.overdue = running;
      const now = performance.now();
      slot.deadline = now + SELF_STOP_GRACE_MS;
      this.armDeadline(slot, now);
      return;
    }
    // Withdraw the calls waiting behind it first, so that none can start while the worker stops.
    const requeue = this.host.takeBack(slot, running);
    this.host.replace(slot, 'deadline');
    this.host.logger.warn({ timeoutMs: call.timeoutMs, graceMs: SELF_STOP_GRACE_MS }, 'invocation timed out and did not stop itself; its sandbox worker was terminated');
    this.host.requeue(requeue);
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
    const requeue = this.host.takeBack(slot, undefined);
    this.host.replace(slot, 'deadline');
    this.blame(slot, busy, 'ran past its time limit');
    this.host.requeue(requeue);
  }
}

/** A call taken back from a worker that never started it: it waits again, and may be cancelled again. */
export function moved(call: Call): void {
  call.moved = true;
  // It was given a worker in time, which never started it: its time to start begins again.
  call.startBy = performance.now() + Math.min(call.timeoutMs, MAX_TIMER_MS);
  if (call.signal && call.onAbort) call.signal.addEventListener('abort', call.onAbort, { once: true });
}
