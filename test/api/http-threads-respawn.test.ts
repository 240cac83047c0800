/**
 * A dead HTTP thread is started again (http-threads.ts). HttpThreads runs in this process on the
 * real engine and server (in-process.ts), its threads the real ones (the compiled thread), each
 * wrapped so that the test can make it throw where nothing catches it, as a bug would
 * (test/support/http-thread-that-crashes.mjs): no client can kill a thread, and the product has no
 * way to be asked to. Every request goes on a fresh connection, which the kernel gives to any of
 * the three threads listening.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpThreads } from '../../src/api/threads/http-threads.js';
import type { Logger } from '../../src/logger.js';
import { EXAMPLES_WASM } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';
import { parsePrometheus, samplesWith } from '../support/prometheus.js';

const CRASHABLE_THREAD = new URL('../support/http-thread-that-crashes.mjs', import.meta.url);

/** One invocation of gcd(12, 18) on a connection of its own: its status and output. */
function invokeGcd(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/function/invoke`, { method: 'POST', agent: false, headers: { accept: 'application/json', 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        const json = JSON.parse(text) as { output?: string; error?: { code?: string } };
        resolve(`${res.statusCode} ${json.output ?? json.error?.code}`);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ function_name: 'gcd', args: { a: 12, b: 18 } }));
  });
}

describe('HTTP threads: a thread that dies', () => {
  let inProcess: InProcessEngine | undefined;
  let threads: HttpThreads | undefined;
  let url = '';
  /** Every worker started, by thread index. */
  const started: Worker[][] = [];
  const errors: string[] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: (_obj, msg) => errors.push(msg ?? ''),
    child: () => logger,
  };

  beforeAll(async () => {
    inProcess = await startInProcess({
      workers: 1,
      beforeReady: ({ app, engine, metrics }) => {
        threads = new HttpThreads({
          threads: 3,
          engine,
          app,
          bodyLimitBytes: 1024 * 1024,
              inlineBudgetMs: 2,
          inlineHeavyUs: 0,
          logger,
          observeHttp: () => {},
          registry: metrics.registry,
          startWorker: (data, transferList) => {
            const worker = new Worker(CRASHABLE_THREAD, { workerData: data, transferList });
            (started[data.index] ??= []).push(worker);
            return worker;
          },
        });
      },
    });
    // As app.ts starts them: the threads listen, the main thread's server behind them.
    const [listening] = await threads!.start(['127.0.0.1'], 0);
    url = `http://127.0.0.1:${listening!.port}`;
    await inProcess.engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
  });

  afterAll(async () => {
    await threads?.stop(new Promise((resolve) => setTimeout(resolve, 5_000).unref()));
    await inProcess?.close();
  });

  /** Requests each thread has read so far, by index (the threads report first). */
  async function perThread(): Promise<Map<string, number>> {
    await threads!.flush();
    const counts = new Map<string, number>();
    for (const sample of samplesWith(parsePrometheus(await inProcess!.metrics.registry.metrics()), {})) {
      if (sample.name === 'wasm_engine_http_thread_requests_total') counts.set(sample.labels.thread ?? '', sample.value);
    }
    return counts;
  }

  /** Twenty calls on fresh connections, every one answered. */
  async function twentyCalls(): Promise<void> {
    expect(await Promise.all(Array.from({ length: 20 }, () => invokeGcd(url)))).toEqual(Array(20).fill('200 6'));
  }

  it('is logged and started again, serves again, and the other threads serve meanwhile', async () => {
    // Every thread serves first.
    for (let round = 0; ; round++) {
      await twentyCalls();
      const counts = await perThread();
      if (['1', '2', '3'].every((thread) => (counts.get(thread) ?? 0) > 0)) break;
      if (round > 50) throw new Error(`not every thread read a request: ${JSON.stringify([...counts])}`);
    }
    const first = started[1]![0]!;
    const exited = new Promise<number>((resolve) => first.once('exit', resolve));
    first.postMessage({ type: 'test: crash' });
    expect(await exited).toBe(1);
    const atDeath = await perThread();

    // Calls go on being answered, by the threads left, until the new thread 1 reads some too.
    for (let round = 0; ; round++) {
      await twentyCalls();
      if (started[1]!.length === 2 && ((await perThread()).get('1') ?? 0) > (atDeath.get('1') ?? 0)) break;
      if (round > 200) throw new Error(`thread 1 was not started again, or does not serve (workers started for it: ${started[1]!.length})`);
    }
    const after = await perThread();
    for (const thread of ['2', '3']) expect(after.get(thread)).toBeGreaterThan(atDeath.get(thread) ?? 0);
    expect(started[1]!.length).toBe(2);
    expect(errors).toContain('HTTP thread failed');
    expect(errors.some((msg) => msg.startsWith('HTTP thread 1 ended (exit code 1)'))).toBe(true);
  });
});
