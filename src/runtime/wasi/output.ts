/**
 * Where a WASI guest's stdout and stderr go: growable byte buffers drawing on one budget, so that
 * output past max_output_bytes stops the invocation instead of being buffered without end.
 */
import { OutputLimitExceeded } from './exit.js';

export class OutputBudget {
  private used = 0;
  exceeded = false;

  constructor(readonly limit: number) {}

  get remaining(): number {
    return Math.max(0, this.limit - this.used);
  }

  /** Accounts for `n` bytes about to be written; throws (and remembers) past the limit. */
  take(n: number): void {
    if (this.exceeded || n > this.limit - this.used) {
      this.exceeded = true;
      throw new OutputLimitExceeded(this.limit);
    }
    this.used += n;
  }
}

const decoder = new TextDecoder('utf-8');

/**
 * The most of one call's stderr that goes back to the engine for its logs: the end of it, where a
 * failure says why. The rest would cross to the HTTP thread only to be cut there (logs/function-logs.ts).
 */
export const STDERR_LOG_BYTES = 64 * 1024;

/**
 * The buffer an emptied OutputBuffer keeps for the next call: enough for a call's usual output,
 * so that a host reused call after call does not allocate (and zero) a buffer for every call, and
 * never more, so that an idle host does not hold a large call's output.
 */
const KEPT_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);

export class OutputBuffer {
  private data = EMPTY;
  length = 0;

  /** `capacity`: the most it will ever hold (the budget guarantees it), so doubling stops there. */
  constructor(private capacity: number) {}

  /** Empties it for another call, which may hold up to `capacity` bytes. */
  reset(capacity: number): void {
    this.capacity = capacity;
    this.length = 0;
    if (this.data.length > KEPT_BYTES) this.data = EMPTY;
  }

  append(chunk: Uint8Array): void {
    const needed = this.length + chunk.length;
    if (needed > this.data.length) {
      const grown = new Uint8Array(Math.max(needed, Math.min(Math.max(this.data.length * 2, 1024), this.capacity)));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    this.data.set(chunk, this.length);
    this.length = needed;
  }

  bytes(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  /** The whole output as text; invalid UTF-8 becomes U+FFFD. */
  text(): string {
    return decoder.decode(this.bytes());
  }

  /** The whole output as text when it is at most `maxBytes` long, else `…` and its last `maxBytes` bytes. */
  boundedText(maxBytes: number): string {
    return this.length <= maxBytes ? this.text() : `…${this.tail(maxBytes)}`;
  }

  /** The last `maxBytes` bytes as text (a character cut at the start becomes U+FFFD). */
  tail(maxBytes: number): string {
    return decoder.decode(this.data.subarray(Math.max(0, this.length - maxBytes), this.length));
  }
}
