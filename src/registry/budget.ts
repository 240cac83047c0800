/**
 * A running count against a limit, shared by everything one pull reads, so an image cannot exhaust
 * memory or CPU however its bytes are split across layers (downloads, decompressed tar bytes, entries).
 */
import type { EngineError } from '../errors.js';

export class Budget {
  used = 0;

  constructor(
    readonly limit: number,
    private readonly exceeded: (limit: number) => EngineError,
  ) {}

  /** Counts `amount` more; throws the budget's error once the total passes the limit. */
  take(amount: number): void {
    this.used += amount;
    if (this.used > this.limit) throw this.exceeded(this.limit);
  }

  /** Whether `amount` more would still fit, without counting it. */
  fits(amount: number): boolean {
    return this.used + amount <= this.limit;
  }
}
