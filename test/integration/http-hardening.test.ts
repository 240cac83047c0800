/**
 * What a client or a module sends cannot crash, wedge or exhaust the engine's HTTP side (issue
 * 10), driven over real sockets against `wasm-engine serve`: an output cap the engine can answer
 * in both formats, stderr kept for logs bounded, per-connection memory bounded whatever a client
 * reads (pipelining invokes, following logs), no credentials handed to guests on the raw route,
 * the §2 error shape for requests Node or Fastify refuse before a route runs, and a 413 a client
 * still sending can read. No test asserts a duration: each waits for an event or a count.
 */
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI, cFixture, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call } from '../support/http.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';
import { eventually } from '../support/eventually.js';

const MiB = 1024 * 1024;
const OUTPUT_CAP = 8 * MiB;

async function deploy(engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra });
  expect(answer.status, answer.text).toBe(200);
}

/** The engine process's resident memory (its worker threads included), from /proc. */
function rssBytes(engine: EngineProcess): number {
  const status = readFileSync(`/proc/${engine.child.pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error('no VmRSS in /proc status');
  return Number(kb[1]) * 1024;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function invocations(engine: EngineProcess, fn: string): Promise<number> {
  const answer = await request(`${engine.url}/metrics`);
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith('wasm_engine_invocations_total'));
  return sampleValue(parsePrometheus(lines.join('\n')), 'wasm_engine_invocations_total', { function_name: fn, outcome: 'success' }) ?? 0;
}

/** Waits until a count stops moving (the same value on `still` polls in a row), and returns it. */
async function settled(read: () => Promise<number>, still = 6, tries = 400): Promise<number> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < tries; i++) {
    const now = await read();
    same = now === last ? same + 1 : 0;
    last = now;
    if (same >= still) return now;
    await pause(100);
  }
  throw new Error(`never settled (last ${last})`);
}

/** Opens a raw connection to the engine. */
function open(engine: EngineProcess): Promise<Socket> {
  const { hostname, port } = new URL(engine.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends raw bytes on a new connection and reads until the engine closes it. */
async function exchange(engine: EngineProcess, bytes: string): Promise<string> {
  const socket = await open(engine);
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(got));
    socket.write(bytes);
  });
}

const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;

describe('the HTTP side under hostile clients and modules', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    const nul = `file:${watFixture('hardening', 'nul-output')}`;
    await deploy(engine, 'cap', nul, { entrypoint: 'cap', max_output_bytes: OUTPUT_CAP });
    await deploy(engine, 'k64', nul, { entrypoint: 'k64' });
    await deploy(engine, 'flood', `file:${watFixture('hardening', 'stderr-flood')}`);
    await deploy(engine, 'lines', `file:${watFixture('hardening', 'stderr-lines')}`);
    await deploy(engine, 'gcd', gcdImage);
  });
  afterAll(() => engine?.kill());

  const gcdAnswers = async (): Promise<void> => {
    const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 12, b: 18 } });
    expect(answer.text).toBe('status code: 200, message: 6');
  };

  describe('output cap', () => {
    it('refuses max_output_bytes past what the engine can answer, at deploy, with 400', async () => {
      const answer = await call(
        engine.url,
        'POST',
        '/function/deploy',
        { function_name: 'too-big', function_image: `file:${watFixture('hardening', 'nul-output')}`, entrypoint: 'cap', max_output_bytes: 50_000_000 },
        { json: true },
      );
      expect(answer.status, answer.text).toBe(400);
      expect(answer.json.error).toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/max_output_bytes/) });
      expect(answer.json.error.message).toContain(String(OUTPUT_CAP));
    });

    it('answers an output at the cap, all NUL bytes, in JSON and in text; the engine stays up', async () => {
      const json = await call(engine.url, 'POST', '/function/invoke', { function_name: 'cap' }, { json: true });
      expect(json.status).toBe(200);
      expect(json.json.output).toHaveLength(OUTPUT_CAP);
      expect(json.json.message).toHaveLength(OUTPUT_CAP);
      expect(/^\0*$/.test(json.json.output)).toBe(true);
      const text = await call(engine.url, 'POST', '/function/invoke', { function_name: 'cap' });
      expect(text.status).toBe(200);
      const prefix = 'status code: 200, message: ';
      expect(text.text.startsWith(prefix)).toBe(true);
      expect(text.text.length).toBe(prefix.length + OUTPUT_CAP);
      await gcdAnswers();
    });

    it('refuses an engine-wide --max-output-bytes past the cap at start', async () => {
      const starting = startEngineProcess({ args: ['--max-output-bytes', String(50_000_000)] });
      const started = await starting.then(
        (process) => process,
        () => undefined,
      );
      await started?.kill();
      expect(started, 'an engine started with --max-output-bytes 50000000').toBeUndefined();
      await expect(starting).rejects.toThrow(/max-output-bytes/);
    });
  });

  describe('stderr kept for logs', () => {
    it('a function flooding stderr many times: the logs hold bounded, recent lines and RSS stays bounded', async () => {
      const before = rssBytes(engine);
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssBytes(engine));
      }, 20);
      let lastBatch = 0;
      try {
        // 4 MB each: kept as slices, 320 calls would pin 1.3 GB.
        for (let round = 0; round < 40; round++) {
          lastBatch = Date.now();
          const answers = await Promise.all(
            Array.from({ length: 8 }, () => call(engine.url, 'POST', '/function/invoke', { function_name: 'flood' })),
          );
          expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
        }
      } finally {
        clearInterval(sampler);
      }
      peak = Math.max(peak, rssBytes(engine));
      expect(peak - before).toBeLessThan(512 * MiB);
      const logs = await call(engine.url, 'GET', '/system/logs?name=flood');
      expect(logs.status).toBe(200);
      const lines = logs.text.trimEnd().split('\n').map((line) => JSON.parse(line) as { text: string; timestamp: string });
      expect(lines.length).toBeGreaterThan(0);
      const chars = lines.reduce((sum, line) => sum + line.text.length, 0);
      for (const line of lines) {
        expect(line.text.length).toBeLessThanOrEqual(16 * 1024 + 2);
        expect(/^…?e+…?$/.test(line.text)).toBe(true);
      }
      expect(chars).toBeLessThanOrEqual(MiB + 16 * 1024);
      // Recent: the newest line comes from the last round (the clocks are the same machine's).
      expect(Date.parse(lines[lines.length - 1]!.timestamp)).toBeGreaterThanOrEqual(lastBatch - 1000);
      await gcdAnswers();
    });
  });

  describe('write backpressure', () => {
    // 8,000 invocations answered 64 KiB each (500 MiB if written into the socket without bound),
    // and raw-route requests, of which Node's server emits every one of a read at once (1,600 in 64 KiB).
    it.each([
      ['invokes', `POST /function/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\n\r\n{"function_name": "k64"}`],
      ['raw-route requests (Node and Fastify)', 'GET /function/k64 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ])('a client pipelining %s and never reading: calls stop, memory stays bounded, others are served', async (_kind, one) => {
      const socket = await open(engine);
      socket.on('error', () => {});
      socket.pause();
      const before = rssBytes(engine);
      const calls = await invocations(engine, 'k64');
      for (let i = 0; i < 80; i++) socket.write(one.repeat(100));
      const started = (await settled(() => invocations(engine, 'k64'))) - calls;
      expect(started).toBeGreaterThan(0);
      expect(started).toBeLessThan(400);
      expect(rssBytes(engine) - before).toBeLessThan(200 * MiB);
      await gcdAnswers();
      socket.destroy();
    });

    it('a client pipelining slow calls and never reading: the engine stops reading, memory stays bounded', async () => {
      await deploy(engine, 'spin', `file:${watFixture('hardening', 'spin')}`, { entrypoint: 'spin', timeout_ms: 2_000 });
      const socket = await open(engine);
      socket.on('error', () => {});
      socket.pause();
      const before = rssBytes(engine);
      // While the calls started run, they write nothing: without the engine pausing the
      // connection itself, Node's server parses and holds every request behind them (16 MB).
      const batch = 'GET /function/spin HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(1000);
      for (let i = 0; i < 400; i++) socket.write(batch);
      const unsent = await settled(async () => socket.writableLength);
      expect(unsent).toBeGreaterThan(0);
      // What the engine did read it keeps parsing for a while: measured once its memory is still.
      await settled(async () => Math.round(rssBytes(engine) / (16 * MiB)));
      expect(rssBytes(engine) - before).toBeLessThan(200 * MiB);
      socket.destroy();
      await gcdAnswers();
    });

    it('a log follower that does not read is disconnected; the engine keeps serving', async () => {
      const socket = await open(engine);
      socket.on('error', () => {});
      socket.pause();
      let closed = false;
      socket.once('close', () => (closed = true));
      socket.write('GET /system/logs?name=lines&follow=true HTTP/1.1\r\nHost: x\r\n\r\n');
      const before = rssBytes(engine);
      const dropped = (): boolean => engine.output.some((line) => line.includes('log follower not reading'));
      // Each call: 1,000 lines kept, about 490 KB of NDJSON for the follower.
      for (let round = 0; round < 100 && !dropped(); round++) {
        const answers = await Promise.all(
          Array.from({ length: 4 }, () => call(engine.url, 'POST', '/function/invoke', { function_name: 'lines' })),
        );
        expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      }
      await eventually(dropped, 'the engine dropping the follower', 40);
      // A paused socket does not read, so it learns of the close only once it reads again.
      socket.on('data', () => {});
      socket.resume();
      await eventually(() => closed, 'the follower disconnected', 100);
      expect(rssBytes(engine) - before).toBeLessThan(200 * MiB);
      await gcdAnswers();
    });

    it('a follower that reads gets the lines', async () => {
      const answer = await request(`${engine.url}/system/logs?name=lines&follow=true&tail=1`);
      let text = '';
      const reading = (async () => {
        for await (const chunk of answer.body) {
          text += (chunk as Buffer).toString('utf8');
          if (text.split('\n').length > 1001) break;
        }
      })();
      await call(engine.url, 'POST', '/function/invoke', { function_name: 'lines' });
      await reading;
      const lines = text.trimEnd().split('\n').map((line) => JSON.parse(line) as { text: string });
      expect(lines.length).toBeGreaterThan(1000);
      expect(lines[lines.length - 1]!.text).toBe('\0'.repeat(63));
    });
  });

  describe('§2 error shape before any route runs', () => {
    const bad: [string, string, number, string][] = [
      ['two Content-Lengths', 'POST /function/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 400, 'INVALID_REQUEST'],
      ['Content-Length with Transfer-Encoding', 'POST /function/list HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'INVALID_REQUEST'],
      ['a bare LF', 'GET /function/list HTTP/1.1\nHost: x\n\n', 400, 'INVALID_REQUEST'],
      ['a bad header name', 'GET /function/list HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n', 400, 'INVALID_REQUEST'],
      ['a head past the size limit', `GET /function/list HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
      ['a URL Fastify cannot decode', 'GET /function/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'INVALID_REQUEST'],
      ['a path parameter past its length limit', `GET /function/${'a'.repeat(200)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 400, 'INVALID_REQUEST'],
      ['an unknown route', 'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 404, 'NOT_FOUND'],
      ['a wrong method', 'GET /function/deploy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 405, 'METHOD_NOT_ALLOWED'],
    ];
    for (const [what, bytes, status, code] of bad) {
      it(`${what}: ${status} ${code}, text by default, JSON when asked`, async () => {
        const text = await exchange(engine, bytes);
        expect(text.startsWith(`HTTP/1.1 ${status} `), text.slice(0, 200)).toBe(true);
        const body = text.slice(text.indexOf('\r\n\r\n') + 4);
        expect(body).toMatch(new RegExp(`^status code: ${status}, message: .+ \\(${code}\\)\\n$`));
        const withJson = bytes.replace(/Host: x(\r?\n)/, 'Host: x$1Accept: application/json$1');
        const json = await exchange(engine, withJson);
        expect(json.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
        expect(JSON.parse(json.slice(json.indexOf('\r\n\r\n') + 4))).toMatchObject({ status, error: { code } });
      });
    }

    it.each([
      ['an HTTP/1.1 invocation without Host', 400, 'INVALID_REQUEST', 'POST /function/invoke HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}'],
      ['a body over the limit', 413, 'PAYLOAD_TOO_LARGE', `POST /function/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: ${MiB + 10}\r\n\r\n${'a'.repeat(MiB + 10)}`],
    ] as const)('%s, with bytes after it in the same write: %i %s in the §2 shape, the one answer written, then the connection closes', async (_what, status, code, bytes) => {
      // What follows an answer that says `Connection: close` is never answered (it was, with a
      // second 400, when the invocation reader had handed the connection to Node's server).
      for (const accept of ['', 'Accept: application/json\r\n']) {
        const text = await exchange(engine, `${bytes.replace('\r\n', `\r\n${accept}`)}garbage\r\n\r\n`);
        expect(text.match(/^HTTP\/1\.1 /gm), text.slice(0, 400)).toHaveLength(1);
        expect(text.startsWith(`HTTP/1.1 ${status} `), text.slice(0, 200)).toBe(true);
        expect(text).toMatch(/\r\nconnection: close\r\n/i);
        const body = text.slice(text.indexOf('\r\n\r\n') + 4);
        if (accept === '') expect(body).toMatch(new RegExp(`^status code: ${status}, message: .+ \\(${code}\\)\\n?$`));
        else expect(JSON.parse(body)).toMatchObject({ status, error: { code } });
      }
    });
  });

  it.each(['/function/invoke', '/function/deploy', '/function/gcd', '/system/functions'])('413 on %s answered while the client still sends its body: it can send the rest, then the connection closes cleanly', async (path) => {
    const socket = await open(engine);
    const size = 2 * MiB;
    let answer = '';
    let failed: Error | undefined;
    socket.on('error', (err) => (failed = err));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const answered = new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        answer += chunk.toString('latin1');
        if (/\r\n\r\n[^]*larger than the limit/.test(answer)) resolve();
      }),
    );
    socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
    socket.write('x'.repeat(64 * 1024));
    await answered;
    // The rest of the body, after the answer: a socket closed at the answer resets these writes.
    for (let sent = 64 * 1024; sent < size; sent += 64 * 1024) {
      await new Promise<void>((resolve) => socket.write('x'.repeat(64 * 1024), () => resolve()));
    }
    socket.end();
    await ended;
    expect(failed).toBeUndefined();
    expect(answer).toMatch(/^HTTP\/1\.1 413 [^]*\r\n\r\n(status code: 413, message: .*\(PAYLOAD_TOO_LARGE\)\n?|request body is larger than the limit\n)$/);
  });

  it('413 for a body past the limit is read by a client still sending it', async () => {
    const body = JSON.stringify({ function_name: 'gcd', args: { a: 'x'.repeat(2 * MiB) } });
    for (let i = 0; i < 10; i++) {
      const answer = await call(engine.url, 'POST', '/function/invoke', undefined, { raw: body });
      expect(answer.status).toBe(413);
      expect(answer.text).toMatch(/^status code: 413, message: .*\(PAYLOAD_TOO_LARGE\)$/);
    }
    await gcdAnswers();
  });
});

describe('credentials never reach a guest', () => {
  let engine: EngineProcess;
  const password = 'engine-admin-password';
  const basic = `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--basic-auth-user', 'admin', '--basic-auth-password', password, '--auth-invoke', 'true'] });
    const answer = await request(`${engine.url}/function/deploy`, {
      method: 'POST',
      headers: { authorization: basic },
      body: JSON.stringify({ function_name: 'env', function_image: `file:${cFixture('hardening', 'print-env')}`, wasi_cap: true }),
    });
    expect(answer.statusCode, await answer.body.text()).toBe(200);
  });
  afterAll(() => engine?.kill());

  it('the raw route passes no Authorization, Proxy-Authorization or Cookie, nor the engine password under another name', async () => {
    const answer = await request(`${engine.url}/function/env/some/path?q=1`, {
      method: 'POST',
      headers: {
        authorization: basic,
        'proxy-authorization': 'Basic cHJveHk6cGFzcw==',
        cookie: 'session=abc123',
        'x-forwarded-authorization': basic,
        'x-request-id': 'r-42',
        'x-custom-thing': 'kept',
      },
      body: 'stdin text',
    });
    const output = await answer.body.text();
    expect(answer.statusCode, output).toBe(200);
    const env = output.split('\n');
    expect(env).toContain('Http_X_Request_Id=r-42');
    expect(env).toContain('Http_X_Custom_Thing=kept');
    expect(env).toContain('Http_Path=/some/path');
    expect(output).not.toMatch(/Authorization|Cookie/i);
    expect(output).not.toContain(password);
    expect(output).not.toContain(basic.slice(6));
    expect(output).not.toContain('abc123');
  });
});

describe('--request-timeout-ms', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--request-timeout-ms', '500', '--http-threads', '1'] });
  });
  afterAll(() => engine?.kill());

  for (const [what, route] of [
    ['an invocation', '/function/invoke'],
    ['a request the thread passes on', '/function/deploy'],
  ] as const) {
    it(`${what} whose body stops coming: 408 REQUEST_TIMEOUT in the §2 shape, then the connection closes`, async () => {
      // Part of the body, then nothing: the engine closes the connection, not the client.
      const text = await exchange(engine, `POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"function_name":`);
      expect(text.startsWith('HTTP/1.1 408 '), text.slice(0, 200)).toBe(true);
      expect(text).toMatch(/\r\n\r\nstatus code: 408, message: the request did not arrive whole in time \(REQUEST_TIMEOUT\)\n$/);
    });
  }

  it('bounds a request, not a connection: one idle past the timeout between two requests serves the second', async () => {
    const socket = await open(engine);
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString('latin1')));
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually(() => got.includes('OK\n'), 'the first answer');
    // Idle (no request begun) for twice the request timeout: the keep-alive timeout governs that.
    await pause(1_000);
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually(() => got.split('OK\n').length === 3, 'the second answer');
    socket.destroy();
  });
});

describe('--max-connections', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--max-connections', '3', '--http-threads', '1'] });
  });
  afterAll(() => engine?.kill());

  /** Opens a connection and says what became of a request on it: its answer, or '' when the engine closed it unanswered. */
  async function healthOn(socket: Socket): Promise<string> {
    return new Promise((resolve) => {
      let got = '';
      socket.on('data', (chunk: Buffer) => {
        got += chunk.toString('latin1');
        if (got.endsWith('OK\n')) resolve(got);
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(got));
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    });
  }

  it('closes a connection past the bound at once, and serves a new one once another has gone', async () => {
    const held = [await open(engine), await open(engine), await open(engine)];
    for (const socket of held) expect(await healthOn(socket)).toMatch(/^HTTP\/1\.1 200 /);
    expect(await healthOn(await open(engine))).toBe('');
    held.pop()!.destroy();
    // The engine hears of the close a moment later: until then, a new connection may still be one too many.
    await eventually(async () => (await healthOn(await open(engine))).startsWith('HTTP/1.1 200 '), 'a connection served again');
    for (const socket of held) socket.destroy();
  });
});
