/**
 * POST /function/invoke (src/api/invoke-route.ts), one request per connection, as the engine
 * serves it: read by a real HTTP thread (HttpThreads in this process, the compiled thread) in
 * front of the main thread's server. Every answer of SPEC §1–§2 the route gives — successes,
 * argument and body errors, limits — byte for byte but the Date header. The snapshots were recorded from the historical Fastify route (the one that read
 * the body through Fastify's parser and ajv) before the route had a single implementation, so a
 * change of any byte shows. test/api/invoke-conversations.test.ts holds keep-alive and pipelining.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ClientGone, checkInvokeBody, parseBody } from '../../src/api/invoke-route.js';
import { httpCountsObserver } from '../../src/api/platform.js';
import { buildServer } from '../../src/api/server.js';
import type { HttpThreads } from '../../src/api/threads/http-threads.js';
import { EngineError } from '../../src/errors.js';
import { EXAMPLES_WASM, watFixture } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';
import { stopThreadInFront, threadInFront } from '../support/thread-in-front.js';

const LIMIT = 2048;

/** Sends raw bytes, returns everything the server wrote until it closed the connection. */
function exchange(port: number, request: string | Buffer, { endAfterWrite = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A server that answers before reading a too-large body may reset the connection.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(err);
    });
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.write(request);
    if (endAfterWrite) socket.end();
  });
}

const withoutDate = (answer: string): string => answer.replace(/^date: .*\r\n/im, '');

function post(body: string | undefined, headers: string[] = ['Content-Type: application/json'], path = '/function/invoke', method = 'POST'): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers];
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body ?? ''}`;
}

describe('POST /function/invoke', () => {
  let inProcess: InProcessEngine;
  let app: FastifyInstance;
  let threads: HttpThreads;
  let port: number;
  /** POST /function/invoke requests that reached Fastify. */
  let fastifyInvokes = 0;

  const listen = async (server: FastifyInstance): Promise<number> => {
    await server.listen({ port: 0, host: '127.0.0.1' });
    const address = server.server.address();
    if (typeof address !== 'object' || address === null) throw new Error('no port');
    return address.port;
  };

  beforeAll(async () => {
    inProcess = await startInProcess({ concurrencyPerReplica: 1, maxWaiting: 0, inlineBudgetMs: 2 });
    const { engine, metrics, logs } = inProcess;
    await engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
    await engine.deploy({ name: 'authentication', image: `file:${join(EXAMPLES_WASM, 'authentication.wasm')}` });
    await engine.deploy({ name: 'trap', image: `file:${watFixture('integration', 'trap')}` });
    await engine.deploy({ name: 'spin', image: `file:${watFixture('integration', 'spin')}`, limits: { timeout_ms: 300 } });
    const platform = { metrics, logs, authInvoke: false, notReadyReason: () => undefined, version: { release: 't', sha: 't' } };
    app = buildServer({ engine, bodyLimitBytes: LIMIT, platform });
    app.addHook('onRequest', async (request) => {
      if (request.method === 'POST' && request.url.startsWith('/function/invoke')) fastifyInvokes++;
    });
    ({ threads, port } = await threadInFront(app, { engine, bodyLimitBytes: LIMIT, observeHttp: httpCountsObserver({ metrics }), registry: metrics.registry }));
  });

  afterAll(async () => {
    await stopThreadInFront(threads, app);
    await inProcess?.close();
  });

  /** The answer (Date left out), which must be the recorded one. */
  const answer = async (request: string): Promise<string> => {
    const text = withoutDate(await exchange(port, request));
    expect(text).toMatchSnapshot();
    return text;
  };

  const json = ['Content-Type: application/json', 'Accept: application/json'];
  const cases: [string, string][] = [
    ['text success', post('{"function_name":"gcd","args":{"a":"12","b":"18"}}')],
    ['JSON success', post('{"function_name":"gcd","args":{"a":12,"b":18}}', json)],
    ['positional args', post('{"function_name":"gcd","args":["12","18"]}')],
    ['string ABI', post('{"function_name":"authentication","args":{"arg_uri":"yes","arg_body":"yes","arg_secret":"12345"}}')],
    ['Accept in mixed case', post('{"function_name":"gcd","args":["12","18"]}', ['Accept: Application/JSON'])],
    ['two Content-Types', post('{"function_name":"gcd","args":["1","1"]}', ['Content-Type: application/json', 'Content-Type: text/plain'])],
    ['form Content-Type', post('{"function_name":"gcd","args":["4","6"]}', ['Content-Type: application/x-www-form-urlencoded'])],
    ['no Content-Type, with body', post('{"function_name":"gcd","args":["4","6"]}', [])],
    ['query string', post('{"function_name":"gcd","args":["4","6"]}', undefined, '/function/invoke?x=1')],
    ['bad numeric arg', post('{"function_name":"gcd","args":{"a":"12","b":"x"}}', json)],
    ['missing args', post('{"function_name":"gcd"}')],
    ['args null', post('{"function_name":"gcd","args":null}')],
    ['args a string', post('{"function_name":"gcd","args":"12"}', json)],
    ['nested arg', post('{"function_name":"gcd","args":{"a":{"b":1}}}')],
    ['unknown function', post('{"function_name":"nope","args":{}}')],
    ['unknown function, JSON', post('{"function_name":"nope"}', json)],
    ['bad function name', post('{"function_name":"../etc"}')],
    ['function_name a number', post('{"function_name":5}')],
    ['function_name null', post('{"function_name":null}')],
    ['missing function_name', post('{}')],
    ['unknown field only', post('{"extra":1}')],
    ['unknown field', post('{"function_name":"gcd","extra":1}', json)],
    ['unknown field and bad name', post('{"function_name":5,"extra":1}')],
    ['__proto__ field', post('{"function_name":"gcd","__proto__":{"x":1}}')],
    ['duplicate key', post('{"function_name":"x","function_name":"gcd","args":["2","4"]}')],
    ['body null', post('null')],
    ['body array', post('[1,2]', json)],
    ['body string', post('"gcd"')],
    ['body number', post('5')],
    ['invalid JSON', post('{"function_name":')],
    ['invalid JSON, JSON answer', post('{', json)],
    ['blank body', post('  \n ')],
    ['empty body with Content-Type', post('')],
    ['no body, no Content-Type', post(undefined, [])],
    ['no body, JSON answer', post(undefined, ['Accept: application/json'])],
    ['multi-byte text', post('{"function_name":"gcd","args":{"a":"１２","b":"é"}}', json)],
    ['trap', post('{"function_name":"trap"}')],
    ['trap, JSON', post('{"function_name":"trap"}', json)],
    ['body over the limit (Content-Length)', post(`{"function_name":"gcd","args":["${'1'.repeat(LIMIT)}"]}`)],
    ['body over the limit, JSON', post(`{"function_name":"gcd","args":["${'1'.repeat(LIMIT)}"]}`, json)],
    ['GET', post(undefined, [], '/function/invoke', 'GET')],
    ['HEAD', post(undefined, [], '/function/invoke', 'HEAD')],
    ['PUT', post('{"function_name":"gcd"}', undefined, '/function/invoke', 'PUT')],
    ['trailing slash', post('{"function_name":"gcd","args":["2","4"]}', undefined, '/function/invoke/')],
    ['longer path', post('{"function_name":"gcd","args":["2","4"]}', undefined, '/function/invokes')],
  ];

  it.each(cases)('%s: the recorded answer', async (_label, request) => {
    await answer(request);
  });

  it('POST /function/invoke, whatever its framing, is answered on the thread and never reaches Fastify; other requests do', async () => {
    fastifyInvokes = 0;
    await answer(post('{"function_name":"gcd","args":["2","4"]}'));
    const body = '{"function_name":"gcd","args":["2","4"]}';
    const head = ['POST /function/invoke HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', 'Transfer-Encoding: chunked'].join('\r\n');
    expect(await answer(`${head}\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(fastifyInvokes).toBe(0);
    await answer(post('{"function_name":"gcd"}', undefined, '/function/invoke/'));
    expect(fastifyInvokes).toBe(1);
    fastifyInvokes = 0;
  });

  it('answers the expected bytes (a sample, so that "the same" is not "the same mistake")', async () => {
    expect(await answer(post('{"function_name":"gcd","args":{"a":"12","b":"18"}}'))).toMatch(
      /^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain; charset=utf-8\r\ncontent-length: 28\r\n(.*\r\n)*\r\nstatus code: 200, message: 6$/,
    );
    const bad = await answer(post('{"function_name":"gcd","extra":1}', json));
    expect(bad).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(bad.endsWith('{"status":400,"error":{"code":"INVALID_REQUEST","message":"unknown field extra"}}')).toBe(true);
    const big = await answer(post(`{"function_name":"gcd","args":["${'1'.repeat(LIMIT)}"]}`));
    expect(big).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\nconnection: close\r\n/);
    expect(big.endsWith('status code: 413, message: request body is larger than the limit (PAYLOAD_TOO_LARGE)')).toBe(true);
  });

  it('a chunked body over the limit is refused with 413', async () => {
    const head = ['POST /function/invoke HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', 'Transfer-Encoding: chunked', 'Content-Type: application/json'].join('\r\n');
    const chunk = 'x'.repeat(LIMIT + 10);
    expect(await answer(`${head}\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`)).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('a call over its time limit answers 504 FUNCTION_TIMEOUT', async () => {
    expect(await answer(post('{"function_name":"spin"}', json))).toMatch(/"code":"FUNCTION_TIMEOUT"/);
  });

  it('OVERLOADED carries Retry-After', async () => {
    // One slot per function and no waiting room: a second spin while one runs is refused.
    const first = exchange(port, post('{"function_name":"spin"}'));
    await vi.waitFor(() => expect(inProcess.engine.inflightInvocations).toBe(1));
    const second = withoutDate(await exchange(port, post('{"function_name":"spin"}', json)));
    expect(second).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application\/json; charset=utf-8\r\n/);
    expect(second).toMatch(/"code":"OVERLOADED"/);
    await first;
  });

  it('counts its answers in the HTTP metrics under the route, as Fastify did', async () => {
    const count = (text: string, code: number): number => {
      const m = new RegExp(`^provider_http_requests_total\\{method="POST",path="/function/invoke",code="${code}"\\} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = await inProcess.metrics.text();
    await exchange(port, post('{"function_name":"gcd","args":["2","4"]}'));
    await exchange(port, post('{"function_name":"nope"}'));
    await exchange(port, post('{', ['Content-Type: application/json']));
    await threads.flush();
    const after = await inProcess.metrics.text();
    expect(count(after, 200) - count(before, 200)).toBe(1);
    expect(count(after, 404) - count(before, 404)).toBe(1);
    expect(count(after, 400) - count(before, 400)).toBe(1);
  });

  it('with Basic auth on invocations, through Fastify\'s hooks first: refused without the credentials, the same answers with them', async () => {
    const { engine, metrics, logs } = inProcess;
    const credentials = { user: 'u', password: 'secret-password' };
    const platform = { metrics, logs, credentials, authInvoke: true, notReadyReason: () => undefined, version: { release: 't', sha: 't' } };
    const guarded = buildServer({ engine, bodyLimitBytes: LIMIT, platform });
    try {
      const guardedPort = await listen(guarded);
      const authorization = `Authorization: Basic ${Buffer.from('u:secret-password').toString('base64')}`;
      expect(await exchange(guardedPort, post('{"function_name":"gcd","args":["2","4"]}'))).toMatch(/^HTTP\/1\.1 401 /);
      for (const [body, headers] of [
        ['{"function_name":"gcd","args":{"a":"12","b":"18"}}', ['Content-Type: application/json']],
        ['{"function_name":"gcd","extra":1}', json],
        [`{"function_name":"gcd","args":["${'1'.repeat(LIMIT)}"]}`, ['Content-Type: application/json']],
      ] as const) {
        const withAuth = withoutDate(await exchange(guardedPort, post(body, [...headers, authorization])));
        expect(withAuth).toBe(withoutDate(await exchange(port, post(body, [...headers]))));
      }
    } finally {
      await guarded.close();
    }
  });

  it('with Basic auth on invocations, an HTTP thread answers those with the credentials itself and passes on the others, which are refused', async () => {
    const { engine, metrics, logs } = inProcess;
    const credentials = { user: 'u', password: 'secret-password' };
    const platform = { metrics, logs, credentials, authInvoke: true, notReadyReason: () => undefined, version: { release: 't', sha: 't' } };
    const guarded = buildServer({ engine, bodyLimitBytes: LIMIT, platform });
    let reachedFastify = 0;
    // Counted as answered (a refusal ends the onRequest hooks before any added here would run).
    guarded.addHook('onResponse', async (request) => {
      if (request.url.startsWith('/function/invoke')) reachedFastify++;
    });
    const { threads: guardedThreads, port: threadPort } = await threadInFront(guarded, { engine, bodyLimitBytes: LIMIT, invokeCredentials: credentials });
    try {
      const authorization = `Authorization: Basic ${Buffer.from('u:secret-password').toString('base64')}`;
      const wrong = `Authorization: Basic ${Buffer.from('u:wrong').toString('base64')}`;
      for (const headers of [[], [wrong]]) {
        expect(await exchange(threadPort, post('{"function_name":"gcd","args":["2","4"]}', ['Content-Type: application/json', ...headers]))).toMatch(/^HTTP\/1\.1 401 /);
      }
      expect(reachedFastify).toBe(2);
      for (const [body, headers] of [
        ['{"function_name":"gcd","args":{"a":"12","b":"18"}}', ['Content-Type: application/json']],
        ['{"function_name":"gcd","extra":1}', json],
      ] as const) {
        const withAuth = withoutDate(await exchange(threadPort, post(body, [...headers, authorization])));
        expect(withAuth).toBe(withoutDate(await exchange(port, post(body, [...headers]))));
      }
      expect(reachedFastify).toBe(2);
    } finally {
      await stopThreadInFront(guardedThreads, guarded);
    }
  });

  it('a client that goes away drops its queued call at once', async () => {
    // One slot and room to wait: the second spin waits for the first (which runs to its 600 ms limit).
    const waiting = await startInProcess({ concurrencyPerReplica: 1, maxWaiting: 4 });
    const own = buildServer({ engine: waiting.engine, bodyLimitBytes: LIMIT });
    try {
      await waiting.engine.deploy({ name: 'spin', image: `file:${watFixture('integration', 'spin')}`, limits: { timeout_ms: 600 } });
      const ownPort = await listen(own);
      const first = exchange(ownPort, post('{"function_name":"spin"}'));
      await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(1));
      const socket = connect(ownPort, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(post('{"function_name":"spin"}'));
      await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(2));
      const left = performance.now();
      socket.destroy();
      await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(1), { interval: 5 });
      // Dropped when the client left, not when the first call ended.
      expect(performance.now() - left).toBeLessThan(200);
      expect(await first).toMatch(/^HTTP\/1\.1 504 /);
      expect(waiting.engine.inflightInvocations).toBe(0);
    } finally {
      await own.close();
      await waiting.close();
    }
  });

  it('ClientGone calls each listener once, not after removal, and only once aborted', () => {
    const gone = new ClientGone();
    const seen: string[] = [];
    gone.addEventListener('abort', () => seen.push('a'));
    const removed = (): void => {
      seen.push('removed');
    };
    gone.addEventListener('abort', removed);
    gone.removeEventListener('abort', removed);
    gone.addEventListener('abort', () => seen.push('b'));
    expect(gone.aborted).toBe(false);
    gone.abort();
    gone.abort();
    expect(gone.aborted).toBe(true);
    expect(seen).toEqual(['a', 'b']);
  });
});

describe('checkInvokeBody', () => {
  const message = (body: unknown): string => {
    try {
      checkInvokeBody(body);
      return 'ok';
    } catch (err) {
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('INVALID_REQUEST');
      return (err as EngineError).message;
    }
  };

  it('accepts a name with or without args and returns them as sent', () => {
    expect(checkInvokeBody({ function_name: 'f' })).toEqual({ name: 'f', args: undefined });
    const args = { a: '1' };
    expect(checkInvokeBody({ function_name: 'f', args }).args).toBe(args);
  });

  it('names the first problem as the schema does', () => {
    expect(message(undefined)).toBe('request body must be a JSON object');
    expect(message(null)).toBe('request body must be a JSON object');
    expect(message([])).toBe('request body must be a JSON object');
    expect(message('f')).toBe('request body must be a JSON object');
    expect(message({})).toBe('missing field function_name');
    expect(message({ args: [] })).toBe('missing field function_name');
    expect(message({ function_name: 'f', more: 1 })).toBe('unknown field more');
    expect(message({ function_name: 1 })).toBe('field function_name must be string');
  });

  it('reads blank bodies as none and names bad JSON', () => {
    expect(parseBody(undefined)).toBeUndefined();
    expect(parseBody(' \n')).toBeUndefined();
    expect(parseBody('{"a":1}')).toEqual({ a: 1 });
    expect(() => parseBody('{')).toThrow(/^request body is not valid JSON: /);
  });
});
