/**
 * Listens on every address the configured host names, with ONE HTTP server. Fastify, given a name
 * such as `localhost` that resolves to 127.0.0.1 and ::1, binds the second address with a plain
 * server of its own, which calls its router directly: the request listeners this layer puts in
 * front of the main server (the pipeline gate, the refusal of requests without Host, the direct
 * invocation route, the per-thread counts) would not see the connections to it. So Fastify is
 * given the first address, and each further address hands the connections it accepts to that same
 * server (Node's documented way to give a server a connection), which then serves them with every
 * listener and setting it has, and tracks them for its close.
 */
import dns from 'node:dns';
import { createServer, isIP, type Server as NetServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../logger.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Starts `app` listening on `host` (every address it resolves to) and `port` (0: a free one, then
 * the same for every address). Resolves with the addresses listened on, the first being Fastify's.
 * An address after the first that cannot be bound (::1 where IPv6 is off) is logged and skipped,
 * as Fastify does.
 */
export async function listenOnEveryAddress(app: FastifyInstance, host: string, port: number, reusePort: boolean, logger: Logger): Promise<ListenAddress[]> {
  const addresses = isIP(host) !== 0 ? [host] : await resolveAll(host);
  const extra: NetServer[] = [];
  // They stop accepting when Fastify's server does: at the start of its close. (Hooks are added
  // before Fastify listens.)
  app.addHook('preClose', async () => {
    for (const server of extra) server.close();
  });
  await app.listen({ port, host: addresses[0] ?? host, ...(reusePort ? { reusePort: true } : {}) });
  const bound = app.server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;
  const listening: ListenAddress[] = [{ host: addresses[0] ?? host, port: boundPort }];
  for (const address of addresses.slice(1)) {
    const server = createServer({ noDelay: true }, (socket) => app.server.emit('connection', socket));
    const ok = await new Promise<boolean>((resolve) => {
      let listening = false;
      // Past the bind, an error (a failed accept) is logged, as it must not end the process.
      server.on('error', (err) => {
        if (listening) logger.warn({ address, err }, 'error on one of the addresses listened on');
        else {
          logger.warn({ address, err }, 'could not listen on one of the addresses of the host; serving the others');
          resolve(false);
        }
      });
      server.listen({ host: address, port: boundPort, ...(reusePort ? { reusePort: true } : {}) }, () => {
        listening = true;
        resolve(true);
      });
    });
    if (!ok) continue;
    extra.push(server);
    listening.push({ host: address, port: boundPort });
  }
  return listening;
}

/** Every address `host` resolves to, in the resolver's order, each once. */
function resolveAll(host: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // Read from the module at call time (not imported by name), as Fastify reads it.
    dns.lookup(host, { all: true }, (err, found) => {
      if (err) reject(err);
      else resolve([...new Set(found.map((a) => a.address))]);
    });
  });
}
