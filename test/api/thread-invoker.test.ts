/**
 * An HTTP thread's copy of the function table (thread-invoker.ts): changes are read from one
 * queue two ways, as they arrive while the thread is idle, and synchronously before a call when
 * the shared epoch says it is behind. Whichever way each one comes, none is skipped and none is
 * applied out of order: a call runs on the function as the last change left it, and a module no
 * function uses any more leaves no instance behind.
 */
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_CELLS, CONTROL_EPOCH, type ToMain } from '../../src/api/threads/protocol.js';
import { Reports } from '../../src/api/threads/reports.js';
import { ThreadInvoker } from '../../src/api/threads/thread-invoker.js';
import type { InvocableFunction } from '../../src/core/function-table.js';
import { InlineExecutor } from '../../src/runtime/inline/inline-executor.js';
import { EXAMPLES_WASM } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';

describe('ThreadInvoker: function table changes', () => {
  let inProcess: InProcessEngine;
  let gcd: InvocableFunction;

  beforeAll(async () => {
    inProcess = await startInProcess({ workers: 1, inlineBudgetMs: 50 });
    await inProcess.engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
    gcd = inProcess.engine.invocableFunction('gcd')!;
    expect(gcd).toBeDefined();
  });
  afterAll(() => inProcess?.close());

  it('are all applied, in order, whether they arrive while idle or are read before a call', async () => {
    const { port1, port2 } = new MessageChannel();
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_CELLS * Int32Array.BYTES_PER_ELEMENT));
    const executor = new InlineExecutor({ budgetMs: 50, reuseInstances: true, heavyMs: 0 });
    const posted: ToMain[] = [];
    const post = (message: ToMain): void => void posted.push(message);
    const invoker = new ThreadInvoker({ control, tablePort: port2, functions: [], epoch: 0, executor, reports: new Reports(post, executor.stats, () => 0), post });
    // Counts the changes delivered as events (those a call read first never are).
    let arrived = 0;
    port2.on('message', () => (arrived += 1));
    let published = 0;
    const publish = (fn: InvocableFunction | undefined): void => {
      port1.postMessage({ name: 'gcd', fn });
      Atomics.add(control, CONTROL_EPOCH, 1);
      published += 1;
    };
    /** Whether a call ran here (else it was forwarded to the main thread, answered here as it would be). */
    const ranHere = async (): Promise<boolean> => {
      const before = posted.length;
      const call = invoker.invoke({ name: 'gcd', args: { a: 12, b: 18 } });
      const forwarded = posted.slice(before).find((m) => m.type === 'invoke');
      if (forwarded?.type === 'invoke') invoker.settle({ type: 'result', id: forwarded.id, output: '6' });
      expect((await call).output).toBe('6');
      return forwarded === undefined;
    };

    // A fixed pseudo-random run: 1 to 3 changes at a time (a deploy, an update, a delete), then a
    // call at once (it reads them) or once they have arrived as events.
    let seed = 12345;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 16) % n;
    };
    let deployed = false;
    // Changes a call read before it ran: they never arrive as events.
    let readByCalls = 0;
    const allArrived = async (): Promise<void> => {
      for (let i = 0; arrived + readByCalls < published; i++) {
        if (i > 1000) throw new Error(`${published - arrived - readByCalls} changes never arrived`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    for (let step = 0; step < 200; step++) {
      for (let k = next(3); k >= 0; k--) {
        deployed = next(2) === 0;
        publish(deployed ? gcd : undefined);
      }
      if (next(2) === 0) await allArrived();
      else readByCalls = published - arrived;
      expect(await ranHere(), `step ${step}`).toBe(deployed);
    }
    // Deleted at last, while idle: nothing of the module is left on this thread.
    publish(undefined);
    await allArrived();
    expect(executor.idleInstanceBytes).toBe(0);
    expect(await ranHere()).toBe(false);
    invoker.dispose();
    port1.close();
  });
});
