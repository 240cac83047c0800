/**
 * A start that fails after the engine already listens (here: the second HTTP thread cannot be
 * started, the first listening) rejects, and leaves nothing listening: an open server would keep
 * the process alive, and serving, after `wasm-engine serve` has reported that it could not start.
 * A port another process holds fails the start too, with the reason.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, startEngine } from '../../src/app.js';
import { loadConfig } from '../../src/config/config-file.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The error of a connection to 127.0.0.1:`port`, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('a start that fails after listening', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'we-start-failure-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('rejects, and the port is closed again', async () => {
    const port = await freePort();
    const config = loadConfig({ port: String(port), host: '127.0.0.1', 'data-dir': dataDir, 'log-level': 'silent', 'http-threads': '2', workers: '1' }, {});
    let firstListened = false;
    const started = startEngine(config, createLogger(config), {
      startHttpThread: (data, transferList) => {
        if (data.index === 2) throw new Error('no thread for you');
        const worker = new Worker(new URL('../../dist/api/threads/http-thread.js', import.meta.url), { workerData: data, transferList });
        worker.on('message', (message: { type?: string }) => {
          if (message.type === 'listening') firstListened = true;
        });
        return worker;
      },
    });
    await expect(started).rejects.toThrow('no thread for you');
    expect(firstListened).toBe(true);
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
  });

  it('on a port another process listens on: rejects with the reason', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const address = taken.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const config = loadConfig({ port: String(port), host: '127.0.0.1', 'data-dir': dataDir, 'log-level': 'silent', 'http-threads': '1', workers: '1' }, {});
      await expect(startEngine(config, createLogger(config))).rejects.toThrow(/could not listen: .*EADDRINUSE/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
