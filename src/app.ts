/**
 * The composition root: builds the store, image fetcher, runtime, engine and HTTP server from a
 * validated configuration, starts them, and stops them in order.
 */
import type { FastifyInstance } from 'fastify';
import { pino, type Logger as PinoLogger } from 'pino';
import { buildServer } from './api/server.js';
import type { EngineConfig } from './config/settings.js';
import { Engine } from './core/engine.js';
import { checkImageReference, createImageFetcher } from './registry/index.js';
import { WorkerPoolRuntime } from './runtime/index.js';
import { FileFunctionStore } from './store/index.js';

export interface RunningEngine {
  app: FastifyInstance;
  engine: Engine;
  /** The address the server listens on, e.g. http://127.0.0.1:10000. */
  url: string;
  /** Stops accepting, lets in-flight requests finish (bounded), stops workers, releases the store. */
  stop(): Promise<void>;
}

export function createLogger(config: Pick<EngineConfig, 'logLevel'>): PinoLogger {
  return pino({ level: config.logLevel, base: { service: 'wasm-engine' } });
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function startEngine(config: EngineConfig, logger: PinoLogger): Promise<RunningEngine> {
  const store = new FileFunctionStore(config.dataDir, logger.child({ component: 'store' }));
  const runtime = new WorkerPoolRuntime({
    workers: config.workers,
    maxQueue: config.maxQueue,
    logger: logger.child({ component: 'runtime' }),
  });
  const engine = new Engine({
    store,
    fetcher: createImageFetcher({
      insecureRegistries: config.insecureRegistries,
      logger: logger.child({ component: 'registry' }),
    }),
    runtime,
    defaults: {
      timeoutMs: config.timeoutMs,
      memoryLimitMb: config.memoryLimitMb,
      maxOutputBytes: config.maxOutputBytes,
    },
    logger: logger.child({ component: 'engine' }),
    checkImageReference,
  });
  let restored: number;
  try {
    restored = await engine.restore();
  } catch (err) {
    await runtime.close();
    await store.close();
    throw err;
  }
  logger.info({ functions: restored, dataDir: config.dataDir }, `restored ${restored} functions from ${config.dataDir}`);

  const app = buildServer({ engine, bodyLimitBytes: config.bodyLimitBytes, httpLogger: logger.child({ component: 'http' }) });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await runtime.close();
    await store.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url }, `WasmEngine listening on ${url}, waiting for requests...`);
  if (!LOOPBACK.test(config.host)) {
    logger.warn({ host: config.host }, 'listening on a non-loopback address: the management routes have no authentication');
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const bound = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs).unref());
      await Promise.race([app.close(), bound]);
      await runtime.close();
      await store.close();
    })();
    return stopping;
  };
  return { app, engine, url, stop };
}
