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
 * functions go there too: this is one thread, and guest time spent on it is taken from every
 * other request, while the pool runs calls on every core. A module whose calls here take more than
 * `heavyMs` on average (a moving average; --inline-heavy-us) sends its next HEAVY_SKIP calls to the
 * pool, then tries one here again; the hop to a worker costs a few tens of microseconds, which such
 * calls outweigh. Each call's time enters the average clipped at twice the bound, so that it takes
 * several heavy calls, not one slow moment, to send a module away. A module's first call here (its instantiation included) is not counted.
 *
 * What the checks cannot reach is excluded by module (inline/eligibility.ts): start functions,
 * large binaries or initial memories, shared memories, WASI sleeps.
 */
import { EngineError, toEngineError } from '../../errors.js';
import type { SandboxCall } from '../abi/call.js';
import { InstanceRunner } from '../instance-runner.js';
import { PreemptClock, timeLimitError } from '../preempt/clock.js';
import type { InvocationResult } from '../types.js';
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
  /** Moving average of its calls' time here, in milliseconds; undefined before its first call. */
  averageMs: number | undefined;
}

export class InlineExecutor {
  private readonly clock = new PreemptClock();
  /** By `moduleId abi`, least recently used first. */
  private readonly entries = new Map<string, Entry>();
  private readonly instanceBytes: number;
  private sinceTrim = 0;
  readonly stats: InlineStats = { ran: 0, abandoned: 0, stopped: 0 };

  constructor(private readonly options: InlineExecutorOptions) {
    this.instanceBytes = options.instanceBytes ?? DEFAULT_INSTANCE_BYTES;
  }

  /**
   * The call's outcome when it ended here (an answer, or the EngineError a worker would have
   * given); undefined when it is the pool's to run (not eligible, skipped, or abandoned).
   */
  invoke(loaded: InlineModule, call: SandboxCall, timeoutMs: number): Promise<InvocationResult> | undefined {
    if (loaded.notInline !== undefined || loaded.unloaded) return undefined;
    const key = `${loaded.id} ${call.abi}`;
    let entry = this.entries.get(key);
    if (entry) {
      if (entry.skip > 0) {
        entry.skip--;
        return undefined;
      }
      this.entries.delete(key);
    } else {
      const noReuse = this.options.reuseInstances ? loaded.noReuse : 'instance reuse is off';
      const runner = new InstanceRunner(loaded.module, call.abi, loaded.state, noReuse, this.clock);
      entry = { loaded, runner, skip: 0, nextSkip: SKIP_FIRST, settlePending: false, averageMs: undefined };
      this.sinceTrim = TRIM_EVERY;
    }
    this.entries.set(key, entry);

    const budgetMs = Math.min(this.options.budgetMs, timeoutMs);
    this.clock.arm(performance.now() + budgetMs, INLINE_MAX_BULK_PAGES);
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
      if (result !== undefined && this.options.heavyMs > 0) {
        if (entry.averageMs === undefined) entry.averageMs = 0;
        else {
          // A sample counts for at most twice the bound: one slow call (a GC pause, or the OS
          // running another thread mid-call) then moves the average by a quarter of the bound at
          // most, and only a module whose calls are heavy again and again leaves this thread.
          const sample = Math.min(result.durationMs, 2 * this.options.heavyMs);
          entry.averageMs += (sample - entry.averageMs) / 8;
          if (entry.averageMs > this.options.heavyMs) entry.skip = HEAVY_SKIP;
        }
      }
      return failure === undefined ? Promise.resolve(result as InvocationResult) : Promise.reject(toEngineError(failure));
    }
    if (stopped === 'deadline' && timeoutMs <= this.options.budgetMs) {
      this.stats.ran++;
      this.stats.stopped++;
      return Promise.reject(timeLimitError(timeoutMs));
    }
    this.stats.abandoned++;
    entry.skip = entry.nextSkip;
    entry.nextSkip = Math.min(entry.nextSkip * 2, SKIP_MAX);
    return undefined;
  }

  /** Drops every instance (the engine stops). */
  dispose(): void {
    for (const entry of this.entries.values()) entry.runner.dispose();
    this.entries.clear();
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
        this.entries.delete(key);
      } else total += entry.runner.memoryBytes;
    }
    for (const [key, entry] of this.entries) {
      if (total <= this.instanceBytes) break;
      total -= entry.runner.memoryBytes;
      entry.runner.dispose();
      this.entries.delete(key);
    }
  }
}
