/**
 * A node whose shared store is unreachable waits for it (app.ts); a stop asked for meanwhile is a
 * clean stop: exit 0, as after serving, so that a supervisor (Kubernetes, systemd) does not count
 * a deliberate stop as a crash.
 */
import { describe, expect, it } from 'vitest';
import { startEngineProcess } from '../support/engine-process.js';
import { freePort } from '../support/free-port.js';

describe('a node waiting for its store', () => {
  it('stops with exit 0 on SIGTERM', async () => {
    // A loopback port nothing listens on: the store is unreachable for as long as the test runs.
    const port = await freePort();
    const lines: string[] = [];
    let asked = false;
    const started = startEngineProcess({
      args: ['--store', `postgresql://engine@127.0.0.1:${port}/functions`, '--workers', '1'],
      onLine: (line, child) => {
        lines.push(line);
        // Once: the engine says it again at each retry, and a second signal is not a graceful stop.
        if (!asked && line.includes('waiting for the function store')) {
          asked = true;
          child.kill('SIGTERM');
        }
      },
    });
    // It never listens: it ends, and says how.
    await expect(started).rejects.toThrow(/engine exited with 0 before listening/);
    expect(lines.join('\n')).toContain('stopped before the engine had started');
    expect(lines.join('\n')).not.toContain('could not start');
  });
});
