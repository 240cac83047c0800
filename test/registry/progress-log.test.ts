/** The engine's progress lines for large downloads: start, quarters, done; small blobs stay quiet. */
import { describe, expect, it } from 'vitest';
import { silentLogger, type Logger } from '../../src/logger.js';
import { logTransferProgress } from '../../src/registry/progress-log.js';

describe('logTransferProgress', () => {
  it('logs a large download at start, each quarter and the end, and nothing for a small one', () => {
    const lines: string[] = [];
    const logger: Logger = { ...silentLogger, info: (_o, msg) => lines.push(msg ?? '') };
    const report = logTransferProgress(logger, 1000);
    const digest = `sha256:${'c'.repeat(64)}`;
    report({ direction: 'download', phase: 'start', digest, total: 4000, done: 0 });
    for (let done = 500; done <= 4000; done += 500) report({ direction: 'download', phase: 'progress', digest, total: 4000, done });
    report({ direction: 'download', phase: 'done', digest, total: 4000, done: 4000 });
    report({ direction: 'download', phase: 'start', digest, total: 10, done: 0 });
    report({ direction: 'download', phase: 'done', digest, total: 10, done: 10 });
    expect(lines.slice(0, 4)).toEqual([
      'downloading sha256:cccccccccccc (4000 bytes)',
      'downloading sha256:cccccccccccc: 25%',
      'downloading sha256:cccccccccccc: 50%',
      'downloading sha256:cccccccccccc: 75%',
    ]);
    expect(lines[4]).toMatch(/^downloading sha256:cccccccccccc: done, [\d.]+ MiB\/s$/);
    expect(lines).toHaveLength(5);
  });
});
