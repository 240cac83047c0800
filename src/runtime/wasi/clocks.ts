/**
 * The WASI clocks. Readings are rounded to whole microseconds (and the resolution says so): a
 * nanosecond timer is a ready-made tool for timing side channels between tenants, and no
 * function needs finer time than that.
 * The CPU-time clocks report the time elapsed since the invocation started: Node can only
 * measure the whole process's CPU time, which would leak other invocations' load, and the
 * invocation's wall time is an honest upper bound of its own CPU time.
 */
import { ClockId } from './constants.js';

export const CLOCK_RESOLUTION_NS = 1000n;

const coarse = (ns: bigint): bigint => ns - (ns % CLOCK_RESOLUTION_NS);

export function monotonicNs(): bigint {
  return coarse(process.hrtime.bigint());
}

export function realtimeNs(): bigint {
  // timeOrigin + now() in ms; as microseconds it stays well below 2^53, so the float is exact enough.
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

export class Clocks {
  private readonly startedNs = monotonicNs();

  /** The clock's current time in ns, or undefined for an unknown clock id. */
  now(id: number): bigint | undefined {
    switch (id) {
      case ClockId.REALTIME:
        return realtimeNs();
      case ClockId.MONOTONIC:
        return monotonicNs();
      case ClockId.PROCESS_CPUTIME:
      case ClockId.THREAD_CPUTIME:
        return monotonicNs() - this.startedNs;
      default:
        return undefined;
    }
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Blocks the thread for `ns` (poll_oneoff's sleep). Guest code runs on a pool worker, so this
 * blocks only that sandbox; the pool's timeout still preempts it.
 */
export function sleepNs(ns: bigint): void {
  if (ns <= 0n) return;
  Atomics.wait(sleeper, 0, 0, Number(ns) / 1e6);
}
