/** A loopback HTTP server whose every answer a test writes by hand, recording what it was asked. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterEach } from 'vitest';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

export interface Served {
  host: string;
  port: number;
  requests: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:`port` (0: any free port); rejects when the port cannot be had. */
export async function serve(handler: Handler, port = 0): Promise<Served> {
  const requests: Served['requests'] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, headers: req.headers });
    handler(req, res, url);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : 0;
  return {
    host: `127.0.0.1:${actual}`,
    port: actual,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Cleanups {
  /** Runs `cleanup` after the current test; the last deferred runs first. */
  defer(cleanup: () => Promise<void>): void;
  /** `serve()`, closed after the current test. */
  serve(handler: Handler, port?: number): Promise<Served>;
}

/** Registers an afterEach in the calling file (or describe block) that runs whatever its tests deferred. */
export function cleanupAfterEach(): Cleanups {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });
  const defer = (cleanup: () => Promise<void>): void => {
    cleanups.push(cleanup);
  };
  return {
    defer,
    serve: async (handler, port) => {
      const served = await serve(handler, port);
      defer(served.close);
      return served;
    },
  };
}

/** Reads a request body whole. */
export async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
