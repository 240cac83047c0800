/**
 * One engine per data directory: two processes rewriting the same index would lose deploys.
 *
 * A pid alone cannot decide it: two containers on one volume are both pid 1, a pid seen from
 * another pid namespace means another process or none, and a pid is reused once its process is
 * gone. So the lock is a directory, DATA/engine.lock, holding an `owner` file (a unique token, and
 * who wrote it: pid, host, boot id, pid namespace, the process's start time), and it is kept alive by
 * a heartbeat: the owner sets the file's mtime every HEARTBEAT_MS.
 *
 * Taking it: the owner file is written into a private directory first, which is then renamed to
 * engine.lock. rename() of a directory onto a non-empty directory fails, so of two engines exactly
 * one gets it, and nobody ever sees the lock without its owner file.
 *
 * When it is taken, whose is it?
 * - Written on the same boot in the same pid namespace as ours: its pid means the same process to
 *   us, and the process's start time (/proc/PID/stat) tells a live owner from a reused pid. Alive:
 *   refused at once. Gone (kill -9): taken over at once.
 * - Otherwise (another container, another host, no /proc): only the heartbeat can tell. The lock is
 *   watched on our own clock; a heartbeat that moves means a live owner (refused). One that has
 *   not moved for STALE_MS is stale, and so is one older than STALE_MS by the wall clock once
 *   watched for a few heartbeats (so that a skewed clock on the owner's host cannot fake an age).
 *
 * Taking over a stale lock must be atomic too: two engines may judge the same lock stale at once.
 * The stale directory is renamed to engine.lock.dead-<its token>: a second engine doing the same
 * finds that name taken (rename onto a non-empty directory fails) and cannot move the lock the first
 * engine created meanwhile. The taker then reads what it moved: if it is not the lock it judged
 * (possible only if that name was cleared in between, see DEAD_KEEP_MS), it puts it back. Then the
 * usual exclusive rename decides who owns the free lock. The dead directories are kept DEAD_KEEP_MS,
 * long enough for any taker that judged the same lock to have tried and failed.
 *
 * Should the lock still be lost (this engine stalled longer than STALE_MS and another took it over,
 * or someone removed it), the heartbeat notices that engine.lock/owner is no longer its file and
 * says so through onLost: the store then refuses every write rather than overwrite another
 * engine's index.
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstat, mkdir, open, readFile, readdir, readlink, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import { TEMP_PREFIX } from './atomic-file.js';

export const LOCK_NAME = 'engine.lock';
const OWNER_FILE = 'owner';
const DEAD_PREFIX = `${LOCK_NAME}.dead-`;

const HEARTBEAT_MS = 2_000;
const STALE_MS = 20_000;
/** How long a taken-over lock's directory is kept (see above). */
const DEAD_KEEP_MS = 60_000;
/** A lock changing hands all the time (never seen whole) is not fought over forever. */
const MAX_ATTEMPTS = 20;

export interface LockOwner {
  token: string;
  pid: number;
  host: string;
  /** /proc/sys/kernel/random/boot_id: which boot the pid and start time belong to. */
  boot?: string;
  /** /proc/self/ns/pid: which pid namespace the pid is a number in. */
  pidNamespace?: string;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat, field 22). */
  startTicks?: string;
  since: string;
}

export interface DataDirLockOptions {
  /** The lock was found held by another engine or lost; called at most once. */
  onLost?: (reason: string) => void;
  /** Waiting for a lock whose owner's liveness only its heartbeat can tell. */
  onWait?: (message: string) => void;
  heartbeatMs?: number;
  staleMs?: number;
  /** How often a watched lock is looked at. */
  pollMs?: number;
}

export interface DataDirLock {
  readonly owner: LockOwner;
  release(): Promise<void>;
}

interface Identity {
  boot?: string;
  pidNamespace?: string;
}

async function readTrimmed(read: Promise<string>): Promise<string | undefined> {
  try {
    const text = (await read).trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

async function identity(): Promise<Identity> {
  // A /proc mounted for another pid namespace (a namespace made without remounting it) names other
  // processes by our pids: then no pid of ours can be looked up, and only the heartbeat counts.
  if ((await readTrimmed(readlink('/proc/self'))) !== String(process.pid)) return {};
  const boot = await readTrimmed(readFile('/proc/sys/kernel/random/boot_id', 'utf8'));
  const pidNamespace = await readTrimmed(readlink('/proc/self/ns/pid'));
  return { ...(boot === undefined ? {} : { boot }), ...(pidNamespace === undefined ? {} : { pidNamespace }) };
}

/** Field 22 of /proc/PID/stat, or undefined when no such process (or no /proc). */
export async function startTicksOf(pid: number): Promise<string | undefined> {
  const text = await readTrimmed(readFile(`/proc/${pid}/stat`, 'utf8'));
  if (text === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return fields[22 - 3];
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** rename() failing because the target exists: a non-empty directory, or a file (a legacy lock). */
function isTaken(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'ENOTDIR' || code === 'EISDIR';
}

async function readOwner(dir: string): Promise<LockOwner | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Partial<LockOwner>;
    if (typeof parsed.token !== 'string' || typeof parsed.pid !== 'number') return undefined;
    return parsed as LockOwner;
  } catch {
    return undefined;
  }
}

function describeOwner(owner: LockOwner, info: Stats | undefined): string {
  const beat = info === undefined ? '' : `, last heartbeat ${((Date.now() - info.mtimeMs) / 1000).toFixed(1)} s ago`;
  return `pid ${owner.pid} on ${owner.host}, since ${owner.since}${beat}`;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

export async function lockDataDir(dataDir: string, options: DataDirLockOptions = {}): Promise<DataDirLock> {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const staleMs = options.staleMs ?? STALE_MS;
  const pollMs = options.pollMs ?? Math.max(20, Math.floor(heartbeatMs / 8));
  const lockPath = join(dataDir, LOCK_NAME);
  const ownerPath = join(lockPath, OWNER_FILE);
  const ownerInfo = (): Promise<Stats | undefined> => stat(ownerPath).catch(() => undefined);
  const me = await identity();
  const token = randomBytes(16).toString('hex');
  const owner: LockOwner = {
    token,
    pid: process.pid,
    host: hostname(),
    ...me,
    ...(me.boot !== undefined && me.pidNamespace !== undefined ? { startTicks: await startTicksOf(process.pid) } : {}),
    since: new Date().toISOString(),
  };
  const refuse = (detail: string): EngineError =>
    new EngineError('INTERNAL', `data directory ${dataDir} is in use by another engine (${detail})`);

  /** Whether the owner is provably alive or gone; undefined when only its heartbeat can tell. */
  async function verdict(holder: LockOwner): Promise<'alive' | 'gone' | undefined> {
    if (holder.boot === undefined || holder.pidNamespace === undefined || holder.startTicks === undefined) return undefined;
    if (holder.boot !== me.boot || holder.pidNamespace !== me.pidNamespace) return undefined;
    return (await startTicksOf(holder.pid)) === holder.startTicks ? 'alive' : 'gone';
  }

  /** Watches the owner file: 'alive' when its heartbeat moves, 'stale' when it does not in time, 'changed' when the lock went. */
  async function watchHeartbeat(holder: LockOwner | undefined): Promise<'alive' | 'stale' | 'changed'> {
    const first = await ownerInfo();
    if (first === undefined) return 'changed';
    options.onWait?.(
      `waiting to see whether the engine holding ${lockPath} is alive` + (holder ? ` (${describeOwner(holder, first)})` : ''),
    );
    const started = performance.now();
    const minWatch = Math.min(staleMs, 2.5 * heartbeatMs);
    for (;;) {
      await sleep(pollMs);
      const now = await ownerInfo();
      if (now === undefined) return 'changed';
      if (now.ino !== first.ino || now.mtimeMs !== first.mtimeMs) return 'alive';
      const watched = performance.now() - started;
      if (watched >= staleMs || (watched >= minWatch && Date.now() - now.mtimeMs > staleMs)) return 'stale';
    }
  }

  /**
   * Moves a stale lock out of the way, atomically against other takers (see the top). A lock whose
   * owner file cannot be read (only damage or a hand can make one) has no token to claim it by: it
   * is moved under a name of ours, and the exclusive rename that follows still decides.
   */
  async function takeOver(stale: LockOwner | undefined): Promise<void> {
    const dead = join(dataDir, `${DEAD_PREFIX}${stale?.token ?? `unreadable-${token}`}`);
    try {
      await rename(lockPath, dead);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || isTaken(err)) return; // another engine moved it first
      throw err;
    }
    const now = new Date();
    await utimes(dead, now, now).catch(() => {});
    const moved = await readOwner(dead);
    if (stale !== undefined && moved?.token !== stale.token) {
      // Not the lock judged stale: a live one created since. Give it back (if a third engine took
      // the free name meanwhile, that lock's owner finds out by its heartbeat and stops writing).
      await rename(dead, lockPath).catch(() => {});
    }
  }

  /** A lock file of engines before the heartbeat: a bare pid, judged as they judged it. */
  async function legacyLock(): Promise<void> {
    const pid = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) throw refuse(`pid ${pid}, an older engine's lock file`);
    await unlink(lockPath).catch(() => {});
  }

  const prepared = join(dataDir, `${TEMP_PREFIX}${LOCK_NAME}-${token}`);
  try {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await rm(prepared, { recursive: true, force: true });
      await mkdir(prepared);
      const handle = await open(join(prepared, OWNER_FILE), 'wx', 0o644);
      await handle.writeFile(`${JSON.stringify(owner)}\n`);
      await handle.sync();
      await handle.close();
      let taken = false;
      try {
        await rename(prepared, lockPath);
        taken = true;
      } catch (err) {
        // ENOENT: an engine holding the lock swept our prepared directory; look at its lock.
        if (!isTaken(err) && errnoCode(err) !== 'ENOENT') throw err;
      }
      if (taken) return await held();
      const info = await lstat(lockPath).catch(() => undefined);
      if (info === undefined) continue;
      if (!info.isDirectory()) {
        await legacyLock();
        continue;
      }
      const holder = await readOwner(lockPath);
      if (holder === undefined && (await lstat(ownerPath).catch(() => undefined)) === undefined) {
        // The owner file is in place before the directory is named engine.lock, and a released lock
        // is moved away whole: a lock without one is debris, nobody's lock.
        await takeOver(undefined);
        continue;
      }
      const known = holder === undefined ? undefined : await verdict(holder);
      if (known === 'alive') throw refuse(describeOwner(holder!, await ownerInfo()));
      if (known === undefined) {
        const watched = await watchHeartbeat(holder);
        if (watched === 'changed') continue;
        if (watched === 'alive') {
          const detail = holder ? describeOwner(holder, await ownerInfo()) : 'its heartbeat is current';
          throw refuse(`${detail}; a lock whose heartbeat stops is taken over ${staleMs / 1000} s later`);
        }
      }
      await takeOver(holder);
    }
    throw new EngineError('INTERNAL', `could not lock data directory ${dataDir}: the lock kept changing hands`);
  } finally {
    await rm(prepared, { recursive: true, force: true }).catch(() => {});
  }

  async function held(): Promise<DataDirLock> {
    const handle: FileHandle = await open(ownerPath, 'r');
    const mine = await handle.stat();
    let lost = false;
    let beating = false;
    const loseIt = (reason: string): void => {
      if (lost) return;
      lost = true;
      clearInterval(timer);
      options.onLost?.(reason);
    };
    const beat = async (): Promise<void> => {
      if (beating || lost) return;
      beating = true;
      try {
        const now = new Date();
        await handle.utimes(now, now);
        const current = await ownerInfo();
        if (current === undefined || current.ino !== mine.ino || current.dev !== mine.dev) {
          const other = await readOwner(lockPath);
          loseIt(other ? `another engine holds it now (${describeOwner(other, current)})` : `${lockPath} was removed`);
        }
      } catch {
        // A heartbeat that could not be written is retried at the next tick; staleness is judged
        // over many of them.
      } finally {
        beating = false;
      }
    };
    const timer = setInterval(() => void beat(), heartbeatMs);
    timer.unref();
    scheduleDeadRemoval(dataDir);
    return {
      owner,
      async release(): Promise<void> {
        clearInterval(timer);
        const wasLost = lost;
        lost = true;
        try {
          const current = await ownerInfo();
          if (wasLost || current?.ino !== mine.ino || current.dev !== mine.dev) return;
          // Moved aside before it is removed, so that only our own lock is ever deleted.
          const gone = join(dataDir, `${TEMP_PREFIX}${LOCK_NAME}-released-${token}`);
          await rename(lockPath, gone);
          if ((await readOwner(gone))?.token === token) await rm(gone, { recursive: true, force: true });
          else await rename(gone, lockPath).catch(() => {});
        } catch {
          // Left in place, the lock is judged gone by the next engine (its pid or its heartbeat).
        } finally {
          await handle.close().catch(() => {});
        }
      },
    };
  }
}

/** Removes the directories of taken-over locks once no taker can still be racing for them. */
function scheduleDeadRemoval(dataDir: string): void {
  void (async () => {
    let names: string[];
    try {
      names = (await readdir(dataDir)).filter((name) => name.startsWith(DEAD_PREFIX));
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dataDir, name);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined) continue;
      const wait = Math.max(0, DEAD_KEEP_MS - (Date.now() - info.mtimeMs));
      const timer = setTimeout(() => void rm(path, { recursive: true, force: true }).catch(() => {}), wait);
      timer.unref();
    }
  })();
}
