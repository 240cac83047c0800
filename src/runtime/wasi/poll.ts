/**
 * poll_oneoff: clock subscriptions sleep (this is how WASI programs sleep), and subscriptions on
 * the standard streams are always ready (stdin is a byte array, stdout/stderr are buffers).
 * Any other fd gets an EBADF event, as no other fd exists.
 */
import { Clocks, monotonicNs, sleepNs } from './clocks.js';
import { Errno, EventType, SUBSCRIPTION_CLOCK_ABSTIME } from './constants.js';
import type { GuestMemory } from './guest-memory.js';

const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;

/** What a stream subscription on `fd` answers: an errno, and the bytes available when ready. */
export type FdReadiness = (fd: number, type: number) => { error: number; nbytes: bigint };

interface Event {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
}

export function pollOneoff(
  mem: GuestMemory,
  inPtr: number,
  outPtr: number,
  count: number,
  neventsPtr: number,
  clocks: Clocks,
  fdReadiness: FdReadiness,
): number {
  const n = count >>> 0;
  if (n === 0) return Errno.INVAL;
  const inBase = mem.check(inPtr, n * SUBSCRIPTION_SIZE);
  const outBase = mem.check(outPtr, n * EVENT_SIZE);
  mem.check(neventsPtr, 4);

  const immediate: Event[] = [];
  const timers: { userdata: bigint; deadline: bigint }[] = [];
  const now = monotonicNs();
  for (let i = 0; i < n; i++) {
    const sub = inBase + i * SUBSCRIPTION_SIZE;
    const userdata = mem.u64(sub);
    const tag = mem.view.getUint8(sub + 8);
    if (tag === EventType.CLOCK) {
      const id = mem.u32(sub + 16);
      const timeout = mem.u64(sub + 24);
      const flags = mem.u16(sub + 40);
      const clockNow = clocks.now(id);
      if (clockNow === undefined) {
        immediate.push({ userdata, error: Errno.INVAL, type: tag, nbytes: 0n });
        continue;
      }
      // Every deadline is kept on the monotonic clock, whichever clock the guest named.
      const wait = (flags & SUBSCRIPTION_CLOCK_ABSTIME) !== 0 ? timeout - clockNow : timeout;
      timers.push({ userdata, deadline: now + (wait > 0n ? wait : 0n) });
    } else if (tag === EventType.FD_READ || tag === EventType.FD_WRITE) {
      const { error, nbytes } = fdReadiness(mem.u32(sub + 16), tag);
      immediate.push({ userdata, error, type: tag, nbytes });
    } else {
      return Errno.INVAL;
    }
  }

  let events = immediate;
  if (events.length === 0) {
    const first = timers.reduce((min, t) => (t.deadline < min ? t.deadline : min), timers[0]?.deadline ?? now);
    sleepNs(first - monotonicNs());
    const after = monotonicNs();
    events = timers
      .filter((t) => t.deadline <= after)
      .map((t) => ({ userdata: t.userdata, error: Errno.SUCCESS, type: EventType.CLOCK, nbytes: 0n }));
    // Atomics.wait may wake a hair early by the rounded clock; the earliest timer has fired regardless.
    if (events.length === 0 && timers[0]) {
      const t = timers.find((x) => x.deadline === first) ?? timers[0];
      events = [{ userdata: t.userdata, error: Errno.SUCCESS, type: EventType.CLOCK, nbytes: 0n }];
    }
  }

  events.forEach((e, i) => {
    const at = outBase + i * EVENT_SIZE;
    mem.fill(at, EVENT_SIZE);
    mem.setU64(at, e.userdata);
    mem.setU16(at + 8, e.error);
    mem.setU8(at + 10, e.type);
    mem.setU64(at + 16, e.nbytes);
  });
  mem.setU32(neventsPtr, events.length);
  return Errno.SUCCESS;
}
