/**
 * The function store on local disk: one index file (DATA/functions.json) rewritten atomically on
 * every change, and the wasm blobs by digest. The blob is written before the index that names it
 * and removed after the index that dropped it, so a crash at any moment leaves at worst an
 * unreferenced blob, which open() removes.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import { removeTempFiles, writeFileAtomic } from './atomic-file.js';
import { FileBlobStore } from './blob-store.js';
import { lockDataDir, type DataDirLock } from './data-dir-lock.js';
import { layerNotesDir } from './layer-notes.js';
import type { FunctionRecord, FunctionStore } from './types.js';
import { NameReservations } from './name-reservations.js';

interface IndexFile {
  version: 1;
  functions: FunctionRecord[];
}

export class FileFunctionStore implements FunctionStore {
  private readonly indexPath: string;
  private readonly blobs: FileBlobStore;
  private readonly records = new Map<string, FunctionRecord>();
  private readonly reserved = new NameReservations();
  /** Index rewrites run one at a time, in order, so no change overwrites another. */
  private writeChain: Promise<void> = Promise.resolve();
  private lock: DataDirLock | undefined;
  /** Why the data directory's lock is no longer ours: every write is refused from then on. */
  private lockLost: string | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly logger: Logger,
  ) {
    this.indexPath = join(dataDir, 'functions.json');
    this.blobs = new FileBlobStore(dataDir);
  }

  async open(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true });
    this.lock = await lockDataDir(this.dataDir, {
      onWait: (message) => this.logger.info({ dataDir: this.dataDir }, message),
      onLost: (reason) => {
        this.lockLost = reason;
        this.logger.error({ dataDir: this.dataDir, reason }, 'lost the data directory lock: deploys, updates and deletes are refused from now on');
      },
    });
    // Leftovers of writes a crash cut short, wherever the store writes (the index, blobs, layer
    // notes, the lock's own): only now, with the lock held, is none of them a write in progress.
    const leftovers = [
      ...(await removeTempFiles(this.dataDir)),
      ...(await this.blobs.init()),
      ...(await removeTempFiles(layerNotesDir(this.dataDir))),
    ];
    if (leftovers.length > 0) this.logger.info({ removed: leftovers.length }, 'removed temporary files left by an interrupted write');
    for (const record of await this.readIndex()) this.records.set(record.name, record);
    const used = new Set([...this.records.values()].map((r) => r.digest));
    for (const digest of await this.blobs.list()) {
      if (!used.has(digest)) {
        this.logger.info({ digest }, 'removing blob no function uses (left by an interrupted deploy or delete)');
        await this.blobs.remove(digest);
      }
    }
    for (const record of this.records.values()) {
      if (!(await this.blobs.has(record.digest))) {
        // Only a damaged data directory can get here; keep the entry so the operator sees it.
        this.logger.error({ function: record.name, digest: record.digest }, 'function blob is missing');
      }
    }
  }

  private async readIndex(): Promise<FunctionRecord[]> {
    let text: string;
    try {
      text = await readFile(this.indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new EngineError('INTERNAL', `the function index ${this.indexPath} is not valid JSON`, { cause: err });
    }
    const index = parsed as Partial<IndexFile>;
    if (index.version !== 1 || !Array.isArray(index.functions)) {
      throw new EngineError('INTERNAL', `the function index ${this.indexPath} has an unknown format`);
    }
    return index.functions;
  }

  list(): FunctionRecord[] {
    return [...this.records.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): FunctionRecord | undefined {
    return this.records.get(name);
  }

  reserve(name: string): () => void {
    return this.reserved.reserve(name, this.records.has(name));
  }

  async insert(record: FunctionRecord, bytes: Uint8Array): Promise<void> {
    await this.serialized(async () => {
      if (this.records.has(record.name)) {
        throw new EngineError('FUNCTION_EXISTS', `function ${record.name} is already deployed`);
      }
      await this.putBlobOf(record, bytes);
      await this.commit(record);
    });
  }

  async replace(record: FunctionRecord, bytes?: Uint8Array): Promise<FunctionRecord> {
    return this.serialized(async () => {
      const old = this.records.get(record.name);
      if (!old) throw new EngineError('FUNCTION_NOT_FOUND', `function ${record.name} is not deployed`);
      // Same order as insert then remove: new blob, index naming it, old blob; a crash in between
      // leaves the old or the new entry whole, and at worst an unreferenced blob open() removes.
      if (bytes === undefined) {
        if (!(await this.blobs.has(record.digest))) {
          throw new EngineError('INTERNAL', `no stored blob ${record.digest} for function ${record.name}`);
        }
      } else {
        await this.putBlobOf(record, bytes);
      }
      await this.commit(record);
      if (old.digest !== record.digest && ![...this.records.values()].some((r) => r.digest === old.digest)) {
        await this.blobs.remove(old.digest);
      }
      return old;
    });
  }

  async remove(name: string): Promise<FunctionRecord> {
    return this.serialized(async () => {
      const record = this.records.get(name);
      if (!record) throw new EngineError('FUNCTION_NOT_FOUND', `function ${name} is not deployed`);
      const next = new Map(this.records);
      next.delete(name);
      await this.writeIndex(next);
      this.records.delete(name);
      if (![...this.records.values()].some((r) => r.digest === record.digest)) {
        await this.blobs.remove(record.digest);
      }
      return record;
    });
  }

  readBlob(digest: string): Promise<Uint8Array> {
    return this.blobs.get(digest);
  }

  blobPath(digest: string): string {
    return this.blobs.pathOf(digest);
  }

  async close(): Promise<void> {
    await this.writeChain.catch(() => {});
    await this.lock?.release();
    this.lock = undefined;
  }

  private async putBlobOf(record: FunctionRecord, bytes: Uint8Array): Promise<void> {
    const digest = await this.blobs.put(bytes);
    if (digest !== record.digest) {
      throw new EngineError('INTERNAL', `blob digest ${digest} differs from the record's ${record.digest}`);
    }
  }

  /** Writes the index with `record` in it, then makes it the in-memory state. */
  private async commit(record: FunctionRecord): Promise<void> {
    await this.writeIndex(new Map(this.records).set(record.name, record));
    this.records.set(record.name, record);
  }

  private async writeIndex(records: Map<string, FunctionRecord>): Promise<void> {
    const index: IndexFile = { version: 1, functions: [...records.values()] };
    await writeFileAtomic(this.indexPath, `${JSON.stringify(index, null, 1)}\n`);
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    // Checked when the write's turn comes: another engine may own the index by then.
    const task = (): Promise<T> => {
      if (this.lockLost !== undefined) {
        return Promise.reject(
          new EngineError('UNAVAILABLE', `the data directory lock was lost (${this.lockLost}); restart the engine`, { retryAfterSeconds: 1 }),
        );
      }
      return work();
    };
    const run = this.writeChain.then(task, task);
    this.writeChain = run.then(
      () => {},
      () => {},
    );
    return run;
  }
}
