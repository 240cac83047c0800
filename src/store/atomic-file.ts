/**
 * Crash-safe file writes: write to a temporary sibling, fsync it, rename over the target, fsync
 * the directory. After a crash the target holds either the old or the new content, never a mix.
 */
import { open, readdir, rename, rm, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Every temporary name the store writes starts with this (writeFileAtomic's files, the lock's
 * directories): removeTempFiles() knows them all by it.
 */
export const TEMP_PREFIX = '.tmp-';

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${randomBytes(6).toString('hex')}`);
  const handle = await open(tmp, 'w', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dirname(path));
}

/** A rename or unlink is durable only once its directory is synced. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Removes what writes cut short by a crash left in `dir` (names starting with TEMP_PREFIX, files or
 * directories); a missing `dir` holds none. Only for an engine that holds the data directory's
 * lock: another engine's write in progress would go too. Returns the names removed.
 */
export async function removeTempFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
