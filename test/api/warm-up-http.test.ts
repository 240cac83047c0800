/**
 * The engine's HTTP warm-up (src/api/warm-up.ts), seen from a started engine: its requests are
 * served by the engine's own server over real connections (the path every later request takes),
 * and it leaves nothing behind — no open connection, nothing in the metrics, no function.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Server as HttpServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, startEngine, type RunningEngine } from '../../src/app.js';
import { loadConfig } from '../../src/config/config-file.js';
import { call } from '../support/http.js';
import { parsePrometheus } from '../support/prometheus.js';
import { eventually } from '../support/eventually.js';

function openConnections(running: RunningEngine): Promise<number> {
  return new Promise<number>((resolve, reject) => running.app.server.getConnections((err, count) => (err ? reject(err) : resolve(count))));
}

describe('the HTTP warm-up', () => {
  let running: RunningEngine;
  let dataDir: string;
  const served: string[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'we-warm-up-'));
    // Every request any HTTP server of this process is handed, as it is handed it.
    const prototype = EventEmitter.prototype as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
    const emit = prototype.emit;
    prototype.emit = function (this: EventEmitter, event: string | symbol, ...args: unknown[]): boolean {
      const request = args[0] as IncomingMessage | undefined;
      if (event === 'request' && this instanceof HttpServer && request !== undefined) served.push(`${request.method} ${request.url}`);
      return emit.call(this, event, ...args);
    };
    try {
      const config = loadConfig({ port: '0', host: '127.0.0.1', 'data-dir': dataDir, 'log-level': 'silent', 'http-threads': '1', workers: '1' }, {});
      running = await startEngine(config, createLogger(config));
    } finally {
      prototype.emit = emit;
    }
  });
  afterAll(async () => {
    await running?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("is served by the engine's own server, on every route family, the way a client's requests are", () => {
    expect(served).toContain('POST /function/invoke');
    expect(served).toContain('POST /function/_wasm-engine-missing');
    expect(served).toContain('POST /function/query');
    expect(served).toContain('GET /healthz');
  });

  it('leaves no connection open, no request in the metrics and no function behind', async () => {
    // The warm-up's client ends come first; the server's ends follow as it reads them. A connection
    // left open would stay for the keep-alive timeout (72 s), far past this wait.
    await eventually(async () => (await openConnections(running)) === 0, 'every warm-up connection closed on the server', 250);
    const metrics = await call(running.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    const counted = parsePrometheus(metrics.text).samples.filter((sample) => sample.name === 'provider_http_requests_total' && sample.value > 0);
    expect(counted.filter((sample) => sample.labels.path !== '/metrics')).toEqual([]);
    const list = await call(running.url, 'GET', '/function/list');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain('_wasm-engine');
  });
});
