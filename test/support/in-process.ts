/**
 * The engine and its HTTP server in the test's own process, answering through Fastify's inject:
 * the real store, runtime (worker threads), metrics and logs, with an image fetcher that reads
 * `file:` paths only (registries are the integration tests' business).
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import type { BasicCredentials } from '../../src/config/credentials.js';
import { Engine } from '../../src/core/engine.js';
import { fanOut } from '../../src/core/events.js';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { FunctionLogs } from '../../src/logs/function-logs.js';
import { EngineMetrics } from '../../src/metrics/engine-metrics.js';
import type { FetchedModule, ImageFetcher } from '../../src/registry/types.js';
import { WorkerPoolRuntime } from '../../src/runtime/index.js';
import { FileFunctionStore } from '../../src/store/index.js';

class FileFetcher implements ImageFetcher {
  async fetch(reference: string): Promise<FetchedModule> {
    if (!reference.startsWith('file:')) throw new EngineError('IMAGE_NOT_FOUND', `no image ${reference}`);
    const path = reference.slice('file:'.length);
    try {
      return { bytes: new Uint8Array(await readFile(path)), fileName: path };
    } catch {
      throw new EngineError('IMAGE_NOT_FOUND', `no file ${path}`);
    }
  }
}

export interface InProcessEngine {
  app: FastifyInstance;
  engine: Engine;
  metrics: EngineMetrics;
  logs: FunctionLogs;
  close(): Promise<void>;
}

export interface InProcessOptions {
  credentials?: BasicCredentials;
  authInvoke?: boolean;
  concurrencyPerReplica?: number;
  maxWaiting?: number;
  workers?: number;
  /** Calls run first on the thread that reads them, within this budget (0, the default: never). */
  inlineBudgetMs?: number;
  /** Runs before the server is made ready (hooks can be added then: HTTP threads add one). */
  beforeReady?: (parts: { app: FastifyInstance; engine: Engine; metrics: EngineMetrics }) => void;
}

export async function startInProcess(options: InProcessOptions = {}): Promise<InProcessEngine> {
  const dir = await mkdtemp(join(tmpdir(), 'we-inproc-'));
  const store = new FileFunctionStore(dir, silentLogger);
  const runtime = new WorkerPoolRuntime({ workers: options.workers ?? 2, maxQueue: 64, logger: silentLogger, inlineBudgetMs: options.inlineBudgetMs ?? 0 });
  const logs = new FunctionLogs({ linesPerFunction: 100, namespace: 'openfaas-fn', instance: 'test-node' });
  const metrics: EngineMetrics = new EngineMetrics(
    {
      poolStats: () => runtime.stats(),
      inflight: (): number => engine.inflightInvocations,
      functions: (): number => engine.list().length,
    },
    { processMetrics: false },
  );
  const engine: Engine = new Engine({
    store,
    fetcher: new FileFetcher(),
    runtime,
    defaults: { timeoutMs: 5000, memoryLimitMb: 64, maxOutputBytes: 1024 * 1024 },
    logger: silentLogger,
    checkImageReference: () => {},
    events: fanOut(metrics, logs),
    scaling: { concurrencyPerReplica: options.concurrencyPerReplica ?? 4, maxWaiting: options.maxWaiting ?? 64 },
  });
  await engine.restore();
  const app = buildServer({
    engine,
    bodyLimitBytes: 1024 * 1024,
    platform: {
      metrics,
      logs,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      authInvoke: options.authInvoke ?? false,
      notReadyReason: () => (engine.shuttingDown ? 'shutting down' : undefined),
      version: { release: '0.0.0-test', sha: 'test' },
    },
  });
  options.beforeReady?.({ app, engine, metrics });
  await app.ready();
  return {
    app,
    engine,
    metrics,
    logs,
    async close() {
      await app.close();
      await runtime.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
