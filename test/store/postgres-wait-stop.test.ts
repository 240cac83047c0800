/**
 * A node whose shared store is unreachable waits for it (app.ts); a stop asked for meanwhile is a
 * clean stop: exit 0, as after serving, so that a supervisor (Kubernetes, systemd) does not count
 * a deliberate stop as a crash.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, makeDataDir } from '../support/engine-process.js';
import { freePort } from '../support/free-port.js';

describe('a node waiting for its store', () => {
  it('stops with exit 0 on SIGTERM', async () => {
    // A loopback port nothing listens on: the store is unreachable for as long as the test runs.
    const port = await freePort();
    const dataDir = await makeDataDir();
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir, '--store', `postgresql://engine@127.0.0.1:${port}/functions`, '--workers', '1'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer): void => {
          lines.push(chunk.toString('utf8'));
          if (lines.join('').includes('waiting for the function store')) resolve();
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        void exited.then((code) => reject(new Error(`exited with ${code} before waiting:\n${lines.join('')}`)));
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(lines.join('')).not.toContain('could not start');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
