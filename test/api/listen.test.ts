/**
 * The engine listens on every address its host names with one HTTP server (src/api/listen.ts):
 * Fastify on the first, each further address handing its connections to that same server, so
 * whatever stands in front of it answers on every address. The resolver is a stand-in here (this
 * machine's `localhost` has one address): dns.lookup, which listen.ts reads at call time.
 */
import dns from 'node:dns';
import { request } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { listenOnEveryAddress } from '../../src/api/listen.js';
import type { Logger } from '../../src/logger.js';
import { listenable } from '../support/free-port.js';

const LOOPBACK_IPV6 = await listenable('::1');

/** `name` resolves to `addresses`, in that order; every other name as the machine says. */
function resolveAs(name: string, addresses: string[]): void {
  const real = dns.lookup;
  vi.spyOn(dns, 'lookup').mockImplementation(((host: string, options: unknown, callback: (...args: unknown[]) => void) => {
    if (host !== name) return (real as (...args: unknown[]) => unknown)(host, options, callback);
    process.nextTick(callback, null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
    return undefined;
  }) as unknown as typeof dns.lookup);
}

function get(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
    });
    req.on('error', reject);
    req.end();
  });
}

let app: FastifyInstance | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await app?.close();
  app = undefined;
});

/** A Fastify app whose server answers through a request listener of its own, as the engine's guards stand in front of Fastify's. */
async function guardedApp(): Promise<FastifyInstance> {
  app = Fastify();
  app.server.removeAllListeners('request');
  app.server.on('request', (_req, res) => res.end('guarded'));
  return app;
}

describe('listening on every address a host names', () => {
  it.skipIf(!LOOPBACK_IPV6)('serves each address with the one server and its listeners (skipped where ::1 cannot be bound)', async () => {
    resolveAs('both-families.test', ['127.0.0.1', '::1']);
    const server = await guardedApp();
    const listening = await listenOnEveryAddress(server, 'both-families.test', 0, false, silent());
    expect(listening.map((a) => a.host)).toEqual(['127.0.0.1', '::1']);
    const port = listening[0]!.port;
    expect(listening[1]!.port).toBe(port);
    expect(await get('127.0.0.1', port)).toBe('200 guarded');
    expect(await get('::1', port)).toBe('200 guarded');
  });

  it('logs and skips an address after the first that cannot be bound, and serves the others', async () => {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine's: binding it fails.
    resolveAs('one-unbindable.test', ['127.0.0.1', '192.0.2.1']);
    const warnings: string[] = [];
    const logger = { ...silent(), warn: (_obj: object, msg?: string) => void warnings.push(msg ?? '') };
    const server = await guardedApp();
    const listening = await listenOnEveryAddress(server, 'one-unbindable.test', 0, false, logger);
    expect(listening.map((a) => a.host)).toEqual(['127.0.0.1']);
    expect(warnings).toEqual(['could not listen on one of the addresses of the host; serving the others']);
    expect(await get('127.0.0.1', listening[0]!.port)).toBe('200 guarded');
  });

  it('an address given as such is the only one listened on', async () => {
    const server = await guardedApp();
    const listening = await listenOnEveryAddress(server, '127.0.0.1', 0, false, silent());
    expect(listening.map((a) => a.host)).toEqual(['127.0.0.1']);
    expect(await get('127.0.0.1', listening[0]!.port)).toBe('200 guarded');
  });
});

function silent(): Logger {
  const logger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => logger };
  return logger;
}
