/**
 * The composition root: builds the store, image fetcher, runtime, engine and HTTP server from a
 * validated configuration, starts them, and stops them in order.
 */
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger as PinoLogger } from 'pino';
import { NAMESPACE } from './api/openfaas/mapping.js';
import { httpCountsObserver } from './api/platform.js';
import { buildServer } from './api/server.js';
import { HttpThreads, servingThreads, type HttpThreadsOptions } from './api/threads/http-threads.js';
import { hostAddresses, type ListenAddress } from './api/listen.js';
import { buildVersion } from './build-info.js';
import { warmUpHttp } from './api/warm-up.js';
import { basicAuthCredentials } from './config/credentials.js';
import { registryCredentialProvider } from './config/registry-settings.js';
import type { EngineConfig } from './config/settings.js';
import { Engine } from './core/engine.js';
import { pruneLayerNotes, storeModuleCache } from './core/blob-cache.js';
import { fanOut } from './core/events.js';
import { FunctionLogs } from './logs/function-logs.js';
import { EngineMetrics } from './metrics/engine-metrics.js';
import { createImageFetcher, isLoopbackHost } from './registry/index.js';
import { imageReferenceCheck, localImagesAllowed } from './core/image-policy.js';
import { DEFAULT_PIPELINE_DEPTH, WorkerPoolRuntime } from './runtime/index.js';
import { FileFunctionStore, type FunctionStore } from './store/index.js';
import { PostgresFunctionStore, storeLabel } from './store/postgres/index.js';
import { FileLayerNotes } from './store/layer-notes.js';

export interface RunningEngine {
  app: FastifyInstance;
  engine: Engine;
  /** The address the server listens on, e.g. http://127.0.0.1:10000. */
  url: string;
  /** Stops accepting, lets in-flight requests finish (bounded), stops workers, releases the store. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Settles when a stop is asked for (a signal) while the engine starts: readying restored
   * functions in the sandboxes is then cut short, so that the caller can stop the engine at once.
   */
  interrupted?: Promise<unknown>;
  /** How an HTTP thread's worker is started (HttpThreadsOptions.startWorker): tests make one fail. */
  startHttpThread?: HttpThreadsOptions['startWorker'];
}

export function createLogger(config: Pick<EngineConfig, 'logLevel'> & Partial<Pick<EngineConfig, 'nodeName'>>): PinoLogger {
  return pino({ level: config.logLevel, base: { service: 'wasm-engine', node: config.nodeName ?? hostname() } });
}

/**
 * `--concurrency-per-replica 0`: as many calls per worker as the pool's pipeline holds, so that a
 * worker can hold its next calls while one runs (runtime/pool/worker-pool.ts; with fewer it would
 * sleep between calls), and one more per thread that serves HTTP, which runs a call itself while
 * the workers' pipelines are full. Without that one, calls sent to the workers — the calls after
 * an abandoned one, say — filled the bound, every thread then passed each call it read to the main
 * thread to wait there, and the engine stayed in that state, every call through one thread, for as
 * long as the load lasted.
 */
function defaultConcurrency(config: EngineConfig): number {
  return config.workers * DEFAULT_PIPELINE_DEPTH + (config.inlineBudgetMs > 0 ? servingThreads(config.httpThreads) : 0);
}

/** The data directory's store (one engine), or PostgreSQL shared by several (the data directory is then a cache). */
function createStore(config: EngineConfig, logger: PinoLogger): FunctionStore {
  if (config.store === 'file') return new FileFunctionStore(config.dataDir, logger);
  return new PostgresFunctionStore({ url: config.store, dataDir: config.dataDir, node: config.nodeName, timeoutMs: config.storeTimeoutMs, logger });
}


export async function startEngine(config: EngineConfig, logger: PinoLogger, options: StartOptions = {}): Promise<RunningEngine> {
  const store = createStore(config, logger.child({ component: 'store' }));
  const layerNotes = new FileLayerNotes(config.dataDir);
  const runtime = new WorkerPoolRuntime({
    workers: config.workers,
    workerHeapMb: config.workerHeapMb,
    inlineBudgetMs: config.inlineBudgetMs,
    inlineHeavyUs: config.inlineHeavyUs,
    maxQueue: config.maxQueue,
    logger: logger.child({ component: 'runtime' }),
    moduleCacheBytes: config.moduleCacheMb * 1024 * 1024,
    maxTableEntries: config.maxTableEntries,
    // A module evicted from the compiled cache is compiled again from the store on its next call.
    fetchModule: (digest) => store.readBlob(digest),
  });
  const logs = new FunctionLogs({ linesPerFunction: config.functionLogLines, namespace: NAMESPACE, instance: config.nodeName });
  const metrics: EngineMetrics = new EngineMetrics({
    poolStats: () => {
      const stats = runtime.stats();
      // Calls the HTTP threads ran inline are the runtime's too, as far as an operator is concerned.
      if (stats.inlineRan !== undefined) stats.inlineRan += threads.inline.ran;
      if (stats.inlineAbandoned !== undefined) stats.inlineAbandoned += threads.inline.abandoned;
      if (stats.preemptions !== undefined) stats.preemptions.inline += threads.inline.stopped;
      return stats;
    },
    inflight: (): number => engine.inflightInvocations,
    functions: (): number => engine.list().length,
    inlineInstanceBytes: (): number => runtime.inlineInstanceBytes() + threads.inlineInstanceBytes,
  });
  metrics.registry.setDefaultLabels({ node: config.nodeName });
  const fetcher = createImageFetcher({
    insecureRegistries: config.insecureRegistries,
    logger: logger.child({ component: 'registry' }),
    credentials: registryCredentialProvider(config, logger.child({ component: 'registry' })),
    connectTimeoutMs: config.registryConnectTimeoutMs,
    timeoutMs: config.registryTimeoutMs,
    maxImageBytes: config.maxImageBytes,
    retries: config.registryRetries,
    cache: storeModuleCache(store, layerNotes),
  });
  const engine: Engine = new Engine({
    store,
    fetcher,
    runtime,
    defaults: {
      timeoutMs: config.timeoutMs,
      memoryLimitMb: config.memoryLimitMb,
      maxOutputBytes: config.maxOutputBytes,
    },
    logger: logger.child({ component: 'engine' }),
    checkImageReference: imageReferenceCheck(localImagesAllowed(config.localImages, config.host)),
    events: fanOut(metrics, logs),
    scaling: {
      concurrencyPerReplica: config.concurrencyPerReplica === 0 ? defaultConcurrency(config) : config.concurrencyPerReplica,
      maxWaiting: config.maxQueuePerFunction,
      maxWaitingTotal: config.maxQueue,
    },
  });
  let restored: number;
  // Waiting for an unreachable shared store: a stop asked for meanwhile ends the wait.
  let opened = false;
  if (store.cluster) {
    void options.interrupted?.then(() => {
      if (!opened) void store.close();
    });
  }
  try {
    restored = await engine.restore();
    opened = true;
    await pruneLayerNotes(store, layerNotes, logger.child({ component: 'store' }));
  } catch (err) {
    await runtime.close();
    await store.close();
    throw err;
  }
  const from = config.store === 'file' ? config.dataDir : storeLabel(config.store);
  logger.info({ functions: restored, dataDir: config.dataDir, store: from }, `restored ${restored} functions from ${from}`);
  let compiling = true;
  void engine.whenAllReady().then(() => {
    compiling = false;
  });
  // Not ready until restored functions are in the sandboxes: a worker readying one is given no call.
  let preloading = true;
  // Requests the engine makes to itself before it says it listens: not counted in the metrics.
  let warmingUp = false;

  const credentials = basicAuthCredentials(config);
  const app = buildServer({
    engine,
    bodyLimitBytes: config.bodyLimitBytes,
    requestTimeoutMs: config.requestTimeoutMs,
    httpLogger: logger.child({ component: 'http' }),
    platform: {
      metrics,
      logs,
      ...(credentials ? { credentials } : {}),
      authInvoke: config.authInvoke,
      notReadyReason: () =>
        engine.shuttingDown
          ? 'shutting down'
          : compiling
            ? 'compiling restored functions'
            : preloading
              ? 'readying restored functions in the sandboxes'
              : runtime.stats().workers === 0
              ? 'no workers'
              : undefined,
      version: buildVersion(),
      node: config.nodeName,
      warmingUp: () => warmingUp,
    },
  });
  const threads: HttpThreads = new HttpThreads({
    threads: servingThreads(config.httpThreads),
    engine,
    app,
    bodyLimitBytes: config.bodyLimitBytes,
    maxConnections: config.maxConnections,
    ...(credentials !== undefined && config.authInvoke ? { invokeCredentials: credentials } : {}),
    inlineBudgetMs: config.inlineBudgetMs,
    inlineHeavyUs: config.inlineHeavyUs,
    logger: logger.child({ component: 'http-threads' }),
    observeHttp: httpCountsObserver({ metrics, warmingUp: () => warmingUp }),
    registry: metrics.registry,
    ...(options.startHttpThread ? { startWorker: options.startHttpThread } : {}),
  });
  let listening: ListenAddress[] = [];
  try {
    // The sandbox workers take tens of milliseconds to start: listen once they have, so that the
    // first invocation does not wait for them (it never hangs: a worker that fails counts too).
    await runtime.ready();
    await runtime.warmUp();
    // The main thread's server listens on no public address: the HTTP threads read every
    // connection and pass it what is not theirs to answer (threads/proxy.ts).
    await app.ready();
    // From here every request the threads read is counted: the warm-up's are taken off below.
    warmingUp = true;
    listening = await threads.start(await hostAddresses(config.host), config.port);
    // Cold starts: the first request through Fastify compiles its route, hooks and serialisers;
    // do that now on cheap requests, and let restored functions finish compiling and reach the
    // workers (preloadRestored), before saying the engine listens. /readyz answers meanwhile.
    try {
      await warmUpHttp(engine, config.host, listening[0]?.port ?? config.port);
      // The threads' reports of the warm-up's requests come in while they are not counted.
      await threads.flush();
      threads.forgetRequestsSoFar();
    } finally {
      warmingUp = false;
    }
    const preloaded = engine.preloadRestored();
    await (options.interrupted ? Promise.race([preloaded, options.interrupted]) : preloaded);
    preloading = false;
  } catch (err) {
    await threads.stop(Promise.resolve());
    // Connections the threads opened to it may be open: left so, they would keep the process
    // alive after the failure to start is reported.
    await app.close();
    await runtime.close();
    await store.close();
    throw err;
  }
  const port = listening[0]?.port ?? config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url }, `WasmEngine listening on ${url}, waiting for requests...`);
  if (!isLoopbackHost(config.host) && !credentials) {
    logger.warn({ host: config.host }, 'listening on a non-loopback address: the management routes have no authentication');
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const bound = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs).unref());
      // Keep listening while in-flight invocations finish, so that new requests get a clear 503
      // (and /readyz says so) rather than a refused connection; then close.
      engine.beginShutdown();
      threads.beginShutdown();
      logs.endAll();
      await Promise.race([engine.whenIdle(), bound]);
      // The threads' requests in flight end (they forward new calls, answered 503 now), then the threads.
      await threads.stop(bound);
      logs.endAll();
      const closed = await Promise.race([app.close().then(() => true), bound.then(() => false)]);
      // A pull still hanging on a slow registry must not keep the process alive: it fails now.
      await fetcher.close();
      if (!closed) {
        // Past the bound, no connection may hold the process open (a deploy answered just now, a
        // keep-alive client): a moment for those answers to leave, then every socket is closed.
        await new Promise((resolve) => setTimeout(resolve, 200).unref());
        app.server.closeAllConnections();
      }
      await runtime.close();
      await store.close();
    })();
    return stopping;
  };
  return { app, engine, url, stop };
}

