/**
 * HTTP threads (--http-threads): several threads accept connections on the engine's port and run
 * calls where they read them, end to end over HTTP against `wasm-engine serve --http-threads 3`.
 * Every request here goes on a fresh connection, so that the kernel spreads them over the threads;
 * each test checks that whatever thread a connection lands on, the client sees the same engine:
 * deploys and deletes answered are seen on every connection, counts read right after calls are
 * exact, a paused function is paused everywhere, a looping call times out on a thread and the
 * thread goes on, refused requests are answered alike, and SIGTERM drains calls in flight.
 */
import { lookup } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI, watFixture } from '../support/fixtures.js';
import { REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { parsePrometheus, sampleValue, samplesWith } from '../support/prometheus.js';
import { listenable } from '../support/free-port.js';

const CONNECTIONS = 40;
const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;
const fixture = (dir: string, name: string): string => `file:${watFixture(dir, name)}`;

interface Answer {
  status: number;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary fields
}

/** One request on a connection of its own (no keep-alive agent), JSON answers asked. */
function fresh(url: string, method: string, path: string, body?: unknown, auth?: string): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (payload !== undefined) headers['content-type'] = 'application/json';
  if (auth !== undefined) headers.authorization = `Basic ${Buffer.from(auth).toString('base64')}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Raw bytes on a fresh connection; the whole answer until the engine closes it, its Date line dropped. */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname.replace(/^\[(.*)\]$/, '$1'));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1').replace(/\r\nDate: [^\r]*/gi, '')));
    socket.write(bytes);
  });
}

const LOOPBACK_IPV6 = await listenable('::1');

const many = <T>(n: number, task: () => Promise<T>): Promise<T[]> => Promise.all(Array.from({ length: n }, task));

async function metrics(engine: EngineProcess): Promise<ReturnType<typeof parsePrometheus>> {
  const answer = await fresh(engine.url, 'GET', '/metrics');
  expect(answer.status).toBe(200);
  return parsePrometheus(answer.text);
}

/** Requests each thread has read so far, by its label. */
async function perThread(engine: EngineProcess): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const sample of samplesWith(await metrics(engine), {})) {
    if (sample.name === 'wasm_engine_http_thread_requests_total') counts.set(sample.labels.thread ?? '', sample.value);
  }
  return counts;
}

async function deploy(engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await fresh(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra });
  expect(answer.status, answer.text).toBe(200);
}

const invoke = (engine: EngineProcess, name: string, args?: unknown): Promise<Answer> =>
  fresh(engine.url, 'POST', '/function/invoke', { function_name: name, ...(args === undefined ? {} : { args }) });

const summary = (answers: Answer[]): string[] => answers.map((a) => `${a.status} ${a.json?.output ?? a.json?.error?.code}`);

describe('HTTP threads: every connection sees the same engine', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    // A budget long enough that a busy machine does not push these small calls off the threads.
    engine = await startEngineProcess({ args: ['--http-threads', '3', '--workers', '2', '--inline-budget-ms', '50', '--inline-heavy-us', '0', '--body-limit-bytes', '4096'] });
    await deploy(engine, 'gcd', gcdImage);
  });
  afterAll(() => engine?.kill());

  it('spreads fresh connections over more than one thread, and counts each thread\'s requests in /metrics', async () => {
    const before = await perThread(engine);
    expect([...before.keys()].sort()).toEqual(['1', '2', '3']);
    expect(summary(await many(CONNECTIONS, () => invoke(engine, 'gcd', { a: 12, b: 18 })))).toEqual(Array(CONNECTIONS).fill('200 6'));
    const after = await perThread(engine);
    const served = [...after].filter(([thread, n]) => n > (before.get(thread) ?? 0));
    expect(served.length).toBeGreaterThan(1);
    const total = [...after.values()].reduce((a, b) => a + b, 0) - [...before.values()].reduce((a, b) => a + b, 0);
    // The 40 calls and the /metrics read that followed them.
    expect(total).toBeGreaterThanOrEqual(CONNECTIONS + 1);
  });

  it('a deploy answered is invokable on every connection, a delete answered gives 404 on every one', async () => {
    for (let round = 0; round < 2; round++) {
      await deploy(engine, 'fresh-gcd', gcdImage);
      expect(summary(await many(CONNECTIONS, () => invoke(engine, 'fresh-gcd', { a: 12, b: 18 })))).toEqual(Array(CONNECTIONS).fill('200 6'));
      const deleted = await fresh(engine.url, 'POST', '/function/delete', { function_name: 'fresh-gcd' });
      expect(deleted.status).toBe(200);
      expect(summary(await many(CONNECTIONS, () => invoke(engine, 'fresh-gcd', { a: 12, b: 18 })))).toEqual(Array(CONNECTIONS).fill('404 FUNCTION_NOT_FOUND'));
    }
  });

  it('invocation counts and metrics read right after calls spread over connections are exact', async () => {
    await deploy(engine, 'counted', gcdImage);
    const answers = await many(30, () => invoke(engine, 'counted', { a: 12, b: 18 }));
    const bad = await many(5, () => invoke(engine, 'counted', { a: 12, b: 'x' }));
    expect(summary(answers)).toEqual(Array(30).fill('200 6'));
    expect(summary(bad)).toEqual(Array(5).fill('400 INVALID_ARGS'));
    const listed = await fresh(engine.url, 'GET', '/system/functions');
    const entry = (listed.json as { name: string; invocationCount: number }[]).find((f) => f.name === 'counted');
    expect(entry?.invocationCount).toBe(35);
    const parsed = await metrics(engine);
    expect(sampleValue(parsed, 'wasm_engine_invocations_total', { function_name: 'counted', outcome: 'success' })).toBe(30);
    expect(sampleValue(parsed, 'wasm_engine_invocations_total', { function_name: 'counted', outcome: 'INVALID_ARGS' })).toBe(5);
  });

  it('replicas 0 pauses the function on every connection, and scaling back resumes it everywhere', async () => {
    await deploy(engine, 'paused', gcdImage);
    const scale = (replicas: number): Promise<Answer> => fresh(engine.url, 'POST', '/system/scale-function/paused', { serviceName: 'paused', replicas });
    expect((await scale(0)).status).toBe(202);
    expect(summary(await many(CONNECTIONS, () => invoke(engine, 'paused', { a: 12, b: 18 })))).toEqual(Array(CONNECTIONS).fill('503 UNAVAILABLE'));
    expect((await scale(1)).status).toBe(202);
    expect(summary(await many(CONNECTIONS, () => invoke(engine, 'paused', { a: 12, b: 18 })))).toEqual(Array(CONNECTIONS).fill('200 6'));
  });

  it('a looping call times out on the thread that read it, and that thread serves the next call on the connection', async () => {
    // Its time limit within the inline budget: stopped by its own checks where it runs.
    await deploy(engine, 'spin', fixture('integration', 'spin'), { timeout_ms: 20 });
    const onOneConnection = async (): Promise<string[]> => {
      const { Agent } = await import('node:http');
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const send = (body: unknown): Promise<Answer> =>
        new Promise((resolve, reject) => {
          const req = httpRequest(`${engine.url}/function/invoke`, { method: 'POST', agent, headers: { accept: 'application/json', 'content-type': 'application/json' } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text, json: JSON.parse(text) }));
          });
          req.on('error', reject);
          req.end(JSON.stringify(body));
        });
      try {
        const spin = await send({ function_name: 'spin' });
        const next = await send({ function_name: 'gcd', args: { a: 12, b: 18 } });
        return summary([spin, next]);
      } finally {
        agent.destroy();
      }
    };
    const results = await many(12, onOneConnection);
    expect(results).toEqual(Array(12).fill(['504 FUNCTION_TIMEOUT', '200 6']));
  });

  it('a body that is not JSON, passed on to the main thread (which closes its end after the 400), answers 400 every time', async () => {
    // The main thread answers it and closes at once: a passed-on request must have been written
    // whole by then, or the thread's write fails and the client gets a 503 (one in 25 before).
    const bytes = 'POST /function/deploy HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{"function_name": ';
    for (let round = 0; round < 10; round++) {
      const answers = await many(20, () => raw(engine.url, bytes));
      for (const answer of answers) expect(answer).toMatch(/^HTTP\/1.1 400 /);
    }
  });

  it('a 413 on deploy, a malformed request, a request without Host and answers passed on are alike on every thread', async () => {
    const big = JSON.stringify({ function_name: 'x', function_image: 'y'.repeat(8000) });
    const tooLarge = `POST /function/deploy HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big}`;
    const malformed = 'POST /function/invoke HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}';
    const hostless = 'GET /function/list HTTP/1.1\r\nConnection: close\r\n\r\n';
    // And answers passed on to the main thread, byte for byte: HEAD, an unknown route, HTTP/1.0, a
    // body that is not JSON (which ends the connection), two pipelined requests.
    const passedOn = [
      ['HEAD /function/list HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', 200],
      ['GET /nope HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\nConnection: close\r\n\r\n', 404],
      ['GET /function/list HTTP/1.0\r\nHost: h\r\n\r\n', 200],
      // A health check's way (haproxy's httpchk): HTTP/1.0 without Host.
      ['GET /readyz HTTP/1.0\r\n\r\n', 200],
      ['POST /function/query HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n{"a":', 400],
      ['GET /function/list HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', 200],
    ] as const;
    for (const [bytes, status] of [[tooLarge, 413], [malformed, 400], [hostless, 400], ...passedOn] as const) {
      const answers = await many(20, () => raw(engine.url, bytes));
      expect(answers[0]).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      expect(new Set(answers).size, answers.join('\n---\n')).toBe(1);
    }
  });
});

describe('HTTP threads: --host localhost, which the main thread binds on each of its addresses', () => {
  let engine: EngineProcess;
  let port: string;

  beforeAll(async () => {
    const env: Record<string, string> = {};
    const resolved = await lookup('localhost', { all: true });
    if (LOOPBACK_IPV6 && !resolved.some((a) => a.address === '::1')) {
      // This machine's hosts file gives localhost 127.0.0.1 only: the engine is told what most
      // machines answer, 127.0.0.1 and ::1 (README: HTTP threads, Tests).
      env.NODE_OPTIONS = `--import=${pathToFileURL(join(REPO_ROOT, 'test', 'support', 'localhost-both-families.mjs')).href}`;
    }
    engine = await startEngineProcess({ args: ['--host', 'localhost', '--http-threads', '3', '--workers', '1', '--inline-budget-ms', '50', '--inline-heavy-us', '0'], env });
    port = new URL(engine.url).port;
    await deploy(engine, 'gcd', gcdImage);
  });
  afterAll(() => engine?.kill());

  /** Threads that read at least two of `CONNECTIONS` fresh connections to `host` (a /metrics read is one). */
  async function threadsServing(host: string): Promise<string[]> {
    const before = await perThread(engine);
    const url = `http://${host}:${port}`;
    const body = { function_name: 'gcd', args: { a: 12, b: 18 } };
    expect(summary(await many(CONNECTIONS, () => fresh(url, 'POST', '/function/invoke', body)))).toEqual(Array(CONNECTIONS).fill('200 6'));
    const after = await perThread(engine);
    return [...after].filter(([thread, n]) => n - (before.get(thread) ?? 0) >= 2).map(([thread]) => thread);
  }

  it('fresh connections to 127.0.0.1 are spread over more than one thread', async () => {
    expect((await threadsServing('127.0.0.1')).length).toBeGreaterThan(1);
  });

  it.skipIf(!LOOPBACK_IPV6)('fresh connections to [::1] are spread over more than one thread too (skipped where ::1 cannot be bound)', async () => {
    expect((await threadsServing('[::1]')).length).toBeGreaterThan(1);
  });

  it.skipIf(!LOOPBACK_IPV6)('[::1] answers byte for byte as 127.0.0.1 does on every thread, the main one included: a request without Host gets the engine\'s 400 (skipped where ::1 cannot be bound)', async () => {
    const hostless = 'GET /function/list HTTP/1.1\r\nConnection: close\r\n\r\n';
    // 40 fresh connections each: some reach the main thread (1 in 3), whose second address was
    // served by a plain server of Fastify's, which answered Node's own empty 400.
    const answers = [...(await many(40, () => raw(`http://127.0.0.1:${port}`, hostless))), ...(await many(40, () => raw(`http://[::1]:${port}`, hostless)))];
    expect(answers[0]).toMatch(/^HTTP\/1.1 400 [^]*an HTTP\/1.1 request must have a Host header/);
    expect(new Set(answers).size, [...new Set(answers)].join('\n---\n')).toBe(1);
  });
});

describe('HTTP threads: one concurrency bound for every thread', () => {
  it('a call running under the function\'s only slot holds it on every thread: the others are refused, then served', async () => {
    const engine = await startEngineProcess({
      args: ['--http-threads', '3', '--workers', '2', '--concurrency-per-replica', '1', '--max-queue-per-function', '0', '--inline-budget-ms', '50', '--inline-heavy-us', '0'],
    });
    try {
      await deploy(engine, 'slow', fixture('integration', 'inline-slow'), { timeout_ms: 60_000 });
      // Without args it returns at once: inline, on whichever thread read it. One at a time: the
      // slot is the only one, and threads run calls at the same time.
      const oneByOne = async (): Promise<string[]> => {
        const answers: Answer[] = [];
        for (let i = 0; i < 20; i++) answers.push(await invoke(engine, 'slow', []));
        return summary(answers);
      };
      expect(await oneByOne()).toEqual(Array(20).fill('200 done'));
      const holder = invoke(engine, 'slow', ['xxxxxxxxxxxxxxxxxxx']);
      for (let i = 0; ; i++) {
        if ((sampleValue(await metrics(engine), 'wasm_engine_invocations_in_flight') ?? 0) >= 1) break;
        if (i > 400) throw new Error('the long call never was in flight');
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(summary(await many(20, () => invoke(engine, 'slow', [])))).toEqual(Array(20).fill('503 OVERLOADED'));
      expect(summary([await holder])).toEqual(['200 done']);
      expect(await oneByOne()).toEqual(Array(20).fill('200 done'));
    } finally {
      await engine.kill();
    }
  });
});

describe('HTTP threads: a deleted function lets go of its memory on every thread', () => {
  it('every thread drops its idle instances at the delete, with no further call: wasm_engine_inline_instances_bytes falls to 0', async () => {
    const engine = await startEngineProcess({ args: ['--http-threads', '3', '--workers', '1', '--inline-budget-ms', '50', '--inline-heavy-us', '0'] });
    try {
      await deploy(engine, 'memory', fixture('integration', 'inline-memory'));
      const held = async (): Promise<number> => sampleValue(await metrics(engine), 'wasm_engine_inline_instances_bytes') ?? 0;
      // An idle 8 MiB instance on each of the three threads, once each has run the function.
      const everyThread = 3 * 128 * 65536;
      for (let round = 0; ; round++) {
        expect(summary(await many(20, () => invoke(engine, 'memory')))).toEqual(Array(20).fill('200 ok'));
        if ((await held()) >= everyThread) break;
        if (round > 20) throw new Error(`the threads' idle instances hold ${await held()} bytes, not ${everyThread}`);
      }
      expect((await fresh(engine.url, 'POST', '/function/delete', { function_name: 'memory' })).status).toBe(200);
      for (let i = 0; ; i++) {
        const bytes = await held();
        if (bytes === 0) break;
        if (i > 200) throw new Error(`idle instances still hold ${bytes} bytes after the delete`);
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await engine.kill();
    }
  });
});

describe('HTTP threads: Basic auth on invocations', () => {
  it('guards invocations on every thread: 401 without the credentials, 200 with them', async () => {
    const engine = await startEngineProcess({
      args: ['--http-threads', '3', '--workers', '2', '--basic-auth-user', 'admin', '--basic-auth-password', 'secret', '--auth-invoke', 'true'],
    });
    try {
      const deployed = await fresh(engine.url, 'POST', '/function/deploy', { function_name: 'gcd', function_image: gcdImage }, 'admin:secret');
      expect(deployed.status, deployed.text).toBe(200);
      const body = { function_name: 'gcd', args: { a: 12, b: 18 } };
      expect(summary(await many(20, () => fresh(engine.url, 'POST', '/function/invoke', body)))).toEqual(Array(20).fill('401 UNAUTHORIZED'));
      expect(summary(await many(20, () => fresh(engine.url, 'POST', '/function/invoke', body, 'admin:secret')))).toEqual(Array(20).fill('200 6'));
    } finally {
      await engine.kill();
    }
  });
});

describe('HTTP threads: one', () => {
  it('WASM_ENGINE_HTTP_THREADS=1: one thread reads every request, the main thread none', async () => {
    const engine = await startEngineProcess({ args: ['--workers', '1'], env: { WASM_ENGINE_HTTP_THREADS: '1' } });
    try {
      await deploy(engine, 'gcd', gcdImage);
      expect(summary(await many(20, () => invoke(engine, 'gcd', { a: 12, b: 18 })))).toEqual(Array(20).fill('200 6'));
      const counts = await perThread(engine);
      expect([...counts.keys()]).toEqual(['1']);
      // The deploy, the 20 calls and the /metrics read.
      expect(counts.get('1')).toBe(22);
    } finally {
      await engine.kill();
    }
  });
});

describe('HTTP threads: SIGTERM', () => {
  it('drains the calls in flight that came on every thread, then exits 0', async () => {
    const engine = await startEngineProcess({ args: ['--http-threads', '3', '--workers', '2'] });
    try {
      await deploy(engine, 'slow', fixture('integration', 'inline-slow'), { timeout_ms: 60_000 });
      const calls = many(6, () => invoke(engine, 'slow', ['xx']));
      for (let i = 0; ; i++) {
        if ((sampleValue(await metrics(engine), 'wasm_engine_invocations_in_flight') ?? 0) >= 6) break;
        if (i > 400) throw new Error('the calls never were in flight');
        await new Promise((r) => setTimeout(r, 25));
      }
      const code = engine.stop();
      expect(summary(await calls)).toEqual(Array(6).fill('200 done'));
      expect(await code).toBe(0);
    } finally {
      await engine.kill();
    }
  });
});
