/** The pool's queue (src/runtime/pool/call-queue.ts): the order the scheduler relies on. */
import { describe, expect, it } from 'vitest';
import { FifoQueue } from '../../src/runtime/pool/call-queue.js';

describe('FifoQueue', () => {
  it('gives calls back in arrival order; calls put back go first, in their order', () => {
    const queue = new FifoQueue<number>();
    for (const n of [1, 2, 3]) queue.push(n);
    expect(queue.shift()).toBe(1);
    queue.unshift([8, 9]);
    expect(queue.peek()).toBe(8);
    expect([...queue]).toEqual([8, 9, 2, 3]);
    expect(queue.size).toBe(4);
  });

  it('removes one call, keeps the order of the rest, and says when the call was not there', () => {
    const queue = new FifoQueue<string>();
    for (const s of ['a', 'b', 'c']) queue.push(s);
    expect(queue.remove('b')).toBe(true);
    expect(queue.remove('b')).toBe(false);
    expect(queue.drain()).toEqual(['a', 'c']);
    expect(queue.size).toBe(0);
    expect(queue.shift()).toBeUndefined();
  });

  it('retain sees every call once, in order, and keeps those it is told to', () => {
    const queue = new FifoQueue<number>();
    for (let n = 1; n <= 6; n++) queue.push(n);
    const seen: number[] = [];
    queue.retain((n) => {
      seen.push(n);
      return n % 2 === 0;
    });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...queue]).toEqual([2, 4, 6]);
  });
});
