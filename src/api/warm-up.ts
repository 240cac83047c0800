/**
 * The HTTP side of the engine's warm-up, before it says it listens (the runtime's side, worker
 * threads and the pool, is src/runtime/pool/warm-up.ts; app.ts runs both, in that order).
 *
 * Every warm-up request is a real one, over a loopback connection to the engine's own port, written
 * and read as plain bytes. Neither Fastify's `inject` nor Node's HTTP client is used: both hand
 * Node's shared HTTP and stream code objects of other shapes than a served connection's (fake
 * requests and responses, client requests), and V8's inline caches in that code, shared with every
 * later request of the process, then stay megamorphic: every later request pays for it
 * (docs/hot-path.md).
 */
import { connect, type Socket } from 'node:net';
import type { Engine } from '../core/engine.js';

const WARM_UP_ROUNDS = 10;
const CONNECTED_WARM_UP_ROUNDS = 5;
const KEPT_ALIVE_WARM_UP_CALLS = 20;
/** How long a warm-up connection, then each answer on it, is waited for: past it the warm-up goes on without that connection. */
const ANSWER_WAIT_MS = 1_000;
/** No warm-up answer is larger; a longer one is not waited for. */
const MAX_ANSWER_BYTES = 64 * 1024;

interface WarmUpRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
}

/**
 * Requests on every route family, so that Node's HTTP stack, the invocation route, Fastify's
 * routes, hooks and serialisers and the engine's call path are compiled before the first real
 * request: the error paths with a function no one can deploy (its name starts with '_'), on one
 * connection kept alive and over fresh ones; then the success path, invoking the engine's built-in
 * warm-up function over fresh connections and over one kept alive. One round leaves most of that
 * code to V8's interpreter; a few rounds move it to compiled tiers, at a cost of tens of
 * milliseconds at start-up. Nothing here changes any state. Failures are ignored (a warm-up only
 * costs speed).
 */
export async function warmUpHttp(engine: Engine, host: string, port: number): Promise<void> {
  const missing = '_wasm-engine-missing';
  const invokeMissing: WarmUpRequest = { method: 'POST', path: '/function/invoke', body: JSON.stringify({ function_name: missing, args: {} }) };
  const requests: WarmUpRequest[] = [
    invokeMissing,
    { method: 'POST', path: `/function/${missing}`, body: '{}' },
    { method: 'POST', path: '/function/query', body: JSON.stringify({ function_name: missing }) },
    { method: 'GET', path: '/healthz' },
  ];
  const loopback = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  await exchange(loopback, port, Array.from({ length: WARM_UP_ROUNDS }, () => requests).flat());
  for (let round = 0; round < CONNECTED_WARM_UP_ROUNDS; round++) await exchange(loopback, port, [invokeMissing]);
  let builtIn;
  try {
    builtIn = await engine.beginWarmUp();
  } catch {
    return;
  }
  try {
    const invoke: WarmUpRequest = { method: 'POST', path: '/function/invoke', body: JSON.stringify({ function_name: builtIn.name, args: builtIn.args }) };
    for (let round = 0; round < CONNECTED_WARM_UP_ROUNDS; round++) await exchange(loopback, port, [invoke]);
    await exchange(loopback, port, Array.from({ length: KEPT_ALIVE_WARM_UP_CALLS }, () => invoke));
  } finally {
    engine.endWarmUp();
  }
}

/**
 * Sends `requests` one after the other on one new connection, each once the answer before it has
 * arrived whole; resolves when they are all answered, or as soon as the connection fails, closes or
 * an answer is late or unreadable (the rest are then skipped).
 */
function exchange(host: string, port: number, requests: readonly WarmUpRequest[]): Promise<void> {
  return new Promise<void>((resolve) => {
    const socket: Socket = connect({ host, port, noDelay: true });
    let next = 0;
    let received = Buffer.alloc(0);
    // From the start: a connection that is never made must not hold the start-up either.
    let timer = setTimeout(() => finish(), ANSWER_WAIT_MS);
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const send = (): void => {
      const request = requests[next++];
      if (request === undefined) {
        finish();
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(finish, ANSWER_WAIT_MS);
      socket.write(requestBytes(host, port, request));
    };
    socket.on('connect', send);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const length = answerLength(received);
      if ((length ?? received.length) > MAX_ANSWER_BYTES) {
        finish();
        return;
      }
      if (length === undefined || received.length < length) return;
      received = received.subarray(length);
      send();
    });
    socket.on('error', finish);
    socket.on('close', finish);
  });
}

function requestBytes(host: string, port: number, { method, path, body }: WarmUpRequest): string {
  const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const head = `${method} ${path} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (body === undefined) return `${head}\r\n`;
  return `${head}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

const HEAD_END = '\r\n\r\n';

/**
 * The byte length of the answer at the start of `received` (head and body, by its Content-Length)
 * once its head has arrived; undefined before. Every answer to the warm-up's requests has one.
 */
function answerLength(received: Buffer): number | undefined {
  const end = received.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const head = received.toString('latin1', 0, end);
  const declared = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
  // Without one the answer's end cannot be told: longer than any answer waited for.
  if (declared === null) return Infinity;
  return end + HEAD_END.length + Number(declared[1]);
}
