/**
 * Listens on every address the configured host names with ONE HTTP server. A name such as
 * `localhost` may resolve to 127.0.0.1 and ::1: the server listens on the first address, and each
 * further one hands the connections it accepts to that same server (Node's documented way to give
 * a server a connection), which then serves them with every listener and setting it has (the
 * pipeline gate, the refusal of requests without Host, the invocation route, the counts), and
 * tracks them for its close. (Fastify's own way for a name, a plain server of its own per further
 * address, calls its router directly and would skip all of that.)
 *
 * The names are resolved once, on the main thread (hostAddresses); the HTTP threads are given the
 * addresses and listen with listenOnEveryAddress.
 */
import dns from 'node:dns';
import type { Server as HttpServer } from 'node:http';
import { createServer, isIP, type Server as NetServer } from 'node:net';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface Listening {
  /** The addresses listened on, the first being the server's own. */
  addresses: ListenAddress[];
  /** The servers of the further addresses: to close (stop accepting) with the HTTP server. */
  further: NetServer[];
}

/** Every address `host` names: itself when it is one, else every address it resolves to, in the resolver's order, each once. */
export function hostAddresses(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return Promise.resolve([host]);
  return new Promise((resolve, reject) => {
    // Read from the module at call time (not imported by name), so a resolver double can stand in.
    dns.lookup(host, { all: true }, (err, found) => {
      if (err) reject(err);
      else resolve([...new Set(found.map((a) => a.address))]);
    });
  });
}

/**
 * Starts `server` listening on `addresses[0]` and `port` (0: a free one, then the same for every
 * address), and every further address handing its connections to it. Rejects when the first
 * cannot be bound; a further one that cannot (::1 where IPv6 is off) is passed to `warn` and
 * skipped.
 */
export async function listenOnEveryAddress(
  server: HttpServer,
  addresses: readonly string[],
  port: number,
  reusePort: boolean,
  warn: (address: string, err: Error, msg: string) => void,
): Promise<Listening> {
  const [first, ...rest] = addresses;
  if (first === undefined) throw new Error('no address to listen on');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: first, port, ...(reusePort ? { reusePort: true } : {}) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;
  const listening: Listening = { addresses: [{ host: first, port: boundPort }], further: [] };
  for (const address of rest) {
    const extra = createServer({ noDelay: true }, (socket) => server.emit('connection', socket));
    const ok = await new Promise<boolean>((resolve) => {
      let up = false;
      // Past the bind, an error (a failed accept) is passed on, as it must not end the process.
      extra.on('error', (err) => {
        if (up) warn(address, err, 'error on one of the addresses listened on');
        else {
          warn(address, err, 'could not listen on one of the addresses of the host; serving the others');
          resolve(false);
        }
      });
      extra.listen({ host: address, port: boundPort, ...(reusePort ? { reusePort: true } : {}) }, () => {
        up = true;
        resolve(true);
      });
    });
    if (!ok) continue;
    listening.further.push(extra);
    listening.addresses.push({ host: address, port: boundPort });
  }
  return listening;
}
