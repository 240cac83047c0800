/**
 * A node's local copies of module blobs, by digest, under DATA/blobs/sha256/<hex>: with the
 * PostgreSQL store the database holds the blobs and the data directory is only a cache (the same
 * place as the file store's blobs, so `func_local_path` reads the same). Every copy
 * is written whole (temporary file, then rename) and verified against its digest before each use,
 * so several engines may share one data directory without a lock: two writers of one digest write
 * the same bytes, and a damaged or half-written file is never used (it is fetched again).
 */
import { access, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EngineError } from '../../errors.js';
import { TEMP_PREFIX, writeFileAtomic } from '../atomic-file.js';
import { FileBlobStore } from '../blob-store.js';

/** A temporary file older than this is a crashed write's leftover, not another engine's write in progress. */
const STALE_TEMP_MS = 60 * 60 * 1000;

export class LocalBlobCache {
  private readonly dir: string;
  private readonly files: FileBlobStore;

  constructor(private readonly dataDir: string) {
    this.dir = join(dataDir, 'blobs', 'sha256');
    this.files = new FileBlobStore(dataDir);
  }

  /**
   * Refuses a file store's data directory: its blobs are that store's functions, which this cache
   * would take for unused copies and remove.
   */
  async init(): Promise<void> {
    const index = join(this.dataDir, 'functions.json');
    if (await access(index).then(() => true, () => false)) {
      throw new EngineError('INVALID_REQUEST', `the data directory ${this.dataDir} holds a file store (${index}): give the PostgreSQL store a --data-dir of its own`);
    }
    await mkdir(this.dir, { recursive: true });
    const now = Date.now();
    for (const name of await readdir(this.dir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info && now - info.mtimeMs > STALE_TEMP_MS) await rm(path, { force: true });
    }
  }

  pathOf(digest: string): string {
    return this.files.pathOf(digest);
  }

  /** The verified local copy, or undefined when there is none (or it is damaged: it is removed). */
  async get(digest: string): Promise<Uint8Array | undefined> {
    if (!(await this.files.has(digest))) return undefined;
    try {
      return await this.files.get(digest);
    } catch {
      await rm(this.pathOf(digest), { force: true });
      return undefined;
    }
  }

  /** Keeps a copy of bytes already verified against `digest`; a failure only costs a later fetch. */
  async put(digest: string, bytes: Uint8Array): Promise<void> {
    if (await this.files.has(digest)) return;
    await writeFileAtomic(this.pathOf(digest), bytes).catch(() => undefined);
  }

  /** Removes copies of digests no function uses, older than `minAgeMs` (a deploy on another engine sharing the directory may be writing one). */
  async prune(used: ReadonlySet<string>, minAgeMs: number): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for (const digest of await this.files.list().catch(() => [] as string[])) {
      if (used.has(digest)) continue;
      const info = await stat(this.pathOf(digest)).catch(() => undefined);
      if (info && now - info.mtimeMs > minAgeMs) {
        await rm(this.pathOf(digest), { force: true });
        removed += 1;
      }
    }
    return removed;
  }
}
