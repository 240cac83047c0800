/**
 * local-file.ts: the checks that keep a local path from wedging the engine, and the deadline every
 * step races (a read the kernel never finishes cannot be made on this machine, so the deadline is
 * shown on work that never settles).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beforeDeadline, openRegularFile, readRegularFile } from '../../src/registry/local-file.js';

describe('local files', () => {
  let dir: string;
  const tooLarge = (): Error => new Error('too large');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-local-'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await symlink(join(dir, 'fifo'), join(dir, 'link'));
    await writeFile(join(dir, 'file'), 'hello');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a regular file, and refuses one over the bound', async () => {
    expect((await readRegularFile(join(dir, 'file'), 5, tooLarge)).toString()).toBe('hello');
    await expect(readRegularFile(join(dir, 'file'), 4, tooLarge)).rejects.toThrow('too large');
  });

  it.skipIf(!existsSync('/proc/self/pagemap'))(
    'reads a file that says it is empty, and refuses one that never ends at the bound, not after reading it whole',
    async () => {
      const status = await readRegularFile('/proc/self/status', 1 << 20, tooLarge);
      expect(status.toString()).toContain(`Pid:\t${process.pid}`);
      // Says size 0, and holds 8 bytes for every page of the address space: hundreds of GB.
      await expect(readRegularFile('/proc/self/pagemap', 1 << 20, tooLarge)).rejects.toThrow('too large');
    },
  );

  it('refuses a FIFO, a symlink to one and a device as special, a directory and a missing path as such', async () => {
    await expect(openRegularFile(join(dir, 'fifo'))).rejects.toMatchObject({ problem: 'special', message: 'a FIFO, not a regular file' });
    await expect(openRegularFile(join(dir, 'link'))).rejects.toMatchObject({ problem: 'special' });
    await expect(openRegularFile('/dev/null')).rejects.toMatchObject({ problem: 'special', message: /character device/ });
    await expect(openRegularFile(dir)).rejects.toMatchObject({ problem: 'directory' });
    await expect(openRegularFile(join(dir, 'nope'))).rejects.toMatchObject({ problem: 'missing' });
  });

  it('gives up on work that never settles when the deadline fires, and on any step once it has', async () => {
    const deadline = new AbortController();
    const never = beforeDeadline(new Promise<never>(() => {}), deadline.signal);
    deadline.abort(new Error('deadline'));
    await expect(never).rejects.toThrow('deadline');
    await expect(readRegularFile(join(dir, 'file'), 5, tooLarge, deadline.signal)).rejects.toThrow('deadline');
  });

  it('hands what settles after the deadline to the late callback (a handle to close)', async () => {
    const deadline = new AbortController();
    let release!: (value: string) => void;
    const late: string[] = [];
    const work = beforeDeadline(new Promise<string>((resolve) => (release = resolve)), deadline.signal, (value) => late.push(value));
    deadline.abort(new Error('deadline'));
    await expect(work).rejects.toThrow('deadline');
    release('handle');
    await new Promise((resolve) => setImmediate(resolve));
    expect(late).toEqual(['handle']);
  });
});
