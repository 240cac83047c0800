/**
 * POST /function/invoke over whole conversations on raw sockets: keep-alive, pipelining (answers
 * in order, reading paused while answers back up), other routes between invocations, requests
 * Node's parser refuses, a client that ends its side or goes away, shutdown. Every conversation
 * goes through a real HTTP thread in front of the main thread's Fastify server, as a deployed
 * engine serves (test/support/thread-in-front.ts): the thread reads the connection, answers the
 * invocations itself and passes every other request on to Fastify. The engines here run no call
 * inline (their runtime's inline budget is 0, and so is the threads'): every call runs in the
 * main thread's engine, in its workers. The bytes written back (Date left out) and whether the
 * server closed the connection must be the recorded ones: the snapshots were recorded from the
 * historical Fastify route, with nothing in front of it, before the route had a single
 * implementation (src/api/invoke-route.ts).
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildServer } from '../../src/api/server.js';
import type { HttpThreads } from '../../src/api/threads/http-threads.js';
import { EXAMPLES_WASM, watFixture } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';
import { Client, splitAnswers } from '../support/raw-client.js';
import { askThread } from '../support/recording-thread.js';
import { recordedServer, stopThreadInFront, threadInFront, type ThreadInFrontOptions } from '../support/thread-in-front.js';

const LIMIT = 2048;

/** A query's or a list's answer names the checkout and the engine's data directory: left out, with its length. */
const stable = (text: string): string =>
  text.replace(
    /content-length: \d+(\r\n(?:[^\r\n]+\r\n)*\r\nstatus code: 200, message: (?:queried function info|all deployed function info): )[^\n]*?(?=HTTP\/1\.1 |\n|$)/g,
    'content-length: N$1…',
  );
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A request; no Connection header unless given. */
function request(body: string | undefined, headers: string[] = ['Content-Type: application/json'], path = '/function/invoke', method = 'POST', version = 'HTTP/1.1'): string {
  const lines = [`${method} ${path} ${version}`, 'Host: 127.0.0.1', ...headers];
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body ?? ''}`;
}

const gcd = (a: number, b: number, headers?: string[]): string => request(`{"function_name":"gcd","args":["${a}","${b}"]}`, headers);
const LIST = request(undefined, [], '/function/list', 'GET');

/**
 * The threads' settings here: the body limit, and no inline runs, as the engines' runtimes (an
 * engine gives its threads its own budget). A call then always takes its time in the workers.
 */
const THREAD = { bodyLimitBytes: LIMIT, inlineBudgetMs: 0 } satisfies Partial<ThreadInFrontOptions>;

describe('POST /function/invoke conversations', () => {
  let inProcess: InProcessEngine;
  let spinWasm: string;
  let app: FastifyInstance;
  let threads: HttpThreads;
  let port: number;
  /** The HTTP thread in front of `app`: the real one, wrapped to count its connections' pauses (test/support/http-thread-that-records.mjs). */
  let thread: Worker | undefined;
  const clients: Client[] = [];

  /** Times a connection of the HTTP thread stopped reading, so far (asked of the thread). */
  const pauses = async (): Promise<number> => (await askThread(thread!)).pauses;

  const open = (port: number): Client => {
    const client = new Client(port);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    // Room for pipelined calls, which run side by side.
    inProcess = await startInProcess();
    const { engine } = inProcess;
    await engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
    await engine.deploy({ name: 'authentication', image: `file:${join(EXAMPLES_WASM, 'authentication.wasm')}` });
    await engine.deploy({ name: 'trap', image: `file:${watFixture('integration', 'trap')}` });
    spinWasm = watFixture('integration', 'spin');
    await engine.deploy({ name: 'spin', image: `file:${spinWasm}`, limits: { timeout_ms: 300 } });
    ({ app, threads, port, thread } = await recordedServer(inProcess, THREAD));
  });

  afterAll(async () => {
    for (const client of clients) client.destroy();
    await stopThreadInFront(threads, app);
    await inProcess?.close();
  });

  /** Holds a conversation: the bytes written back (Date left out) and whether the server closed the connection within `settleMs`. */
  const converse = async (talk: (client: Client) => Promise<void>, settleMs = 100): Promise<{ text: string; closed: boolean }> => {
    const client = open(port);
    await talk(client);
    const closed = await client.closedWithin(settleMs);
    const result = { text: stable(client.text()), closed };
    client.destroy();
    expect(result).toMatchSnapshot();
    return result;
  };

  describe('keep-alive', () => {
    it('three invocations one after another on one connection', async () => {
      const { text, closed } = await converse(async (client) => {
        for (const [i, [a, b]] of [[12, 18], [7, 21], [9, 6]].entries()) {
          client.write(gcd(a!, b!));
          await client.waitAnswers(i + 1);
        }
      });
      expect(closed).toBe(false);
      const answers = splitAnswers(text, false);
      expect(answers).toHaveLength(3);
      for (const answer of answers) expect(answer).toMatch(/\r\nConnection: keep-alive\r\nKeep-Alive: timeout=\d+\r\n\r\n/);
      expect(answers.map((answer) => answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual([
        'status code: 200, message: 6',
        'status code: 200, message: 7',
        'status code: 200, message: 3',
      ]);
    });

    it('keep-alive asked for by name, JSON answers, errors that keep the connection', async () => {
      const json = ['Content-Type: application/json', 'Accept: application/json', 'Connection: keep-alive'];
      const { closed } = await converse(async (client) => {
        client.write(gcd(4, 6, json));
        await client.waitAnswers(1);
        client.write(request('{"function_name":"nope"}', json));
        await client.waitAnswers(2);
        client.write(request('{"function_name":"gcd","extra":1}'));
        await client.waitAnswers(3);
        client.write(request('{"function_name":"trap"}', json));
        await client.waitAnswers(4);
        client.write(request(undefined, []));
        await client.waitAnswers(5);
      });
      expect(closed).toBe(false);
    });

    it('a last request with Connection: close is answered and the connection closed', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18));
        await client.waitAnswers(1);
        client.write(gcd(12, 18, ['Connection: close']));
        await client.waitAnswers(2);
      });
      expect(closed).toBe(true);
      expect(text).toMatch(/\r\nConnection: close\r\n\r\nstatus code: 200, message: 6$/);
    });

    it('a body that is not JSON closes the connection after its answer, with one Connection header', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18));
        await client.waitAnswers(1);
        client.write(request('{"function_name":'));
        await client.waitAnswers(2);
        // Nothing after the close is read.
        client.write(gcd(1, 1));
      });
      expect(closed).toBe(true);
      expect(splitAnswers(text, true)).toHaveLength(2);
      expect(text.match(/^connection:/gim)).toHaveLength(2);
    });
  });

  describe('the client ends its side after a whole invocation', () => {
    it('an answer given at once is written', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(request('{"function_name":'));
        client.socket.end();
        await client.waitAnswers(1, 500);
      });
      expect(closed).toBe(true);
      expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    });

    it('a call that takes its time is dropped, its answer not written', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18));
        client.socket.end();
        await client.waitAnswers(1, 300);
      });
      expect(closed).toBe(true);
      expect(text).toBe('');
    });
  });

  it('a body that is not UTF-8 is read as Node reads it', async () => {
    const body = Buffer.concat([Buffer.from('{"function_name":"g'), Buffer.from([0xff, 0xc3]), Buffer.from('"}')]);
    const head = `POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`;
    const { text } = await converse(async (client) => {
      client.write(Buffer.concat([Buffer.from(head), body]));
      await client.waitAnswers(1);
    });
    expect(Buffer.from(text, 'latin1').toString('utf8')).toMatch(/message: function g\ufffd\ufffd is not deployed \(FUNCTION_NOT_FOUND\)$/);
  });

  describe('pipelining', () => {
    it('two invocations in one write are answered in order', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18) + gcd(7, 21));
        await client.waitAnswers(2);
      });
      expect(closed).toBe(false);
      expect(splitAnswers(text, false).map((answer) => answer.slice(-1))).toEqual(['6', '7']);
    });

    it('three invocations in one write, the last with Connection: close', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18) + request('{"function_name":"nope"}', ['Accept: application/json']) + gcd(9, 6, ['Connection: close']));
        await client.waitAnswers(3);
      });
      expect(closed).toBe(true);
      expect(splitAnswers(text, true)).toHaveLength(3);
    });

    it('an invocation with Connection: close followed by another in the same write: as Node, 400 in its place', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(gcd(12, 18, ['Connection: close']) + gcd(7, 21));
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
      expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    });

    it('an invocation with Connection: close followed by a line end in the same write', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(`${gcd(12, 18, ['Connection: close'])}\r\n`);
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    });

    it('a body that is not JSON followed by an invocation in the same write', async () => {
      const { closed } = await converse(async (client) => {
        client.write(request('{"function_name":') + gcd(7, 21));
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
    });

    it('a request split inside the second of two pipelined invocations', async () => {
      const second = gcd(7, 21);
      await converse(async (client) => {
        client.write(gcd(12, 18) + second.slice(0, 30));
        await client.waitAnswers(1);
        await sleep(20);
        client.write(second.slice(30));
        await client.waitAnswers(2);
      });
    });
  });

  describe("bytes Node's parser refuses after a request Node's server answers at once", () => {
    const GARBAGE = 'garbage\r\n\r\n';
    const PARSE_ERROR = /HTTP\/1\.1 400 Bad Request\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Length: \d+\r\nConnection: close\r\n\r\nstatus code: 400, message: malformed HTTP request: Invalid method encountered \(HPE_INVALID_METHOD\) \(INVALID_REQUEST\)\n$/;

    it('an invocation without Host: its 400 in the §2 shape, and nothing after it; the connection closes', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(`POST /function/invoke HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}${GARBAGE}`);
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
      expect(splitAnswers(text, true)).toHaveLength(1);
      expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\nconnection: close\r\n\r\nstatus code: 400, message: an HTTP\/1\.1 request must have a Host header \(INVALID_REQUEST\)\n?$/);
    });

    it('an invocation without Host asking for JSON: the 400 in JSON', async () => {
      const { text } = await converse(async (client) => {
        client.write('POST /function/invoke HTTP/1.1\r\nAccept: application/json\r\nContent-Length: 2\r\n\r\n{}');
        await client.waitAnswers(1);
      });
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 400, error: { code: 'INVALID_REQUEST' } });
    });

    it('a body over the limit: the 413 and nothing after it; the connection closes', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(request('x'.repeat(LIMIT + 10)) + GARBAGE);
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
      expect(splitAnswers(text, true)).toHaveLength(1);
      expect(text).toMatch(/^HTTP\/1\.1 413 /);
    });

    it('an unknown route answered with the connection kept: its 404, then the parse error', async () => {
      const { text, closed } = await converse(async (client) => {
        client.write(request(undefined, [], '/nowhere', 'GET') + GARBAGE);
        await client.waitAnswers(2, 300);
      });
      expect(closed).toBe(true);
      const answers = splitAnswers(text, true);
      expect(answers.map((answer) => answer.slice(9, 12))).toEqual(['404', '400']);
      expect(answers[1]).toMatch(PARSE_ERROR);
    });
  });

  describe('other routes between invocations', () => {
    it('an invocation, GET /function/list, another invocation', async () => {
      const { closed } = await converse(async (client) => {
        client.write(gcd(12, 18));
        await client.waitAnswers(1);
        client.write(LIST);
        await client.waitAnswers(2);
        client.write(gcd(7, 21));
        await client.waitAnswers(3);
      });
      expect(closed).toBe(false);
    });

    it('/healthz between invocations', async () => {
      await converse(async (client) => {
        client.write(gcd(12, 18));
        await client.waitAnswers(1);
        client.write(request(undefined, [], '/healthz', 'GET'));
        await client.waitAnswers(2);
        client.write(gcd(7, 21));
        await client.waitAnswers(3);
      });
    });

    it('an invocation followed by another route in the same write', async () => {
      const { text } = await converse(async (client) => {
        client.write(gcd(12, 18) + LIST);
        await client.waitAnswers(2);
      });
      // The list's answer is masked (it names the checkout): the second answer follows the first's body.
      expect(text).toMatch(/status code: 200, message: 6HTTP\/1\.1 200 OK\r\n/);
    });

    it('two invocations and two other requests in one write, then an invocation', async () => {
      await converse(async (client) => {
        client.write(gcd(12, 18) + gcd(4, 6) + LIST + request('{"function_name":"gcd"}', undefined, '/function/query') + gcd(9, 6));
        await client.waitAnswers(5);
        client.write(gcd(5, 10));
        await client.waitAnswers(6);
      });
    });

    it('an invocation followed by the head of a chunked invocation, then its chunks', async () => {
      const body = '{"function_name":"gcd","args":["8","12"]}';
      const head = ['POST /function/invoke HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', 'Content-Type: application/json'].join('\r\n');
      await converse(async (client) => {
        client.write(gcd(12, 18) + `${head}\r\n\r\n`);
        await client.waitAnswers(1);
        await sleep(20);
        client.write(`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
        await client.waitAnswers(2);
      });
    });
  });

  describe('more pipelined bytes than are read while a call runs', () => {
    const pad = `X-Pad: ${'p'.repeat(3000)}`;

    it('invocations behind a slow one: reading pauses, then every one is answered in order', async () => {
      const pausesBefore = await pauses();
      const { text } = await converse(async (client) => {
        let all = request('{"function_name":"spin"}');
        for (let i = 1; i <= 30; i++) all += gcd(i, 30, ['Content-Type: application/json', pad]);
        client.write(all);
        await client.waitAnswers(31);
      });
      const answers = splitAnswers(text, false);
      expect(answers).toHaveLength(31);
      expect(answers[0]).toMatch(/^HTTP\/1\.1 504 /);
      expect(answers[30]!.endsWith('message: 30')).toBe(true);
      expect((await pauses()) - pausesBefore).toBeGreaterThan(0);
    });

    it('other requests behind a slow invocation: reading pauses, then every one is answered in order', async () => {
      const pausesBefore = await pauses();
      const { text } = await converse(async (client) => {
        let all = request('{"function_name":"spin"}');
        for (let i = 0; i < 30; i++) all += request(undefined, [pad], '/healthz', 'GET');
        all += gcd(12, 18);
        client.write(all);
        await client.waitAnswers(32);
      });
      expect(splitAnswers(text, false)).toHaveLength(32);
      expect((await pauses()) - pausesBefore).toBeGreaterThan(0);
    });
  });

  // Each with its own app and thread in front, stopped as the engine stops (app.ts): the thread
  // (within a bound of 5 s, past which it would be ended), then close() of the app.
  describe('shutdown', () => {
    it('close() with an idle keep-alive connection ends it and resolves at once', async () => {
      const app = buildServer({ engine: inProcess.engine, bodyLimitBytes: LIMIT });
      const { threads, port } = await threadInFront(app, { ...THREAD, engine: inProcess.engine });
      const client = open(port);
      client.write(gcd(12, 18));
      expect(await client.waitAnswers(1)).toHaveLength(1);
      expect(client.text()).toMatch(/\r\nKeep-Alive: timeout=72\r\n/);
      const started = performance.now();
      await stopThreadInFront(threads, app);
      // Well under the keep-alive timeout of 72 s.
      expect(performance.now() - started).toBeLessThan(500);
      expect(await client.closedWithin(500)).toBe(true);
    });

    it('a call in flight at close still gets its answer, then the connection ends', async () => {
      const app = buildServer({ engine: inProcess.engine, bodyLimitBytes: LIMIT });
      const { threads, port } = await threadInFront(app, { ...THREAD, engine: inProcess.engine });
      const client = open(port);
      client.write(gcd(12, 18));
      await client.waitAnswers(1);
      client.write(request('{"function_name":"spin"}', ['Accept: application/json']));
      await vi.waitFor(() => expect(inProcess.engine.inflightInvocations).toBe(1));
      const started = performance.now();
      await stopThreadInFront(threads, app);
      // The stop waited for the answer (spin's time limit is 300 ms), not for the keep-alive timeout.
      expect(performance.now() - started).toBeLessThan(2_000);
      const answers = await client.waitAnswers(2);
      expect(answers).toHaveLength(2);
      // Unlike Node's server, which answers `keep-alive` and keeps the connection (and close()
      // waiting) until the client's next request or the keep-alive timeout.
      expect(answers[1]).toMatch(/^HTTP\/1\.1 504 Gateway Timeout\r\ncontent-type: application\/json; charset=utf-8\r\ncontent-length: \d+\r\nConnection: close\r\n\r\n\{"status":504,"error":\{"code":"FUNCTION_TIMEOUT"/);
      expect(await client.closedWithin(500)).toBe(true);
    });
  });

  describe('a client that goes away', () => {
    let waiting: InProcessEngine;
    let app: FastifyInstance;
    let threads: HttpThreads;
    let port: number;

    beforeAll(async () => {
      // One slot and room to wait: a second spin waits for the first (which runs to its 2 s limit).
      waiting = await startInProcess({ concurrencyPerReplica: 1, maxWaiting: 4 });
      await waiting.engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
      await waiting.engine.deploy({ name: 'spin', image: `file:${spinWasm}`, limits: { timeout_ms: 2_000 } });
      // Ends on its own (300 ms): a call waiting for its slot starts within its time limit.
      await waiting.engine.deploy({ name: 'sleep', image: `file:${watFixture('wat', 'wasi-sleep')}` });
      app = buildServer({ engine: waiting.engine, bodyLimitBytes: LIMIT });
      // No call runs inline on the thread (nor could: this engine's runtime shares no function):
      // every call is forwarded to `waiting.engine`, where inflightInvocations sees it, from the
      // moment the thread reads it to the moment the engine answers or drops it.
      ({ threads, port } = await threadInFront(app, { ...THREAD, engine: waiting.engine }));
    });

    afterAll(async () => {
      await stopThreadInFront(threads, app);
      await waiting?.close();
    });

    it('pipelined calls run at once: the one past the bound waits, answers in order', async () => {
      const client = open(port);
      // gcd's answer, ready long before, waits behind both sleeps' answers.
      client.write(request('{"function_name":"sleep"}') + request('{"function_name":"sleep"}') + gcd(12, 18));
      // Both sleeps at once (one runs, one waits for the slot) before the first ends: one at a
      // time, a single one would ever be in flight.
      await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(2), { timeout: 500, interval: 5 });
      const answers = await client.waitAnswers(3, 5_000);
      client.destroy();
      expect(answers.map((a) => a.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
      expect(answers.map((a) => a.slice(a.indexOf('\r\n\r\n') + 4))).toEqual(['slept', 'slept', '6'].map((out) => `status code: 200, message: ${out}`));
    });

    for (const [label, leave] of [
      ['closes', (client: Client) => client.destroy()],
      ['ends its side', (client: Client) => client.socket.end()],
    ] as const) {
      it(`${label} on a keep-alive connection: its queued call is dropped at once`, async () => {
        const first = open(port);
        first.write(request('{"function_name":"spin"}'));
        await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(1));
        const client = open(port);
        client.write(gcd(12, 18));
        await client.waitAnswers(1);
        client.write(request('{"function_name":"spin"}'));
        await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(2));
        const left = performance.now();
        leave(client);
        await vi.waitFor(() => expect(waiting.engine.inflightInvocations).toBe(1), { interval: 5 });
        // Dropped when the client left, not when the first call ended.
        expect(performance.now() - left).toBeLessThan(200);
        expect(await first.waitAnswers(1)).toEqual([expect.stringMatching(/^HTTP\/1\.1 504 /)]);
        expect(waiting.engine.inflightInvocations).toBe(0);
        expect(client.answers()).toHaveLength(1);
        expect(await client.closedWithin(500)).toBe(true);
      });
    }
  });

  describe('framings and heads Node\'s parser judges', () => {
    const json = ['Content-Type: application/json', 'Accept: application/json'];
    const body = '{"function_name":"gcd","args":["12","18"]}';

    it('a head, then ~50 ms later its body', async () => {
      const whole = gcd(12, 18);
      const { text } = await converse(async (client) => {
        const bodyAt = whole.indexOf('\r\n\r\n') + 4;
        client.write(whole.slice(0, bodyAt));
        await sleep(50);
        client.write(whole.slice(bodyAt));
        await client.waitAnswers(1);
        client.write(gcd(7, 21));
        await client.waitAnswers(2);
      });
      expect(splitAnswers(text, false).map((answer) => answer.slice(-1))).toEqual(['6', '7']);
    });

    it('a head cut in the middle of a header', async () => {
      const whole = gcd(12, 18);
      await converse(async (client) => {
        client.write(whole.slice(0, 40));
        await sleep(30);
        client.write(whole.slice(40));
        await client.waitAnswers(1);
      });
    });

    /** A request, and the status of each answer Node's server gives it. */
    const cases: [string, string, number[]][] = [
      ['chunked body', `${['POST /function/invoke HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', ...json].join('\r\n')}\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`, [200]],
      ['chunked body in two chunks', `${['POST /function/invoke HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked'].join('\r\n')}\r\n\r\n5\r\n${body.slice(0, 5)}\r\n${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`, [200]],
      ['Expect: 100-continue, body sent at once', request(body, ['Expect: 100-continue']), [100, 200]],
      ['Expect: something else', request(body, ['Expect: nothing']), [417]],
      ['HTTP/1.0', request(body, [], '/function/invoke', 'POST', 'HTTP/1.0'), [200]],
      ['HTTP/1.0 with Connection: keep-alive', request(body, ['Connection: keep-alive'], '/function/invoke', 'POST', 'HTTP/1.0'), [200]],
      ['no Host', `POST /function/invoke HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`, [400]],
      ['no Host, Expect: 100-continue (no 100 first)', `POST /function/invoke HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body}`, [400]],
      ['two Hosts', request(body, ['Host: example.com']), [200]],
      ['two Content-Lengths', request(body, [`Content-Length: ${body.length}`]), [400]],
      ['two different Content-Lengths', request(body, ['Content-Length: 3']), [400]],
      ['Content-Length with a sign', `POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +${body.length}\r\n\r\n${body}`, [400]],
      ['no Content-Length, no body', request(undefined, []), [400]],
      ['obs-fold', request(body, ['X-Folded: a', ' b']), [400]],
      ['obs-fold in Accept', request(body, ['Accept: text/plain,', ' application/json']), [400]],
      ['a control character in a value', request(body, ['X-Odd: a\x01b']), [400]],
      ['a space before the colon', request(body, ['Accept : application/json']), [400]],
      ['body over the limit', request(`{"function_name":"gcd","args":["${'1'.repeat(LIMIT)}"]}`), [413]],
      ['body over the limit, not sent', `POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${LIMIT + 1}\r\n\r\n`, [413]],
      ['Connection: Upgrade', request(body, ['Connection: Upgrade', 'Upgrade: websocket']), [200]],
      ['Connection: keep-alive, close', request(body, ['Connection: keep-alive, close']), [200]],
      ['lowercase post', request(body, [], '/function/invoke', 'post'), [400]],
      ['absolute-form target', request(body, [], 'http://127.0.0.1/function/invoke'), [200]],
      ['empty line before the request', `\r\n${gcd(12, 18)}`, [200]],
      ['bare LF line ends', `POST /function/invoke HTTP/1.1\nHost: 127.0.0.1\nContent-Length: ${body.length}\n\n${body}`, [400]],
      ['a head over 16 KiB', request(body, [`X-Big: ${'a'.repeat(17 * 1024)}`]), [431]],
    ];

    it.each(cases)('%s: the recorded answer, and the next request answered if the connection stays', async (_label, raw, statuses) => {
      const { text, closed } = await converse(async (client) => {
        client.write(raw);
        await client.waitAnswers(statuses.length);
        if (!(await client.closedWithin(50))) {
          client.write(gcd(7, 21));
          await client.waitAnswers(statuses.length + 1);
        }
      });
      const answers = splitAnswers(text, closed);
      expect(answers.map((answer) => Number(answer.slice(9, 12)))).toEqual(closed ? statuses : [...statuses, 200]);
    });

    it('Expect: 100-continue, body sent after the 100', async () => {
      const whole = request(body, ['Expect: 100-continue']);
      const bodyAt = whole.indexOf('\r\n\r\n') + 4;
      const { text } = await converse(async (client) => {
        client.write(whole.slice(0, bodyAt));
        await client.waitAnswers(1);
        client.write(whole.slice(bodyAt));
        await client.waitAnswers(2);
      });
      expect(text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    });
  });
});
