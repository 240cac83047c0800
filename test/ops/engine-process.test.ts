/**
 * The operator's view of a running engine (`wasm-engine serve` as a child process, over HTTP on
 * loopback): the raw route with a WASI function that echoes its stdin and Http_* environment,
 * function logs as NDJSON (and followed), /metrics read with a Prometheus text parser, an update
 * in place under load with no failed invocation, probes, and graceful shutdown.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cFixture, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call } from '../support/http.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';
import { eventually } from '../support/eventually.js';

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function raw(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const answer = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body === undefined ? {} : { body }) });
  return { status: answer.statusCode, headers: answer.headers, text: await answer.body.text() };
}

async function deploy(base: string, service: string, image: string, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await call(base, 'POST', '/system/functions', { service, image, ...extra });
  expect(answer.status, answer.text).toBe(202);
}

async function scrape(base: string) {
  const answer = await raw(base, 'GET', '/metrics');
  expect(answer.status).toBe(200);
  return parsePrometheus(answer.text);
}

describe('a running engine, as an operator sees it', () => {
  let engine: EngineProcess;
  let echoImage: string;

  beforeAll(async () => {
    echoImage = `file:${cFixture('ops', 'echo-env')}`;
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    await deploy(engine.url, 'echo', echoImage, { envVars: { GREETING: 'hi' } });
  });
  afterAll(async () => {
    await engine?.kill();
  });

  it('probes: /healthz and /readyz answer 200', async () => {
    expect(await raw(engine.url, 'GET', '/healthz')).toMatchObject({ status: 200, text: 'OK\n' });
    expect(await raw(engine.url, 'GET', '/readyz')).toMatchObject({ status: 200, text: 'ready\n' });
  });

  it('raw route, WASI: the body is stdin, stdout the answer, the request reaches the function as Http_* variables', async () => {
    const answer = await raw(engine.url, 'PUT', '/function/echo/orders/42?verbose=1&x=a%20b', 'hello, stdin', {
      'content-type': 'text/x-test',
      'x-request-id': 'abc-123',
    });
    expect(answer.status, answer.text).toBe(200);
    const [body, env] = answer.text.split('\n--env--\n');
    expect(body).toBe('hello, stdin');
    const vars = Object.fromEntries(env!.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(vars).toMatchObject({
      Http_Method: 'PUT',
      Http_Path: '/orders/42',
      Http_Query: 'verbose=1&x=a%20b',
      Http_Content_Type: 'text/x-test',
      Http_X_Request_Id: 'abc-123',
      Http_ContentLength: '12',
      Http_Host: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      GREETING: 'hi',
    });
    expect(answer.headers['content-type']).toBe('text/x-test');
  });

  it('raw route, WASI: a GET without body or query gives empty stdin and no Http_Query', async () => {
    const answer = await raw(engine.url, 'GET', '/function/echo');
    expect(answer.status).toBe(200);
    expect(answer.text.startsWith('\n--env--\n')).toBe(true);
    expect(answer.text).toMatch(/^Http_Path=\/$/m);
    expect(answer.text).not.toMatch(/Http_Query/);
  });

  it('raw route errors carry the §2 status and a short text', async () => {
    const missing = await raw(engine.url, 'POST', '/function/ghost', 'x');
    expect(missing.status).toBe(404);
    expect(missing.text).toMatch(/^status code: 404, message: .*ghost.* \(NOT_FOUND\)\n$/);
  });

  it('/system/logs answers the stderr lines as NDJSON faas-provider Messages', async () => {
    for (let i = 0; i < 3; i += 1) await raw(engine.url, 'POST', '/function/echo', 'x'.repeat(i + 1));
    const answer = await raw(engine.url, 'GET', '/system/logs?name=echo&tail=3');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = answer.text.split('\n');
    expect(lines.pop()).toBe('');
    const messages = lines.map((l) => JSON.parse(l) as Record<string, string>);
    expect(messages.map((m) => m.text)).toEqual(['echo-env: read 1 bytes', 'echo-env: read 2 bytes', 'echo-env: read 3 bytes']);
    for (const m of messages) {
      expect(Object.keys(m).sort()).toEqual(['instance', 'name', 'namespace', 'text', 'timestamp']);
      expect(m).toMatchObject({ name: 'echo', namespace: 'openfaas-fn' });
      expect(Number.isNaN(Date.parse(m.timestamp!))).toBe(false);
    }
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await raw(engine.url, 'GET', `/system/logs?name=echo&since=${encodeURIComponent(future)}`)).text).toBe('');
    expect((await raw(engine.url, 'GET', '/system/logs?name=ghost')).status).toBe(404);
    expect((await raw(engine.url, 'GET', '/system/logs')).status).toBe(400);
    expect((await raw(engine.url, 'GET', '/system/logs?name=echo&since=yesterday')).status).toBe(400);
  });

  it('/system/logs?follow=true streams new lines as they are written', async () => {
    const controller = new AbortController();
    const stream = await request(`${engine.url}/system/logs?name=echo&tail=1&follow=true`, { signal: controller.signal });
    expect(stream.statusCode).toBe(200);
    const seen: string[] = [];
    let buffered = '';
    const reader = (async () => {
      try {
        for await (const chunk of stream.body) {
          buffered += chunk.toString();
          let at: number;
          while ((at = buffered.indexOf('\n')) >= 0) {
            seen.push((JSON.parse(buffered.slice(0, at)) as { text: string }).text);
            buffered = buffered.slice(at + 1);
          }
        }
      } catch {
        // aborted by the test
      }
    })();
    await eventually(async () => seen.length >= 1, 'the tail line');
    await raw(engine.url, 'POST', '/function/echo', 'followed!');
    await eventually(async () => seen.includes('echo-env: read 9 bytes'), 'a followed line');
    controller.abort();
    await reader;
    expect(seen[0]).toMatch(/^echo-env: read \d+ bytes$/);
  });

  it('/metrics counts the traffic it saw, read with a Prometheus text parser', async () => {
    const before = await scrape(engine.url);
    const successes = sampleValue(before, 'wasm_engine_invocations_total', { function_name: 'echo', outcome: 'success' }) ?? 0;
    const requests = sampleValue(before, 'provider_http_requests_total', { method: 'POST', path: '/function/:name', code: '200' }) ?? 0;
    for (let i = 0; i < 4; i += 1) await raw(engine.url, 'POST', '/function/echo', 'm');
    await call(engine.url, 'POST', '/function/invoke', { function_name: 'echo' });
    const after = await scrape(engine.url);
    expect(sampleValue(after, 'wasm_engine_invocations_total', { function_name: 'echo', outcome: 'success' })).toBe(successes + 5);
    expect(sampleValue(after, 'provider_http_requests_total', { method: 'POST', path: '/function/:name', code: '200' })).toBe(requests + 4);
    expect(sampleValue(after, 'wasm_engine_workers')).toBe(2);
    expect(sampleValue(after, 'wasm_engine_functions')).toBeGreaterThanOrEqual(1);
    expect(after.types.get('process_cpu_user_seconds_total')).toBe('counter');
  });

  it('an update in place under load fails no invocation', async () => {
    const v1 = `file:${watFixture('ops', 'version-1')}`;
    const v2 = `file:${watFixture('ops', 'version-2')}`;
    await deploy(engine.url, 'live', v1);
    const answers = new Map<string, number>();
    let stop = false;
    const clients = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const answer = await raw(engine.url, 'GET', '/function/live');
        const key = `${answer.status} ${answer.text}`;
        answers.set(key, (answers.get(key) ?? 0) + 1);
      }
    });
    // Let the load start before the swaps, then swap back and forth under it.
    await eventually(async () => [...answers.values()].reduce((a, b) => a + b, 0) >= 20, 'load running');
    for (const image of [v2, v1, v2]) {
      const put = await call(engine.url, 'PUT', '/system/functions', { service: 'live', image, labels: { image } });
      expect(put.status, put.text).toBe(200);
    }
    stop = true;
    await Promise.all(clients);
    const failures = [...answers.keys()].filter((k) => k !== '200 1' && k !== '200 2');
    expect(failures).toEqual([]);
    expect(answers.get('200 1')).toBeGreaterThan(0);
    expect((await raw(engine.url, 'GET', '/function/live')).text).toBe('2');
    const status = await call(engine.url, 'GET', '/system/function/live');
    expect(status.json).toMatchObject({ image: v2, labels: { image: v2 } });
  });
});

describe('graceful shutdown', () => {
  it('lets the in-flight invocation finish, answers new ones 503, and exits 0', async () => {
    const engine = await startEngineProcess({ args: ['--workers', '2', '--shutdown-timeout-ms', '20000'] });
    try {
      await deploy(engine.url, 'busy', `file:${cFixture('ops', 'busy')}`);
      const inFlight = call(engine.url, 'POST', '/function/invoke', { function_name: 'busy', args: ['2000'] });
      await eventually(async () => sampleValue(await scrape(engine.url), 'wasm_engine_invocations_in_flight') === 1, 'an invocation in flight');
      engine.child.kill('SIGTERM');
      await eventually(async () => (await raw(engine.url, 'GET', '/readyz')).status === 503, 'readyz says not ready');
      const refused = await call(engine.url, 'POST', '/function/invoke', { function_name: 'busy', args: ['1'] }, { json: true });
      expect(refused.status).toBe(503);
      expect(refused.json.error).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/shutting down/) });
      const rawRefused = await raw(engine.url, 'GET', '/function/busy');
      expect(rawRefused.status).toBe(503);
      const finished = await inFlight;
      expect(finished.text).toBe('status code: 200, message: done');
      expect(await engine.exited).toBe(0);
      expect(engine.output.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    } finally {
      await engine.kill();
    }
  });
});
