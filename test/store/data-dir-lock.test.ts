/**
 * The data directory's lock (store/data-dir-lock.ts): exclusive creation, the owner judged by its
 * pid only where the pid means something (same boot, same pid namespace, same start time), else by
 * its heartbeat, and atomic takeover. Heartbeat and staleness bounds are shortened here; no test
 * asserts a duration (whether the engine waited is read from onWait).
 */
import { mkdir, mkdtemp, readFile, readlink, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCK_NAME, lockDataDir, startTicksOf, type DataDirLock, type DataDirLockOptions, type LockOwner } from '../../src/store/data-dir-lock.js';

const FAST: DataDirLockOptions = { heartbeatMs: 50, staleMs: 600, pollMs: 10 };

async function ourNamespace(): Promise<{ boot: string; pidNamespace: string }> {
  return {
    boot: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(),
    pidNamespace: await readlink('/proc/self/ns/pid'),
  };
}

describe('the data directory lock', () => {
  let dir: string;
  const held: DataDirLock[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-lock-'));
  });

  afterEach(async () => {
    for (const lock of held.splice(0)) await lock.release();
    await rm(dir, { recursive: true, force: true });
  });

  /** A lock as another engine left it, its heartbeat at `beatAt`. */
  async function fakeLock(owner: Partial<LockOwner>, beatAt = new Date()): Promise<string> {
    const lockDir = join(dir, LOCK_NAME);
    await mkdir(lockDir);
    const file = join(lockDir, 'owner');
    const full: LockOwner = { token: 'f'.repeat(32), pid: 1, host: 'other-host', since: '2026-01-01T00:00:00.000Z', ...owner };
    await writeFile(file, JSON.stringify(full));
    await utimes(file, beatAt, beatAt);
    return file;
  }

  async function take(options: DataDirLockOptions = FAST): Promise<DataDirLock> {
    const lock = await lockDataDir(dir, options);
    held.push(lock);
    return lock;
  }

  it('of several taking it at the same moment, exactly one holds it, every time', async () => {
    for (let round = 0; round < 25; round++) {
      const results = await Promise.allSettled([take(), take(), take()]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/in use by another engine \(pid \d+ on /);
      for (const lock of held.splice(0)) await lock.release();
    }
  });

  it('a live process in our pid namespace holding it: refused at once, naming it', async () => {
    const ns = await ourNamespace();
    await fakeLock({ pid: process.ppid, host: 'here', ...ns, startTicks: await startTicksOf(process.ppid) });
    const waits: string[] = [];
    await expect(take({ ...FAST, onWait: (m) => waits.push(m) })).rejects.toThrow(
      new RegExp(`in use by another engine \\(pid ${process.ppid} on here, since `),
    );
    expect(waits).toEqual([]);
  });

  it('a reused pid (alive, but not the process that wrote the lock): taken over at once, heartbeat or not', async () => {
    const ns = await ourNamespace();
    await fakeLock({ pid: process.pid, ...ns, startTicks: '1' });
    const waits: string[] = [];
    const lock = await take({ ...FAST, onWait: (m) => waits.push(m) });
    expect(lock.owner.pid).toBe(process.pid);
    expect(waits).toEqual([]);
  });

  it('pid 1 of another pid namespace with a live heartbeat: refused with a clear message', async () => {
    const file = await fakeLock({ pid: 1, boot: 'another-boot', pidNamespace: 'pid:[4026532999]', startTicks: '5' });
    // The other engine, alive: its heartbeat keeps moving.
    const beat = setInterval(() => {
      const now = new Date();
      void utimes(file, now, now).catch(() => {});
    }, 20);
    try {
      await expect(take()).rejects.toThrow(/in use by another engine \(pid 1 on other-host, since .*taken over 0\.6 s later/);
    } finally {
      clearInterval(beat);
    }
  });

  it('a pid that is alive here but was written in another namespace is not trusted: a silent heartbeat is taken over', async () => {
    // pid 1 is alive here (init), and a pid-only lock would be refused forever.
    await fakeLock({ pid: 1, boot: 'another-boot', pidNamespace: 'pid:[4026532999]', startTicks: '5' });
    const waits: string[] = [];
    const lock = await take({ ...FAST, onWait: (m) => waits.push(m) });
    expect(lock.owner.token).not.toBe('f'.repeat(32));
    expect(waits).toHaveLength(1);
    expect(waits[0]).toMatch(/waiting to see whether the engine holding .* is alive \(pid 1 on other-host/);
  });

  it('a heartbeat older than the bound: taken over', async () => {
    await fakeLock({ pid: 1 }, new Date(Date.now() - 3_600_000));
    const lock = await take();
    expect(lock.owner.pid).toBe(process.pid);
  });

  it('several engines taking over one stale lock at once: exactly one holds it, every time', async () => {
    const ns = await ourNamespace();
    for (let round = 0; round < 15; round++) {
      await fakeLock({ token: String(round).padStart(32, 'd'), pid: 999_999_999, ...ns, startTicks: '1' });
      const results = await Promise.allSettled([take(), take(), take(), take()]);
      expect(results.filter((r) => r.status === "fulfilled"), results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok")).join(" | ")).toHaveLength(1);
      for (const lock of held.splice(0)) await lock.release();
    }
  });

  it('the heartbeat notices a lock taken from under it, and says so once', async () => {
    const lost: string[] = [];
    await take({ ...FAST, onLost: (reason) => lost.push(reason) });
    await rename(join(dir, LOCK_NAME), join(dir, 'elsewhere'));
    await fakeLock({ pid: 4242, host: 'thief' });
    for (let i = 0; i < 200 && lost.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/another engine holds it now \(pid 4242 on thief/);
  });

  it('release hands it on: the next engine takes it at once', async () => {
    const first = await take();
    await first.release();
    held.splice(0);
    const waits: string[] = [];
    const second = await take({ ...FAST, onWait: (m) => waits.push(m) });
    expect(second.owner.token).not.toBe(first.owner.token);
    expect(waits).toEqual([]);
  });
});
