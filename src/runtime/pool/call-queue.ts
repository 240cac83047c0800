/**
 * Where calls wait for a worker, behind a small interface (as piscina's TaskQueue): the scheduler
 * only asks for these operations, so another order (priorities, per-function queues) can replace
 * the FIFO without touching it.
 */
export interface CallQueue<T> extends Iterable<T> {
  readonly size: number;
  /** Adds at the back. */
  push(item: T): void;
  /** Puts items back at the front, in their order (calls taken back from a worker). */
  unshift(items: readonly T[]): void;
  shift(): T | undefined;
  peek(): T | undefined;
  /** Removes one item; false when it was not there. */
  remove(item: T): boolean;
  /** Keeps, in order, the items for which `keep` is true; `keep` sees every item once, in order. */
  retain(keep: (item: T) => boolean): void;
  /** Removes and returns every item. */
  drain(): T[];
}

/** First in, first out, on an array: queues stay short (bounded by maxQueue) and are mostly empty. */
export class FifoQueue<T> implements CallQueue<T> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    this.items.push(item);
  }

  unshift(items: readonly T[]): void {
    if (items.length > 0) this.items.unshift(...items);
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  peek(): T | undefined {
    return this.items[0];
  }

  remove(item: T): boolean {
    const at = this.items.indexOf(item);
    if (at < 0) return false;
    this.items.splice(at, 1);
    return true;
  }

  retain(keep: (item: T) => boolean): void {
    const items = this.items;
    let kept = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (keep(item)) items[kept++] = item;
    }
    items.length = kept;
  }

  drain(): T[] {
    const items = this.items;
    this.items = [];
    return items;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.items[Symbol.iterator]();
  }
}
