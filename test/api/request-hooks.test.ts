/**
 * The per-request hooks of the HTTP layer share Node's listeners rather than adding their own
 * (src/api/request-listener.ts, src/api/response-close.ts): a server as the engine builds it keeps
 * one 'request' listener with its request counter in it, and a response the pipeline gate started
 * one 'close' listener, which also runs the invocation route's hook — when the answer is written
 * and when the client goes away first. Without the gate (or with the hook taken) each falls back to
 * a listener of its own. Real servers on loopback, real connections.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { refuseRequestsWithoutHost } from '../../src/api/client-errors.js';
import { gatePipelinedRequests } from '../../src/api/pipeline-gate.js';
import { alsoOnRequest } from '../../src/api/request-listener.js';
import { whenClosed } from '../../src/api/response-close.js';

const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

function get(port: number, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `condition` a bounded number of times, a turn of the event loop apart. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition()).toBe(true);
}

const hooked: string[] = [];
function hook(this: ServerResponse): void {
  hooked.push(this.writableFinished ? 'closed after the answer' : 'closed before the answer');
}

describe('request hooks on shared listeners', () => {
  afterEach(() => {
    hooked.length = 0;
  });

  it('a server built as the engine builds it keeps one request listener, the counter runs in it in order, and a response one close listener that runs the hook', async () => {
    const events: string[] = [];
    const closeListeners: number[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      events.push(`answer ${req.url}`);
      whenClosed(res, hook);
      closeListeners.push(res.listenerCount('close'));
      res.end('ok');
    });
    gatePipelinedRequests(server);
    refuseRequestsWithoutHost(server);
    alsoOnRequest(server, (req) => events.push(`before ${req.url}`), 'before');
    alsoOnRequest(server, (req) => events.push(`after ${req.url}`), 'after');
    expect(server.listenerCount('request')).toBe(1);
    const port = await listen(server);

    expect(await get(port, '/a')).toBe('ok');
    expect(await get(port, '/b')).toBe('ok');
    expect(events).toEqual(['before /a', 'answer /a', 'after /a', 'before /b', 'answer /b', 'after /b']);
    expect(closeListeners).toEqual([1, 1]);
    await until(() => hooked.length === 2);
    expect(hooked).toEqual(['closed after the answer', 'closed after the answer']);
  });

  it('the hook hears of a client that goes away before its answer, through the gate\'s listener', async () => {
    let answer: ServerResponse | undefined;
    const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
      whenClosed(res, hook);
      answer = res;
    });
    gatePipelinedRequests(server);
    const port = await listen(server);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => answer !== undefined);
    expect(answer!.listenerCount('close')).toBe(1);
    socket.destroy();
    await until(() => hooked.length === 1);
    expect(hooked).toEqual(['closed before the answer']);
  });

  it('without the gate, or with the hook taken, each hook has a close listener of its own', async () => {
    const closeListeners: number[] = [];
    const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
      whenClosed(res, hook);
      whenClosed(res, hook);
      closeListeners.push(res.listenerCount('close'));
      res.end('ok');
    });
    const port = await listen(server);
    expect(await get(port)).toBe('ok');
    expect(closeListeners).toEqual([2]);
    await until(() => hooked.length === 2);

    hooked.length = 0;
    closeListeners.length = 0;
    const gated = createServer((_req: IncomingMessage, res: ServerResponse) => {
      whenClosed(res, hook);
      whenClosed(res, hook);
      closeListeners.push(res.listenerCount('close'));
      res.end('ok');
    });
    gatePipelinedRequests(gated);
    expect(await get(await listen(gated))).toBe('ok');
    expect(closeListeners).toEqual([2]);
    await until(() => hooked.length === 2);
  });

  it('with other than one request listener, the counter is a listener of its own, before or after', async () => {
    const events: string[] = [];
    const server = createServer();
    alsoOnRequest(server, () => events.push('before'), 'before');
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      events.push('answer');
      res.end('ok');
    });
    server.on('request', () => events.push('second'));
    alsoOnRequest(server, () => events.push('after'), 'after');
    expect(server.listenerCount('request')).toBe(4);
    expect(await get(await listen(server))).toBe('ok');
    expect(events).toEqual(['before', 'answer', 'second', 'after']);
  });
});
