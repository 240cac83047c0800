/**
 * The host side of the preemption checks (inject.ts): one per thread, given to every instance of a
 * rewritten module as its `wasm-engine:preempt` import. A guest whose fuel runs out asks check()
 * whether it may go on; past the clock's deadline, or for a bulk instruction larger than the
 * clock allows, the answer is "stop" and the guest traps itself (`unreachable`). The call that was
 * running is then known to have been stopped by the host, not by its own trap: `stopped` says why
 * until the next call is armed. Once stopped, every later check says stop too, so nothing the
 * guest does after the trap (it cannot catch it) goes further.
 */
import { EngineError } from '../../errors.js';
import { CHECK_INTERVAL, PREEMPT_CHECK, PREEMPT_MODULE } from './inject.js';

export type StopReason = 'deadline' | 'bulk';

export class PreemptClock {
  /** performance.now() time past which checks stop the call; Infinity: never. */
  private deadline = Infinity;
  /** Pages a single bulk instruction (fill, copy, init, grow) may touch; more stops the call. */
  private maxBulkPages = Infinity;
  private reason: StopReason | undefined;
  /** The import object's entry, made once: every instance of every module on this thread shares it. */
  readonly imports: Record<string, Record<string, unknown>>;

  /** `interval`: the fuel each check gives (tests give little, so that the guest asks at nearly every tick). */
  constructor(interval = CHECK_INTERVAL) {
    const check = (pages: number): number => {
      if (this.reason !== undefined) return -1;
      if (pages > this.maxBulkPages) {
        this.reason = 'bulk';
        return -1;
      }
      if (this.deadline !== Infinity && performance.now() >= this.deadline) {
        this.reason = 'deadline';
        return -1;
      }
      return interval;
    };
    this.imports = { [PREEMPT_MODULE]: { [PREEMPT_CHECK]: check } };
  }

  /** Arms the clock for the call about to run (instantiation included). */
  arm(deadline: number, maxBulkPages = Infinity): void {
    this.deadline = deadline;
    this.maxBulkPages = maxBulkPages;
    this.reason = undefined;
  }

  /** After a call: why the host stopped it, if it did; the clock is disarmed. */
  disarm(): StopReason | undefined {
    const reason = this.reason;
    this.deadline = Infinity;
    this.maxBulkPages = Infinity;
    this.reason = undefined;
    return reason;
  }
}

/**
 * The clock of code that never stops a call this way: the deploy's trial instance (its preparation
 * worker is terminated at the time limit) and runners made without a clock.
 */
export const UNARMED_CLOCK = new PreemptClock();

/** What a call stopped at its time limit ends with, wherever it was stopped (SPEC §2 FUNCTION_TIMEOUT). */
export function timeLimitError(timeoutMs: number): EngineError {
  return new EngineError('FUNCTION_TIMEOUT', `the function ran past its time limit of ${timeoutMs} ms`);
}
