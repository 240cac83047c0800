/**
 * One function's concurrency bound (its OpenFaaS replicas times the concurrency of a replica): at
 * most `limit` invocations run at once, the rest wait in FIFO order up to `maxWaiting`, beyond which
 * they are refused with OVERLOADED rather than left hanging; so is one that waits past its time limit
 * (a call that cannot start within it is refused, SPEC §3). A limit of 0 pauses the function: new
 * invocations are refused with UNAVAILABLE and the waiting ones are released with the same error.
 */
import { EngineError } from '../errors.js';
import type { CancelSignal } from '../runtime/index.js';

interface Waiter {
  resolve: () => void;
  reject: (err: EngineError) => void;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  /** Detaches the abort listener once the waiter leaves the queue. */
  cleanup: (() => void) | undefined;
  /** Refused if still waiting then (performance.now() time). */
  startBy: number;
  limitMs: number;
}

/**
 * Where a gate keeps the numbers other threads read and change (the HTTP threads' inline calls,
 * src/api/threads): an Int32Array on a SharedArrayBuffer, used only through Atomics.
 */
export const GATE_LIMIT = 0;
export const GATE_RUNNING = 1;
/** Invocations waiting on this thread's queue: while any wait, no other thread takes a slot before them. */
export const GATE_WAITING = 2;
const GATE_CELLS = 3;
/** Int32 cells hold the limit: a larger (or unbounded) one is this. */
const LIMIT_CELL_MAX = 0x7fffffff;

/**
 * Takes a slot of a gate from its cells, as tryEnter does, on any thread: free and nobody waiting.
 * The gate's owner learns of the slot when it is given back (releaseGateCell).
 */
export function tryTakeGateCell(cells: Int32Array): boolean {
  for (;;) {
    const running = Atomics.load(cells, GATE_RUNNING);
    if (running >= Atomics.load(cells, GATE_LIMIT) || Atomics.load(cells, GATE_WAITING) !== 0) return false;
    if (Atomics.compareExchange(cells, GATE_RUNNING, running, running + 1) === running) return true;
  }
}

/** Gives back a slot taken by tryTakeGateCell; true when the owner has waiters to wake (FunctionGate.wake). */
export function releaseGateCell(cells: Int32Array): boolean {
  Atomics.sub(cells, GATE_RUNNING, 1);
  return Atomics.load(cells, GATE_WAITING) !== 0;
}

export class FunctionGate {
  /** LIMIT, RUNNING (this thread's slots and other threads' alike) and WAITING, shared with the HTTP threads. */
  readonly cells = new Int32Array(new SharedArrayBuffer(GATE_CELLS * Int32Array.BYTES_PER_ELEMENT));
  private waitingCount = 0;
  // A doubly linked list: a waiter whose client went away leaves from the middle in O(1).
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  /** One timer for the waiters' deadlines, armed for the earliest while any waits. */
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepAt = Infinity;

  constructor(
    private readonly name: string,
    private limit: number,
    private readonly maxWaiting: number,
  ) {
    this.storeLimit();
  }

  get active(): number {
    return Atomics.load(this.cells, GATE_RUNNING);
  }

  get waiting(): number {
    return this.waitingCount;
  }

  get paused(): boolean {
    return this.limit === 0;
  }

  /** Takes a slot at once when one is free and nobody waits before us; the common, allocation-free path. */
  tryEnter(): boolean {
    return this.waitingCount === 0 && this.take();
  }

  /** One slot, if one is free: a compare-and-swap, as other threads take slots too. */
  private take(): boolean {
    const cells = this.cells;
    for (;;) {
      const running = Atomics.load(cells, GATE_RUNNING);
      if (running >= this.limit) return false;
      if (Atomics.compareExchange(cells, GATE_RUNNING, running, running + 1) === running) return true;
    }
  }

  /**
   * Waits for a slot; rejects when paused, when too many wait already, when `signal` aborts, or
   * (OVERLOADED) when no slot is free within `limitMs`.
   */
  enter(signal?: CancelSignal, limitMs = Infinity): Promise<void> {
    if (this.limit === 0) return Promise.reject(this.pausedError());
    if (this.waitingCount >= this.maxWaiting) {
      return Promise.reject(
        new EngineError('OVERLOADED', `too many invocations of ${this.name} are waiting (${this.waitingCount})`, {
          retryAfterSeconds: 1,
        }),
      );
    }
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<void>((resolve, reject) => {
      const now = performance.now();
      const waiter: Waiter = { resolve, reject, prev: this.tail, next: undefined, cleanup: undefined, startBy: now + limitMs, limitMs };
      if (this.tail) this.tail.next = waiter;
      else this.head = waiter;
      this.tail = waiter;
      this.waitingCount += 1;
      Atomics.store(this.cells, GATE_WAITING, this.waitingCount);
      if (signal) {
        const onAbort = (): void => {
          this.unlink(waiter);
          reject(cancelled());
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      if (waiter.startBy < this.sweepAt) this.armSweep(waiter.startBy, now);
      // Another thread may have given its slot back between our failed take and the store of
      // WAITING above, without seeing a waiter to wake: look again.
      this.dispatch();
    });
  }

  private armSweep(at: number, now: number): void {
    clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    // setTimeout fires at once past 2^31-1 ms: a later deadline is looked at again then.
    this.sweepTimer = setTimeout(this.sweep, Math.min(Math.max(1, Math.ceil(at - now)), 2 ** 31 - 1));
    this.sweepTimer.unref();
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    this.sweepAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (let waiter = this.head; waiter !== undefined; ) {
      const following = waiter.next;
      // Within a millisecond is due: timers have millisecond precision.
      if (waiter.startBy - now <= 1) {
        this.unlink(waiter);
        waiter.reject(
          new EngineError('OVERLOADED', `the invocation of ${this.name} could not start within its time limit of ${waiter.limitMs} ms: its earlier invocations held every slot`, {
            retryAfterSeconds: 1,
          }),
        );
      } else next = Math.min(next, waiter.startBy);
      waiter = following;
    }
    if (next !== Infinity) this.armSweep(next, now);
  };

  /** Gives back a slot taken by tryEnter or enter. */
  leave(): void {
    Atomics.sub(this.cells, GATE_RUNNING, 1);
    this.dispatch();
  }

  /** Another thread gave back a slot while invocations waited here. */
  wake(): void {
    this.dispatch();
  }

  /** Changes the bound: a raise lets waiters in, 0 pauses and releases every waiter with UNAVAILABLE. */
  setLimit(limit: number): void {
    this.limit = limit;
    this.storeLimit();
    if (limit === 0) this.rejectAll(this.pausedError());
    else this.dispatch();
  }

  /** Releases every waiter with `err` (the function was deleted). */
  rejectAll(err: EngineError): void {
    while (this.head) {
      const waiter = this.head;
      this.unlink(waiter);
      waiter.reject(err);
    }
  }

  private storeLimit(): void {
    Atomics.store(this.cells, GATE_LIMIT, Math.min(this.limit, LIMIT_CELL_MAX));
  }

  private dispatch(): void {
    while (this.head && this.take()) {
      const waiter = this.head;
      this.unlink(waiter);
      waiter.resolve();
    }
  }

  private unlink(waiter: Waiter): void {
    if (waiter.prev) waiter.prev.next = waiter.next;
    else if (this.head === waiter) this.head = waiter.next;
    else return; // already gone
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.tail = waiter.prev;
    waiter.prev = undefined;
    waiter.next = undefined;
    this.waitingCount -= 1;
    Atomics.store(this.cells, GATE_WAITING, this.waitingCount);
    waiter.cleanup?.();
    if (this.head === undefined && this.sweepTimer !== undefined) {
      clearTimeout(this.sweepTimer);
      this.sweepTimer = undefined;
      this.sweepAt = Infinity;
    }
  }

  private pausedError(): EngineError {
    return new EngineError('UNAVAILABLE', `function ${this.name} is scaled to zero replicas`, { retryAfterSeconds: 1 });
  }
}

function cancelled(): EngineError {
  return new EngineError('UNAVAILABLE', 'invocation cancelled: the client went away');
}
