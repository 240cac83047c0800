/**
 * Scheduling: which waiting call goes to which worker, and when. Calls wait in a queue
 * (call-queue.ts); calls of guarded functions (fairness.ts) that may not start yet wait in
 * `parked` and take an idle worker in their turn (oldest call first, parked or queued). Idle
 * workers are given calls first, then workers with room in their pipeline (worker-slot.ts); a
 * worker that is idle while another holds a call it has not started takes that call over once
 * that call has waited STEAL_AFTER_MS. Nothing waits in a worker behind a guarded call: the watch
 * (a timer running while anything runs or waits) takes such calls back. No call waits longer
 * than its time limit to start: the watch refuses with OVERLOADED any call queued, parked or held
 * in a worker past `startBy` (its arrival at the engine plus its time limit). What happens to the
 * workers themselves is deadlines.ts's business (deadlines) and worker-lifecycle.ts's (deaths, respawn).
 */
import { EngineError } from '../../errors.js';
import { FifoQueue, type CallQueue } from './call-queue.js';
import { SLOW_CALL_MS, markSlow, mayStartGuarded } from './fairness.js';
import type { Call, Slot } from './pool-records.js';
import { MAX_TIMER_MS, live, started, withdraw } from './worker-slot.js';

/**
 * An idle worker takes over a call waiting behind one that has run this long. Sooner would move
 * calls that were about to start anyway (a message and a thread wake-up each, for nothing).
 */
const STEAL_AFTER_MS = 2;
/** The watch's period while anything runs or waits. */
const WATCH_MS = 10;

/** What the scheduler needs of the pool. */
export interface SchedulerHost {
  readonly slots: ReadonlySet<Slot>;
  /** Workers in the pool. */
  readonly size: number;
  /** Calls a worker is given at once. */
  readonly depth: number;
  /** The pool has stopped: nothing is scheduled any more. */
  stopped(): boolean;
  anyWorkerUp(): boolean;
  /** Sends a call to a worker; false when the worker has no free cell for it. */
  send(slot: Slot, call: Call): boolean;
  settle(call: Call, err: unknown): void;
}

export class Scheduler {
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
  /** A later look for calls to take over (see rebalance). */
  private rebalanceTimer: NodeJS.Timeout | undefined;

  constructor(private readonly host: SchedulerHost) {}

  /** Calls waiting for a worker here (not those held by workers). */
  get waiting(): number {
    return this.queue.size + this.parked.size;
  }

  /** A new call waits for a worker. */
  add(call: Call): void {
    this.queue.push(call);
    this.watchOn();
    this.pump();
  }

  /** Drops a waiting call; false when it was not waiting here. */
  remove(call: Call): boolean {
    return this.queue.remove(call) || this.parked.remove(call);
  }

  /** Every waiting call, taken out. */
  drain(): Call[] {
    return [...this.queue.drain(), ...this.parked.drain()];
  }

  /** The watch runs from now while anything runs or waits. */
  watchOn(): void {
    if (this.watchTimer === undefined) this.armWatch();
  }

  /** No more timers: the pool is stopping. */
  stop(): void {
    clearTimeout(this.rebalanceTimer);
    clearTimeout(this.watchTimer);
  }

  /** Sends a call to a worker; false when it could not take it (the call is back at the head of the queue). */
  private send(slot: Slot, call: Call): boolean {
    if (!this.host.send(slot, call)) {
      this.queue.unshift([call]);
      return false;
    }
    this.watchOn();
    return true;
  }

  /** Puts calls that never started back at the head of the queue, in their order. */
  requeue(calls: Call[]): void {
    const waiting = calls.filter((call) => !call.settled);
    if (waiting.length === 0) return;
    this.queue.unshift(waiting);
    this.watchOn();
    this.pump();
  }

  /**
   * Gives queued calls to workers: idle workers first, then workers with room in their pipeline.
   * A worker that is idle while another holds a call it has not started takes that call over.
   */
  pump(): void {
    if (this.host.stopped()) return;
    this.parkedReady = false;
    if (this.parked.size > 0) this.unpark();
    // Idle workers first, the one that answered last first: it is the likeliest to be still awake,
    // and a post to a sleeping worker costs the HTTP thread a thread wake-up.
    while (this.queue.size > 0) {
      const best = this.idleSlot();
      if (best === undefined) break;
      const call = this.queue.shift() as Call;
      if (call.loaded.guarded && !mayStartGuarded(this.host.slots, this.host.size, call.loaded, performance.now())) {
        this.parked.push(call);
        continue;
      }
      // A worker whose every cell is held by withdrawn calls takes none now (send gives it back).
      if (!this.send(best, call)) break;
    }
    // No worker holds a call behind a guarded one, and none is given any while a parked call waits
    // for a worker to go idle (it would otherwise wait for as long as calls keep coming).
    for (let level = 1; level < this.host.depth && this.queue.size > 0 && !this.parkedReady; level++) {
      for (const slot of this.host.slots) {
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
    if (this.host.depth > 1 && this.queue.size === 0) this.rebalance();
  }

  /** The idle worker to send a call to: the one that answered last (see pump). */
  private idleSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.host.slots) {
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
      if (!mayStartGuarded(this.host.slots, this.host.size, call.loaded, now)) return true;
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
    if (this.host.stopped()) return;
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
    if (this.host.stopped()) return;
    const now = performance.now();
    // Time this thread was too busy to run the watch is not counted against a running call: its
    // answer may be waiting behind that work.
    const seen = Math.min(now, this.watchDue);
    let active = this.queue.size > 0 || this.parked.size > 0;
    for (const slot of this.host.slots) {
      const running = slot.running;
      if (slot.state !== 'up' || running === undefined) continue;
      active = true;
      const ranFor = seen - slot.runningSince;
      // A call its worker has not taken yet is not slow: the worker is (a stalled thread, say).
      if (ranFor >= SLOW_CALL_MS && started(slot, running)) markSlow(running.call.loaded, now, ranFor);
    }
    let back: Call[] | undefined;
    for (const slot of this.host.slots) {
      const running = slot.running;
      if (slot.state !== 'up' || running === undefined || slot.sent.length < 2) continue;
      for (const sent of slot.sent) {
        if (sent === running || sent.withdrawn) continue;
        const late = now >= sent.call.startBy;
        if (!late && !running.call.loaded.guarded && !sent.call.loaded.guarded) continue;
        // Not withdrawn: it started meanwhile.
        if (!withdraw(slot, sent)) continue;
        if (late) this.host.settle(sent.call, notStarted(sent.call));
        else (back ??= []).push(sent.call);
      }
    }
    if (back) this.queue.unshift(back);
    if (!this.host.anyWorkerUp()) {
      // Every worker is being started or replaced: waiting for one is not counted against the
      // calls' time to start (it is the engine's doing, and short; a worker that cannot start
      // fails the calls, see worker-lifecycle.ts startFailed).
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
      this.host.settle(call, notStarted(call));
      return false;
    });
  }

  private rebalance(): void {
    const now = performance.now();
    let soonest = Infinity;
    for (const idle of this.host.slots) {
      if (idle.state !== 'up' || live(idle) > 0) continue;
      for (const busy of this.host.slots) {
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
}

/** What a call that could not start within its time limit ends with (the function gate says the same). */
function notStarted(call: Call): EngineError {
  return new EngineError('OVERLOADED', `the invocation could not start within its time limit of ${call.timeoutMs} ms: the sandboxes were busy`, {
    retryAfterSeconds: 1,
  });
}
