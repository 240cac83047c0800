/**
 * Each HTTP thread listens on every address the engine's host names with one HTTP server
 * (src/api/listen.ts): the server on the first, each further address handing its connections to
 * that same server, so whatever stands in front of it answers on every address. The resolver is a
 * stand-in here (this machine's `localhost` has one address): dns.lookup, which listen.ts reads at
 * call time.
 */
import dns from 'node:dns';
import { createServer, request, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { hostAddresses, listenOnEveryAddress, type Listening } from '../../src/api/listen.js';
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

let server: Server | undefined;
let listening: Listening | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  for (const extra of listening?.further ?? []) extra.close();
  server?.closeAllConnections();
  await new Promise((resolve) => (server?.listening ? server.close(resolve) : resolve(undefined)));
  server = undefined;
  listening = undefined;
});

/** A server whose one request listener answers, as the engine's guards stand in front of its route. */
function guardedServer(): Server {
  server = createServer((_req, res) => res.end('guarded'));
  return server;
}

async function listenOn(host: string, warn: (address: string, err: Error, msg: string) => void = () => {}): Promise<Listening> {
  listening = await listenOnEveryAddress(guardedServer(), await hostAddresses(host), 0, false, warn);
  return listening;
}

describe('listening on every address a host names', () => {
  it.skipIf(!LOOPBACK_IPV6)('serves each address with the one server and its listeners (skipped where ::1 cannot be bound)', async () => {
    resolveAs('both-families.test', ['127.0.0.1', '::1']);
    const { addresses } = await listenOn('both-families.test');
    expect(addresses.map((a) => a.host)).toEqual(['127.0.0.1', '::1']);
    const port = addresses[0]!.port;
    expect(addresses[1]!.port).toBe(port);
    expect(await get('127.0.0.1', port)).toBe('200 guarded');
    expect(await get('::1', port)).toBe('200 guarded');
  });

  it('logs and skips an address after the first that cannot be bound, and serves the others', async () => {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine's: binding it fails.
    resolveAs('one-unbindable.test', ['127.0.0.1', '192.0.2.1']);
    const warnings: string[] = [];
    const { addresses } = await listenOn('one-unbindable.test', (address, _err, msg) => void warnings.push(`${address}: ${msg}`));
    expect(addresses.map((a) => a.host)).toEqual(['127.0.0.1']);
    expect(warnings).toEqual(['192.0.2.1: could not listen on one of the addresses of the host; serving the others']);
    expect(await get('127.0.0.1', addresses[0]!.port)).toBe('200 guarded');
  });

  it('an address given as such is the only one listened on', async () => {
    const { addresses } = await listenOn('127.0.0.1');
    expect(addresses.map((a) => a.host)).toEqual(['127.0.0.1']);
    expect(await get('127.0.0.1', addresses[0]!.port)).toBe('200 guarded');
  });
});
