/**
 * Runs a call on the thread that read it (the HTTP thread), within a short budget, before the pool
 * is asked: a small function then costs no thread hop and no wake-up of a worker.
 *
 * The instance semantics are the workers' own: one InstanceRunner per module and ABI, a fresh
 * instance per call or the exact-reuse snapshot (instance-runner.ts), the same output, stderr and
 * table caps, and the module's memory maximum. The preemption checks compiled into the module
 * (preempt/inject.ts) ask this thread's clock whether the call may go on: once the budget is
 * spent, or before a single bulk instruction of more than INLINE_MAX_BULK_PAGES, the guest traps
 * itself. Such a call is abandoned and run again from the start in the pool: a guest has no effect
 * outside its own instance until it returns (its output, stderr and log lines are only read from
 * a call that returned), and the instance it ran in is discarded, so the second run is the only
 * one anybody sees. A call whose own time limit is within the budget is answered FUNCTION_TIMEOUT
 * here when it reaches it. A call that failed on a RangeError (the call stack, which is smaller
 * here than in a worker, or an allocation) is run again in the pool too, so that its answer does
 * not depend on where it ran.
 *
 * Functions whose calls keep being abandoned skip the attempt: after an abandoned call the next
 * SKIP_FIRST calls of that module go straight to the pool, twice as many after each further
 * abandoned attempt (up to SKIP_MAX), and back to SKIP_FIRST once a call completes here. Heavier
 * functions go there too: guest time spent on this thread is taken from every request it reads,
 * while the OS shares the cores between this thread and the workers. A module whose calls here
 * take more than `heavyMs` on average (a moving average; --inline-heavy-us) sends its next
 * HEAVY_SKIP calls to the pool, then tries a window of calls here again; the hop to a worker
 * costs a few tens of microseconds, which such calls outweigh. What enters the average is the
 * shortest of every HEAVY_WINDOW calls in a row, clipped at twice the bound: on a busy machine
 * the OS runs other threads in the middle of calls (and a GC pause lands in one now and then),
 * and by the clock a 15 µs call then often looked heavy, while a heavy function is heavy in every
 * call. (The thread's CPU time would say it directly, but Node reads it from the scheduler's
 * ticks, milliseconds apart.) A module's first HEAVY_GRACE calls on a thread are not counted: they
 * run before this thread's code for it is optimized, and a module judged heavy then would seldom
 * run here again, and so stay cold here.
 *
 * What the checks cannot reach is excluded by module (inline/eligibility.ts): start functions,
 * large binaries or initial memories, shared memories, WASI sleeps.
 */
import { EngineError, toEngineError } from '../../errors.js';
import type { SandboxCall } from '../abi/call.js';
import { InstanceRunner } from '../instance-runner.js';
import { PreemptClock, timeLimitError } from '../preempt/clock.js';
import type { Abi, InvocationResult } from '../types.js';
import type { LoadedModule } from '../pool/module-cache.js';

/** Default of --inline-budget-ms: the longest a call runs on the HTTP thread before it moves to the pool. */
export const DEFAULT_INLINE_BUDGET_MS = 2;
/** 16 MiB: a single memory.fill, copy, init or grow larger than this moves the call to the pool. */
export const INLINE_MAX_BULK_PAGES = 256;
/** Calls sent straight to the pool after one was abandoned here; doubled per further abandon. */
export const SKIP_FIRST = 16;
export const SKIP_MAX = 1024;
/** Default of --inline-heavy-us: the average time of a module's inline calls past which they go to the pool (see the header). */
export const DEFAULT_INLINE_HEAVY_US = 50;
export const HEAVY_SKIP = 63;
/** Calls of a module on a thread that the heavy rule does not count (see the header). */
export const HEAVY_GRACE = 512;
/** Calls in a row whose shortest enters the heavy rule's average (see the header). */
export const HEAVY_WINDOW = 4;
/** An entry's key: its module's id times ABI_KEYS plus its ABI's number. */
const ABI_KEY: Readonly<Record<Abi, number>> = { numeric: 0, string: 1, wasi: 2 };
const ABI_KEYS = 3;
/** Guest memory kept in idle instances on this thread (as a worker's default). */
const DEFAULT_INSTANCE_BYTES = 64 * 1024 * 1024;
/** Calls between checks of that bound (summing every runner's memory per call would cost more than small calls run). */
const TRIM_EVERY = 32;

export interface InlineExecutorOptions {
  /** The budget per call, in milliseconds (> 0). */
  budgetMs: number;
  /** As the pool's reuseInstances: false gives every call a fresh instance. */
  reuseInstances: boolean;
  instanceBytes?: number;
  /** See the header; 0: no bound. */
  heavyMs: number;
}

export interface InlineStats {
  /** Calls answered here. */
  ran: number;
  /** Calls abandoned here and handed to the pool. */
  abandoned: number;
  /** Calls answered FUNCTION_TIMEOUT here, stopped by their own checks (counted in `ran` too). */
  stopped: number;
}

/** What running a module inline needs of it: a pool's LoadedModule, or an HTTP thread's copy of one. */
export type InlineModule = Pick<LoadedModule, 'id' | 'module' | 'state' | 'noReuse' | 'notInline' | 'unloaded'>;

interface Entry {
  loaded: InlineModule;
  runner: InstanceRunner;
  /** Calls still to send straight to the pool. */
  skip: number;
  /** What `skip` becomes after the next abandoned call. */
  nextSkip: number;
  settlePending: boolean;
  /** Moving average of its calls' time here, in milliseconds (see the header). */
  averageMs: number;
  /** Calls still to run here before the heavy rule counts them. */
  grace: number;
  /** The shortest call of the current window, and how many calls it has seen. */
  windowMs: number;
  windowCalls: number;
}

export class InlineExecutor {
  private readonly clock = new PreemptClock();
  /** By module id and ABI (a number: a string key would be built and hashed per call), least recently used first. */
  private readonly entries = new Map<number, Entry>();
  /** The entry last moved to the end of `entries`, while it is there. */
  private newest: Entry | undefined;
  private readonly instanceBytes: number;
  private sinceTrim = 0;
  readonly stats: InlineStats = { ran: 0, abandoned: 0, stopped: 0 };

  constructor(private readonly options: InlineExecutorOptions) {
    this.instanceBytes = options.instanceBytes ?? DEFAULT_INSTANCE_BYTES;
  }

  /** As run, as a promise: what the pool asks. */
  invoke(loaded: InlineModule, call: SandboxCall, timeoutMs: number): Promise<InvocationResult> | undefined {
    const ran = this.run(loaded, call, timeoutMs);
    if (ran === undefined) return undefined;
    return ran instanceof EngineError ? Promise.reject(ran) : Promise.resolve(ran);
  }

  /**
   * The call's outcome when it ended here (an answer, or the EngineError a worker would have
   * given), at once; undefined when it is the pool's to run (not eligible, skipped, or abandoned).
   * An HTTP thread answers from it in the same turn (no promise, and no watch for a client that
   * goes away: the call is over before it could).
   */
  run(loaded: InlineModule, call: SandboxCall, timeoutMs: number): InvocationResult | EngineError | undefined {
    if (loaded.notInline !== undefined || loaded.unloaded) return undefined;
    const key = loaded.id * ABI_KEYS + ABI_KEY[call.abi];
    let entry = this.entries.get(key);
    if (entry) {
      if (entry.skip > 0) {
        entry.skip--;
        return undefined;
      }
      // Moved to the end (most recently used) unless it is there already, as it is for a run of calls of one module.
      if (entry !== this.newest) {
        this.entries.delete(key);
        this.entries.set(key, entry);
      }
    } else {
      const noReuse = this.options.reuseInstances ? loaded.noReuse : 'instance reuse is off';
      const runner = new InstanceRunner(loaded.module, call.abi, loaded.state, noReuse, this.clock);
      entry = { loaded, runner, skip: 0, nextSkip: SKIP_FIRST, settlePending: false, averageMs: 0, grace: HEAVY_GRACE, windowMs: Infinity, windowCalls: 0 };
      this.sinceTrim = TRIM_EVERY;
      this.entries.set(key, entry);
    }
    this.newest = entry;

    // The call's time limit counts from here, as in a worker. The budget counts from when guest
    // code starts: readying the instance (a restore, or an instantiation, which eligible modules
    // make without guest code) is bounded by eligibility and cannot be stopped by the checks, so a
    // call abandoned for it would only throw away the instance it paid for — and its successor
    // would pay again, within the same budget, on a busy machine again and again.
    const started = performance.now();
    const limitAt = started + timeoutMs;
    entry.runner.prepare();
    const budgetAt = performance.now() + this.options.budgetMs;
    this.clock.arm(Math.min(limitAt, budgetAt), INLINE_MAX_BULK_PAGES);
    let result: InvocationResult | undefined;
    let failure: unknown;
    try {
      result = entry.runner.run(call);
    } catch (err) {
      failure = err;
    }
    const stopped = this.clock.disarm();
    this.settleLater(entry);
    if (stopped === undefined && !(failure instanceof EngineError && failure.cause instanceof RangeError)) {
      entry.nextSkip = SKIP_FIRST;
      this.stats.ran++;
      if (result !== undefined && this.options.heavyMs > 0) this.weigh(entry, performance.now() - started);
      return failure === undefined ? (result as InvocationResult) : toEngineError(failure);
    }
    if (stopped === 'deadline' && limitAt <= budgetAt) {
      this.stats.ran++;
      this.stats.stopped++;
      return timeLimitError(timeoutMs);
    }
    this.stats.abandoned++;
    entry.skip = entry.nextSkip;
    entry.nextSkip = Math.min(entry.nextSkip * 2, SKIP_MAX);
    return undefined;
  }

  /** The heavy rule (see the header), after a call that completed here in `ms`. */
  private weigh(entry: Entry, ms: number): void {
    const heavyMs = this.options.heavyMs;
    if (entry.grace > 0) {
      entry.grace--;
      return;
    }
    entry.windowMs = Math.min(entry.windowMs, ms);
    if (++entry.windowCalls < HEAVY_WINDOW) return;
    entry.averageMs += (Math.min(entry.windowMs, 2 * heavyMs) - entry.averageMs) / 8;
    entry.windowMs = Infinity;
    entry.windowCalls = 0;
    // Judged per window, so that a heavy module comes back for a whole window of calls in a row:
    // a lone call after a pause runs with cold caches, and took twice as long as the next ones.
    if (entry.averageMs > heavyMs) entry.skip = HEAVY_SKIP;
  }

  /** Bytes of guest memory kept in idle instances here (read when reported, never per call). */
  get idleInstanceBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.runner.memoryBytes;
    return total;
  }

  /**
   * Drops the instances of modules no function uses any more, now: called when a module is
   * unloaded, so that an idle thread does not keep an old module and its instances alive until
   * its next calls trim them.
   */
  dropUnloaded(): void {
    for (const [key, entry] of this.entries) {
      if (!entry.loaded.unloaded) continue;
      entry.runner.dispose();
      this.forget(key, entry);
    }
  }

  /** Drops every instance (the engine stops). */
  dispose(): void {
    for (const entry of this.entries.values()) entry.runner.dispose();
    this.entries.clear();
    this.newest = undefined;
  }

  private forget(key: number, entry: Entry): void {
    this.entries.delete(key);
    if (entry === this.newest) this.newest = undefined;
  }

  /**
   * Readies the runner's next instance after the answer is on its way, as a worker does after
   * posting it (restore, or a new instance: no guest code runs, eligible modules have no start
   * function). A call that comes first settles it itself.
   */
  private settleLater(entry: Entry): void {
    if (entry.settlePending) return;
    entry.settlePending = true;
    setImmediate(() => {
      entry.settlePending = false;
      if (entry.loaded.unloaded) {
        entry.runner.dispose();
        return;
      }
      entry.runner.settle();
      if (++this.sinceTrim >= TRIM_EVERY) {
        this.sinceTrim = 0;
        this.trim();
      }
    });
  }

  /** Drops unloaded modules' runners, then the least recently used ones' instances until the idle ones fit the budget. */
  private trim(): void {
    let total = 0;
    for (const [key, entry] of this.entries) {
      if (entry.loaded.unloaded) {
        entry.runner.dispose();
        this.forget(key, entry);
      } else total += entry.runner.memoryBytes;
    }
    for (const [key, entry] of this.entries) {
      if (total <= this.instanceBytes) break;
      total -= entry.runner.memoryBytes;
      entry.runner.dispose();
      this.forget(key, entry);
    }
  }
}
