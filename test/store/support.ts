/** What the FileFunctionStore tests share: a record for given bytes, two tiny blobs, a store in a temp dir. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { FileFunctionStore, sha256Digest, type FunctionRecord } from '../../src/store/index.js';

/** A record of function `name` whose blob is `bytes`, with `extra` laid over it. */
export function record(name: string, bytes: Uint8Array, extra: Partial<FunctionRecord> = {}): FunctionRecord {
  return {
    name,
    image: `file:${name}.wasm`,
    digest: sha256Digest(bytes),
    size: bytes.byteLength,
    deployedAt: new Date(0).toISOString(),
    analysis: { abi: 'numeric', entrypoint: name, exports: [name], wasiCap: false },
    limits: {},
    env: {},
    ...extra,
  };
}

/** Two blobs with distinct digests. */
export const A = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1]);
export const B = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 2]);

export interface TempStore {
  /** The data directory, fresh for each test. */
  dir: string;
  /** The open store; a test may replace it, and the one here last is closed after the test. */
  store: FileFunctionStore;
  /** Closes the store and opens a new one on the same directory. */
  reopen(): Promise<FileFunctionStore>;
}

/** Before each test, an open store in a new temp dir named `prefix`…; after it, closed and removed. */
export function useTempStore(prefix: string): TempStore {
  const temp: TempStore = {
    dir: '',
    store: undefined as unknown as FileFunctionStore,
    async reopen() {
      await temp.store.close();
      temp.store = new FileFunctionStore(temp.dir, silentLogger);
      await temp.store.open();
      return temp.store;
    },
  };
  beforeEach(async () => {
    temp.dir = await mkdtemp(join(tmpdir(), prefix));
    temp.store = new FileFunctionStore(temp.dir, silentLogger);
    await temp.store.open();
  });
  afterEach(async () => {
    await temp.store.close();
    await rm(temp.dir, { recursive: true, force: true });
  });
  return temp;
}
