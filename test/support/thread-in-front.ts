/**
 * One real HTTP thread (HttpThreads in the test's process, running the compiled
 * dist/api/threads/http-thread.js) in front of a Fastify app, as the engine starts them: the
 * thread reads every connection, answers POST /function/invoke itself and passes every other
 * request on to the app. Build first (`npm run build`): a worker runs JavaScript.
 */
import type { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { httpCountsObserver } from '../../src/api/platform.js';
import { buildServer } from '../../src/api/server.js';
import { HttpThreads, type HttpThreadsOptions } from '../../src/api/threads/http-threads.js';
import { silentLogger } from '../../src/logger.js';
import type { InProcessEngine } from './in-process.js';
import { recordingThread } from './recording-thread.js';

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

/** An in-process engine's whole server and the recording thread in front of it. */
export interface RecordedServer extends ThreadInFront {
  app: FastifyInstance;
  /** The thread, to ask what it saw (recording-thread.ts askThread). */
  thread: Worker;
}

/**
 * Builds `inProcess`'s whole server (its platform routes, answers counted in its metrics) and puts
 * the recording HTTP thread (recording-thread.ts) in front of it; `keepAliveTimeoutMs` is the
 * server's, which the thread takes. Stop with `stopThreadInFront(threads, app)`.
 */
export async function recordedServer(
  inProcess: InProcessEngine,
  options: { bodyLimitBytes: number; inlineBudgetMs?: number; keepAliveTimeoutMs?: number },
): Promise<RecordedServer> {
  const { engine, metrics, logs } = inProcess;
  const platform = { metrics, logs, authInvoke: false, notReadyReason: () => undefined, version: { release: 't', sha: 't' } };
  const app = buildServer({ engine, bodyLimitBytes: options.bodyLimitBytes, platform });
  if (options.keepAliveTimeoutMs !== undefined) app.server.keepAliveTimeout = options.keepAliveTimeoutMs;
  let thread: Worker | undefined;
  const { threads, port } = await threadInFront(app, {
    engine,
    bodyLimitBytes: options.bodyLimitBytes,
    ...(options.inlineBudgetMs === undefined ? {} : { inlineBudgetMs: options.inlineBudgetMs }),
    observeHttp: httpCountsObserver({ metrics }),
    registry: metrics.registry,
    startWorker: recordingThread((started) => (thread = started)),
  });
  return { app, threads, port, thread: thread! };
}
