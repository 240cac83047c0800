/**
 * Fairness between functions. Calls are not preempted, so a worker taken by a call that runs for
 * seconds is lost to every other function for that long. A function is therefore "guarded" until
 * one of its calls has answered within SLOW_CALL_MS, and again whenever one of its calls is seen
 * running that long or times out, for as long as that call ran (at most SLOW_HOLD_MAX_MS) and until
 * a call of it answers fast: a function that just held a worker for seconds is kept to its share
 * for as long, while a fast one that a busy machine stalled once is back to normal soon after.
 *
 * Calls of guarded functions run on idle workers only, never held in a pipeline, and together on
 * at most all workers but one (a worker being replaced counts as that one): the last is kept for
 * the functions known to be fast, so a fast function alone still has every worker and its
 * pipeline. Exception: the first call of a function never seen (nor seen slow lately) may take an
 * idle worker past that share while no other call of it is in a worker, or a new function would
 * wait for the slow ones. The scheduler (scheduler.ts) applies this; the state lives on each
 * module (module-cache.ts LoadedModule: guarded, proven, slowUntil).
 */
import type { LoadedModule } from './module-cache.js';
import type { Slot } from './pool-records.js';

/**
 * A call that runs this long makes its function guarded. Well above the few milliseconds a busy
 * machine's scheduler can take from a thread, so that a fast function is seldom taken for a slow
 * one (it would then lose its pipeline and a worker for about as long as it stalled).
 */
export const SLOW_CALL_MS = 50;
/** The longest a function stays guarded after one of its calls was seen slow. */
const SLOW_HOLD_MAX_MS = 10_000;

/** A call of a function seen slow, having run `ranMs` so far: guarded for as long. */
export function markSlow(loaded: LoadedModule, now: number, ranMs: number): void {
  loaded.guarded = true;
  loaded.slowUntil = Math.max(loaded.slowUntil, now + Math.min(ranMs, SLOW_HOLD_MAX_MS));
}

/** A call answered within SLOW_CALL_MS: its function is no longer guarded once its hold is over. */
export function trust(loaded: LoadedModule, now: number): void {
  loaded.proven = true;
  if (now >= loaded.slowUntil) loaded.guarded = false;
}

/** Whether a call of a guarded function may start on an idle worker now, among `slots` of a pool of `size`. */
export function mayStartGuarded(slots: Iterable<Slot>, size: number, loaded: LoadedModule, now: number): boolean {
  let guardedRunning = 0;
  for (const slot of slots) if (slot.state !== 'starting' && slot.running?.call.loaded.guarded) guardedRunning++;
  // One worker alone is shared by all; else one is kept from guarded calls. A worker being
  // replaced counts as that one: else a slow function's call would wait for it (it may take
  // longer to start than the call may wait), while the fast ones wait only that long.
  if (guardedRunning < Math.max(1, size - 1)) return true;
  if (loaded.proven || now < loaded.slowUntil) return false;
  for (const slot of slots) for (const sent of slot.sent) if (!sent.withdrawn && sent.call.loaded === loaded) return false;
  return true;
}
