/**
 * The HTTP side of the engine's warm-up, before it says it listens (the runtime's side, worker
 * threads and the pool, is src/runtime/pool/warm-up.ts; app.ts runs both, in that order).
 */
import { Agent, request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../core/engine.js';

const INJECTED_WARM_UP_ROUNDS = 10;
const CONNECTED_WARM_UP_ROUNDS = 5;
const KEPT_ALIVE_WARM_UP_CALLS = 20;

/**
 * Requests on every route family, so that Node's HTTP stack, the invocation route, Fastify's
 * routes, hooks and serialisers and the engine's call path are compiled before the first real
 * request: the error paths with a function no one can deploy (its name starts with '_'), through
 * app.inject and over fresh loopback connections; then the success path, invoking the engine's
 * built-in warm-up function over fresh connections and over one kept alive. One round leaves most
 * of that code to V8's interpreter; a few rounds move it to compiled tiers, at a cost of tens of
 * milliseconds at start-up. Nothing here changes any state. Failures are ignored (a warm-up only
 * costs speed).
 */
export async function warmUpHttp(app: FastifyInstance, engine: Engine, host: string, port: number): Promise<void> {
  const missing = '_wasm-engine-missing';
  const invokeMissing = JSON.stringify({ function_name: missing, args: {} });
  const requests = [
    { method: 'POST', url: '/function/invoke', payload: invokeMissing },
    { method: 'POST', url: `/function/${missing}`, payload: '{}' },
    { method: 'POST', url: '/function/query', payload: JSON.stringify({ function_name: missing }) },
    { method: 'GET', url: '/healthz' },
  ] as const;
  for (let round = 0; round < INJECTED_WARM_UP_ROUNDS; round++) {
    for (const request of requests) await injectQuietly(app, request);
  }
  const loopback = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  for (let round = 0; round < CONNECTED_WARM_UP_ROUNDS; round++) await postOnce(loopback, port, invokeMissing);
  let builtIn;
  try {
    builtIn = await engine.beginWarmUp();
  } catch {
    return;
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const invoke = JSON.stringify({ function_name: builtIn.name, args: builtIn.args });
    for (let round = 0; round < CONNECTED_WARM_UP_ROUNDS; round++) await postOnce(loopback, port, invoke);
    for (let call = 0; call < KEPT_ALIVE_WARM_UP_CALLS; call++) await postOnce(loopback, port, invoke, agent);
  } finally {
    agent.destroy();
    engine.endWarmUp();
  }
}

async function injectQuietly(app: FastifyInstance, request: { method: 'GET' | 'POST'; url: string; payload?: string }): Promise<void> {
  try {
    await app.inject({ ...request, headers: { 'content-type': 'application/json' } });
  } catch {
    // Only speed is at stake.
  }
}

/** One POST to the invocation route (a new connection unless an agent is given); resolves whatever happens. */
function postOnce(host: string, port: number, body: string, agent: Agent | false = false): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = httpRequest(
      { host, port, method: 'POST', path: '/function/invoke', agent, headers: { 'content-type': 'application/json' }, timeout: 1_000 },
      (res) => {
        res.resume();
        res.on('end', resolve);
        res.on('error', () => resolve());
      },
    );
    req.on('error', () => resolve());
    req.on('timeout', () => {
      req.destroy();
      resolve();
    });
    req.end(body);
  });
}
