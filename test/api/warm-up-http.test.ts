/**
 * The engine's HTTP warm-up (src/api/warm-up.ts), seen from a started engine: its requests are
 * served by the engine's own servers over real connections (the path every later request takes:
 * an HTTP thread's server, and the main thread's for what the thread passes on), and it leaves
 * nothing behind — no open connection, nothing in the metrics, no function. The HTTP thread is the
 * real one, wrapped to tell what its server was handed (test/support/http-thread-that-records.mjs).
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Server as HttpServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, startEngine, type RunningEngine } from '../../src/app.js';
import { loadConfig } from '../../src/config/config-file.js';
import { call } from '../support/http.js';
import { parsePrometheus } from '../support/prometheus.js';
import { eventually } from '../support/eventually.js';
import { askThread, recordingThread, type ThreadRecord } from '../support/recording-thread.js';

describe('the HTTP warm-up', () => {
  let running: RunningEngine;
  let dataDir: string;
  const served: string[] = [];
  let thread: Worker | undefined;

  const threadState = (): Promise<ThreadRecord> => askThread(thread!);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'we-warm-up-'));
    // Every request any HTTP server of the main thread is handed, as it is handed it.
    const prototype = EventEmitter.prototype as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
    const emit = prototype.emit;
    prototype.emit = function (this: EventEmitter, event: string | symbol, ...args: unknown[]): boolean {
      const request = args[0] as IncomingMessage | undefined;
      if (event === 'request' && this instanceof HttpServer && request !== undefined) served.push(`${request.method} ${request.url}`);
      return emit.call(this, event, ...args);
    };
    try {
      const config = loadConfig({ port: '0', host: '127.0.0.1', 'data-dir': dataDir, 'log-level': 'silent', 'http-threads': '1', workers: '1' }, {});
      running = await startEngine(config, createLogger(config), {
        startHttpThread: recordingThread((started) => (thread = started)),
      });
    } finally {
      prototype.emit = emit;
    }
  });
  afterAll(async () => {
    await running?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("is served by the engine's own servers, on every route family, the way a client's requests are", async () => {
    const byThread = (await threadState()).served;
    // The thread reads every one, answers invocations itself and passes the rest on.
    for (const request of ['POST /function/invoke', 'POST /function/_wasm-engine-missing', 'POST /function/query', 'GET /healthz']) expect(byThread).toContain(request);
    expect(served).not.toContain('POST /function/invoke');
    expect(served).toContain('POST /function/_wasm-engine-missing');
    expect(served).toContain('POST /function/query');
    expect(served).toContain('GET /healthz');
  });

  it('leaves no connection open, no request in the metrics and no function behind', async () => {
    // The warm-up's client ends come first; the server's ends follow as it reads them. A connection
    // left open would stay for the keep-alive timeout (72 s), far past this wait.
    await eventually(async () => (await threadState()).open === 0, 'every warm-up connection closed on the server', 250);
    const metrics = await call(running.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    const counted = parsePrometheus(metrics.text).samples.filter((sample) => sample.name === 'provider_http_requests_total' && sample.value > 0);
    expect(counted.filter((sample) => sample.labels.path !== '/metrics')).toEqual([]);
    const list = await call(running.url, 'GET', '/function/list');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain('_wasm-engine');
  });
});
