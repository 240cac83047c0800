/**
 * One real HTTP thread (HttpThreads in the test's process, running the compiled
 * dist/api/threads/http-thread.js) in front of a Fastify app, as the engine starts them: the
 * thread reads every connection, answers POST /function/invoke itself and passes every other
 * request on to the app. Build first (`npm run build`): a worker runs JavaScript.
 */
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { HttpThreads, type HttpThreadsOptions } from '../../src/api/threads/http-threads.js';
import { silentLogger } from '../../src/logger.js';

export type ThreadInFrontOptions = Pick<HttpThreadsOptions, 'engine' | 'bodyLimitBytes'> &
  Partial<Pick<HttpThreadsOptions, 'observeHttp' | 'registry' | 'invokeCredentials' | 'inlineBudgetMs' | 'inlineHeavyUs' | 'startWorker'>>;

export interface ThreadInFront {
  threads: HttpThreads;
  /** The port the thread listens on, on 127.0.0.1. */
  port: number;
}

/**
 * Puts the thread in front of `app` (made ready here) and starts it on 127.0.0.1, a free port.
 * By default: a 2 ms inline budget (the engine's default; calls run inline only when the engine's
 * runtime shares them, its own inline budget above 0), every module light (inlineHeavyUs 0), answers
 * counted nowhere and the thread's counter in a registry of its own. Stop it with `stopThreadInFront`.
 */
export async function threadInFront(app: FastifyInstance, options: ThreadInFrontOptions): Promise<ThreadInFront> {
  const threads = new HttpThreads({
    threads: 1,
    app,
    inlineBudgetMs: 2,
    inlineHeavyUs: 0,
    logger: silentLogger,
    observeHttp: () => {},
    registry: new Registry(),
    ...options,
  });
  await app.ready();
  const [listening] = await threads.start(['127.0.0.1'], 0);
  return { threads, port: listening!.port };
}

/**
 * Stops as the engine does (app.ts): the thread first (it stops accepting, its requests in flight
 * are answered with `Connection: close`, idle connections end; past `boundMs` it is ended), then
 * the app, whose connections from the thread are left.
 */
export async function stopThreadInFront(threads: HttpThreads | undefined, app: FastifyInstance | undefined, boundMs = 5_000): Promise<void> {
  await threads?.stop(new Promise((resolve) => setTimeout(resolve, boundMs).unref()));
  await app?.close();
}
