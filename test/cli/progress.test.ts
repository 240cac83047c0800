/** Transfer progress: a bar on a terminal for large blobs, plain lines anywhere else. */
import { describe, expect, it } from 'vitest';
import { createProgressReporter, formatBytes } from '../../src/cli/progress.js';
import type { TransferProgress } from '../../src/registry/index.js';

const MiB = 1024 * 1024;

function recorder(isTTY: boolean) {
  const writes: string[] = [];
  let clock = 0;
  const reporter = createProgressReporter({ write: (t: string) => writes.push(t), isTTY, columns: 120 }, { now: () => clock });
  const send = (phase: TransferProgress['phase'], done: number, total = 8 * MiB, advance = 200) => {
    clock += advance;
    reporter.onProgress({ direction: 'upload', phase, digest: `sha256:${'ab'.repeat(32)}`, total, done });
  };
  return { writes, send };
}

describe('progress', () => {
  it('redraws a bar in place on a terminal, throttled, ending with a newline', () => {
    const { writes, send } = recorder(true);
    send('start', 0);
    send('progress', 2 * MiB);
    send('progress', 2.5 * MiB, 8 * MiB, 10); // within 100 ms of the last draw: skipped
    send('progress', 4 * MiB);
    send('done', 8 * MiB);
    expect(writes).toHaveLength(4);
    expect(writes.every((w) => w.startsWith('\r\x1b[2K'))).toBe(true);
    expect(writes[1]).toMatch(/uploading sha256:abababababab \[#{8}\.{22}\]  25% 2\.0 MiB\/8\.0 MiB/);
    expect(writes[3]).toMatch(/\[#{30}\] 100% 8\.0 MiB\/8\.0 MiB .*\n$/);
  });

  it('prints plain lines when not a terminal: start, quarters, done with the rate', () => {
    const { writes, send } = recorder(false);
    send('start', 0);
    for (let done = MiB; done <= 8 * MiB; done += MiB) send('progress', done);
    send('done', 8 * MiB);
    expect(writes).toEqual([
      'uploading sha256:abababababab (8.0 MiB)\n',
      '  sha256:abababababab 25% (2.0 MiB of 8.0 MiB)\n',
      '  sha256:abababababab 50% (4.0 MiB of 8.0 MiB)\n',
      '  sha256:abababababab 75% (6.0 MiB of 8.0 MiB)\n',
      expect.stringMatching(/^uploaded sha256:abababababab \(8\.0 MiB, [\d.]+ (KiB|MiB)\/s\)\n$/),
    ]);
  });

  it('small blobs get one line, skipped ones say why', () => {
    const { writes, send } = recorder(true);
    send('start', 0, 1000);
    send('progress', 1000, 1000);
    send('done', 1000, 1000);
    send('skipped', 0, 1000);
    expect(writes).toEqual(['uploaded sha256:abababababab (1000 B)\n', 'sha256:abababababab already on the registry, not transferred\n']);
  });

  it('formats sizes', () => {
    expect(formatBytes(12)).toBe('12 B');
    expect(formatBytes(2048)).toBe('2.0 KiB');
    expect(formatBytes(3 * MiB)).toBe('3.0 MiB');
  });
});
