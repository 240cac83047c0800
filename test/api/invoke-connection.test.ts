/**
 * The connection reader (src/api/invoke-connection.ts): which requests it takes
 * (readInvokeRequest), and on a real HTTP thread that it answers them without Node's server,
 * counts them in the HTTP metrics, hands a connection to Node's server at the first request it
 * does not take, and ends idle connections as Node would. What it writes is held to Node's own
 * answers by invoke-route.test.ts, invoke-conversations.test.ts and the HTTP fuzzing.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INCOMPLETE, readInvokeRequest } from '../../src/api/invoke-connection.js';
import type { HttpThreads } from '../../src/api/threads/http-threads.js';
import { eventually } from '../support/eventually.js';
import { EXAMPLES_WASM, watFixture } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';
import { Client } from '../support/raw-client.js';
import { askThread } from '../support/recording-thread.js';
import { recordedServer, stopThreadInFront } from '../support/thread-in-front.js';

const LIMIT = 2048;

/** A request; no Connection header unless given. */
function request(body: string | undefined, headers: string[] = ['Content-Type: application/json'], path = '/function/invoke', method = 'POST', version = 'HTTP/1.1'): string {
  const lines = [`${method} ${path} ${version}`, 'Host: 127.0.0.1', ...headers];
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body ?? ''}`;
}

const gcd = (a: number, b: number, headers?: string[]): string => request(`{"function_name":"gcd","args":["${a}","${b}"]}`, headers);

describe('readInvokeRequest', () => {
  const read = (text: string, limit = LIMIT) => readInvokeRequest(Buffer.from(text, 'latin1'), limit);
  const body = '{"function_name":"gcd"}';
  const head = (lines: string[]): string => `${['POST /function/invoke HTTP/1.1', ...lines].join('\r\n')}\r\n\r\n`;

  it('takes a whole plain request: where its body lies, its Accept, its Authorization and whether it closes', () => {
    const text = request(body, ['Content-Type: application/json', 'Accept: application/json']);
    const start = text.indexOf('\r\n\r\n') + 4;
    const taken = { bodyStart: start, bodyEnd: start + body.length, accept: 'application/json', authorization: undefined, close: false };
    expect(read(text)).toEqual(taken);
    // Pipelined bytes after it are left alone.
    expect(read(text + gcd(1, 2))).toEqual(taken);
    expect(read(request(body, ['Connection: close']))).toMatchObject({ accept: undefined, close: true });
    expect(read(request(body, ['Connection: keep-alive']))).toMatchObject({ close: false });
    expect(read(request(body, ['Connection: CLOSE']))).toMatchObject({ close: true });
    expect(read(request(body, [], '/function/invoke?x=1'))).toMatchObject({ close: false });
    expect(read(request(body, ['Authorization:  Basic YTpi ']))).toMatchObject({ authorization: 'Basic YTpi' });
    // No body at all: an empty one.
    const empty = head(['Host: h', 'Content-Length: 0']);
    expect(read(empty)).toEqual({ bodyStart: empty.length, bodyEnd: empty.length, accept: undefined, authorization: undefined, close: false });
    // Exactly at the limit.
    expect(read(request('x'.repeat(LIMIT)))).toMatchObject({ close: false });
  });

  it('joins repeated Accept headers with ", " as Node does, values trimmed', () => {
    expect(read(request(body, ['Accept: text/plain', 'accept:  application/json \t']))).toMatchObject({ accept: 'text/plain, application/json' });
    expect(read(request(body, ['Accept:', 'Accept: a']))).toMatchObject({ accept: ', a' });
  });

  it('reads header names in any case', () => {
    const lower = `${['POST /function/invoke HTTP/1.1', 'host: h', 'content-length: 2', 'accept: a', 'connection: close'].join('\r\n')}\r\n\r\n{}`;
    expect(read(lower)).toMatchObject({ accept: 'a', close: true, bodyEnd: lower.length });
    const upper = `${['POST /function/invoke HTTP/1.1', 'HOST: h', 'CONTENT-LENGTH: 2', 'ACCEPT: a', 'CONNECTION: keep-alive'].join('\r\n')}\r\n\r\n{}`;
    expect(read(upper)).toMatchObject({ accept: 'a', close: false, bodyEnd: upper.length });
    // Case only: another Host among them is a second Host.
    expect(read(`${['POST /function/invoke HTTP/1.1', 'host: h', 'HOST: h', 'Content-Length: 2'].join('\r\n')}\r\n\r\n{}`)).toBeUndefined();
  });

  it('says when a request has not arrived whole', () => {
    const text = request(body);
    expect(read('')).toBe(INCOMPLETE);
    expect(read(text.slice(0, text.indexOf('\r\n\r\n') + 2))).toBe(INCOMPLETE);
    expect(read(text.slice(0, text.indexOf('\r\n\r\n') + 4))).toBe(INCOMPLETE);
    expect(read(text.slice(0, -1))).toBe(INCOMPLETE);
    expect(read(text)).toMatchObject({ close: false });
    // A head that cannot end within Node's bound is not incomplete: it is not one to take.
    expect(read(`POST /function/invoke HTTP/1.1\r\nX-A: ${'a'.repeat(17 * 1024)}`)).toBeUndefined();
    // An invoke request whose body would be over the limit is not waited for.
    expect(read(request('x'.repeat(LIMIT + 1)).slice(0, -5))).toBeUndefined();
  });

  it('leaves other methods, paths and versions to Node', () => {
    expect(read(request(body, [], '/function/invoke', 'PUT'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke', 'post'))).toBeUndefined();
    expect(read(request(undefined, [], '/function/invoke', 'GET'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke/'))).toBeUndefined();
    expect(read(request(body, [], '/function/invokes'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke#f'))).toBeUndefined();
    expect(read(request(body, [], '/function/list'))).toBeUndefined();
    expect(read(request(body, [], 'http://h/function/invoke'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke?a b'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke?\x7f'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke', 'POST', 'HTTP/1.0'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke', 'POST', 'HTTP/2.0'))).toBeUndefined();
    expect(read(request(body, [], '/function/invoke', 'POST', 'http/1.1'))).toBeUndefined();
    expect(read(request(body, [], ' /function/invoke'))).toBeUndefined();
    expect(read(`\r\n${request(body)}`)).toBeUndefined();
  });

  it('leaves requests with headers that ask for more, or that Node may judge otherwise, to Node', () => {
    const refused: string[][] = [
      ['Connection: Upgrade', 'Upgrade: h2c'],
      ['Upgrade: websocket'],
      ['Connection: keep-alive, close'],
      ['Connection: TE'],
      ['Transfer-Encoding: chunked'],
      ['Transfer-Encoding: identity'],
      ['Expect: 100-continue'],
      ['X-A: a\x01b'],
      ['X-A: a\x7fb'],
      ['X-A: a\x00'],
      ['Accept: a\rb'],
      ['X-A: a', ' folded'],
      ['X-A: a', '\tfolded'],
      ['Bad Name: a'],
      ['X-A : a'],
      [': a'],
      ['no colon'],
      ['X-(A): a'],
      // Node keeps the first of two; the main thread's check then judges it.
      ['Authorization: Basic YTpi', 'Authorization: Basic YzpK'],
    ];
    for (const headers of refused) expect(read(request(body, headers)), JSON.stringify(headers)).toBeUndefined();
    // A horizontal tab and text past ASCII are allowed in values, as Node allows them.
    expect(read(request(body, ['X-A: a\tb\xe9']))).toBeDefined();
  });

  it('leaves requests without one plain Content-Length within the limit, or without one Host, to Node', () => {
    expect(read(head(['Host: h']))).toBeUndefined();
    expect(read(`${head(['Host: h', 'Content-Length: 2', 'Content-Length: 2'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: h', 'Content-Length: +2'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: h', 'Content-Length: 2 2'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: h', 'Content-Length: 0x2'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: h', 'Content-Length:'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: h', `Content-Length: ${'1'.repeat(16)}`])}{}`)).toBeUndefined();
    expect(read(request('x'.repeat(LIMIT + 1)))).toBeUndefined();
    expect(read(request(body), body.length - 1)).toBeUndefined();
    expect(read(`${head(['Content-Length: 2'])}{}`)).toBeUndefined();
    expect(read(`${head(['Host: a', 'Host: b', 'Content-Length: 2'])}{}`)).toBeUndefined();
  });

  it('leaves a head over 16 KiB to Node', () => {
    const big = (size: number): string => request(body, [`X-Big: ${'a'.repeat(size)}`]);
    expect(read(big(16 * 1024 - 100))).toBeDefined();
    expect(read(big(16 * 1024 + 1))).toBeUndefined();
  });
});

describe('the connection reader on an HTTP thread', () => {
  let inProcess: InProcessEngine;
  let app: FastifyInstance;
  let threads: HttpThreads;
  let port: number;
  let thread: Worker | undefined;
  const clients: Client[] = [];

  const servedByNode = async (): Promise<string[]> => (await askThread(thread!)).served;

  const open = (): Client => {
    const client = new Client(port);
    clients.push(client);
    return client;
  };

  /** provider_http_requests_total for POST /function/invoke and `code`. */
  const counted = async (code: number): Promise<number> => {
    const text = await inProcess.metrics.text();
    const m = new RegExp(`^provider_http_requests_total\\{method="POST",path="/function/invoke",code="${code}"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };

  beforeAll(async () => {
    inProcess = await startInProcess({ inlineBudgetMs: 2 });
    const { engine } = inProcess;
    await engine.deploy({ name: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
    await engine.deploy({ name: 'spin', image: `file:${watFixture('integration', 'spin')}`, limits: { timeout_ms: 300 } });
    // A short keep-alive timeout to wait for (the thread takes the main server's).
    ({ app, threads, port, thread } = await recordedServer(inProcess, { bodyLimitBytes: LIMIT, keepAliveTimeoutMs: 1_000 }));
  });

  afterAll(async () => {
    for (const client of clients) client.destroy();
    await stopThreadInFront(threads, app);
    await inProcess?.close();
  });

  it("answers invocations on a kept-alive connection without Node's server, and counts them in the HTTP metrics", async () => {
    const before = { served: (await servedByNode()).length, ok: await counted(200), missing: await counted(404), bad: await counted(400) };
    const client = open();
    client.write(gcd(12, 18) + request('{"function_name":"nope"}'));
    expect(await client.waitAnswers(2)).toHaveLength(2);
    client.write(gcd(7, 21, ['Accept: application/json']) + request('{', ['Connection: close']));
    expect(await client.closedWithin(5_000)).toBe(true);
    expect(client.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*message: 6HTTP\/1\.1 404 Not Found\r\n[^]*HTTP\/1\.1 200 OK\r\n[^]*"output":"7"\}HTTP\/1\.1 400 Bad Request\r\n[^]*not valid JSON/);
    expect((await servedByNode()).length).toBe(before.served);
    // The thread reports its counts a moment later.
    await eventually(async () => (await counted(400)) - before.bad === 1, 'the 400 counted');
    expect((await counted(200)) - before.ok).toBe(2);
    expect((await counted(404)) - before.missing).toBe(1);
  });

  it("hands the connection to Node's server at the first request it does not take, with every byte after it", async () => {
    const before = (await servedByNode()).length;
    const client = open();
    client.write(gcd(12, 18) + request(undefined, [], '/healthz', 'GET') + gcd(7, 21));
    expect(await client.waitAnswers(3)).toHaveLength(3);
    expect(client.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*message: 6HTTP\/1\.1 200 OK\r\n[^]*OK\nHTTP\/1\.1 200 OK\r\n[^]*message: 7$/);
    // The invocation after the hand-over is Node's server's to read, on the route it serves.
    expect((await servedByNode()).slice(before)).toEqual(['GET /healthz', 'POST /function/invoke']);
  });

  it("answers a handed-over request whose own body turns out malformed with the parse error at once", async () => {
    const client = open();
    // Chunked: Node's server takes it, and its parser fails inside the body.
    client.write(`POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"fun\r\nzz\r\n`);
    expect(await client.closedWithin(5_000)).toBe(true);
    expect(client.text()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*malformed HTTP request: [^]*HPE_INVALID_CHUNK_SIZE/);
  });

  it('reads on after the answer to bytes the parser refuses, so that a client still sending gets it rather than a reset', async () => {
    // Half-open: the client goes on sending after the server has ended its side, as one that
    // writes a whole request before it reads does.
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let ended = false;
    const errors: string[] = [];
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('end', () => (ended = true));
    socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    // A request Node's parser refuses (a space in a header name); its body follows the answer.
    socket.write('POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: y\r\nContent-Length: 1048576\r\n\r\n');
    await eventually(() => ended, 'the answer, and the end of the side of the server');
    for (let i = 0; i < 64 && errors.length === 0; i++) {
      socket.write('x'.repeat(16 * 1024));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    socket.end();
    await closed;
    expect(errors).toEqual([]);
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*malformed HTTP request: /);
  });

  it('does not read the rest of a request that comes in pieces behind a running call until that call is answered', async () => {
    const before = (await askThread(thread!)).pauses;
    const client = open();
    const next = gcd(12, 18);
    // The first piece of the next request comes with the slow one: the reader stops reading at once.
    client.write(request('{"function_name":"spin"}') + next.slice(0, 20));
    await eventually(async () => (await askThread(thread!)).pauses > before, 'the connection paused');
    client.write(next.slice(20));
    expect(await client.waitAnswers(2)).toHaveLength(2);
    expect(client.text()).toMatch(/^HTTP\/1\.1 504 Gateway Timeout\r\n[^]*HTTP\/1\.1 200 OK\r\n[^]*message: 6$/);
  });

  it('ends a connection left idle after an answer, as Node would, after the keep-alive timeout it announced', async () => {
    const client = open();
    client.write(gcd(12, 18));
    expect(await client.waitAnswers(1)).toHaveLength(1);
    expect(client.text()).toMatch(/\r\nConnection: keep-alive\r\nKeep-Alive: timeout=1\r\n/);
    expect(await client.closedWithin(10_000)).toBe(true);
  });

  it('ends a connection that never sends a byte', async () => {
    const client = open();
    expect(await client.closedWithin(10_000)).toBe(true);
    expect(client.text()).toBe('');
  });
});
