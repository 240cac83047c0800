import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { FileFunctionStore, sha256Digest, type FunctionRecord } from '../../src/store/index.js';

function record(name: string, bytes: Uint8Array): FunctionRecord {
  return {
    name,
    image: `file:${name}.wasm`,
    digest: sha256Digest(bytes),
    size: bytes.byteLength,
    deployedAt: new Date(0).toISOString(),
    analysis: { abi: 'numeric', entrypoint: name, exports: [name], wasiCap: false },
    limits: {},
    env: {},
  };
}

const A = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1]);
const B = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 2]);

describe('FileFunctionStore', () => {
  let dir: string;
  let store: FileFunctionStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-store-'));
    store = new FileFunctionStore(dir, silentLogger);
    await store.open();
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function reopen(): Promise<FileFunctionStore> {
    await store.close();
    store = new FileFunctionStore(dir, silentLogger);
    await store.open();
    return store;
  }

  it('keeps entries and blobs across a reopen', async () => {
    await store.insert(record('a', A), A);
    await store.insert(record('b', B), B);
    const reopened = await reopen();
    expect(reopened.list().map((r) => r.name)).toEqual(['a', 'b']);
    expect(await reopened.readBlob(sha256Digest(A))).toEqual(A);
  });

  it('stores a blob shared by two functions once and removes it with the last user', async () => {
    await store.insert(record('a', A), A);
    await store.insert(record('a2', A), A);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toHaveLength(1);
    await store.remove('a');
    expect(await store.readBlob(sha256Digest(A))).toEqual(A);
    await store.remove('a2');
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toHaveLength(0);
  });

  it('refuses a second reservation of a name, and a name already deployed', async () => {
    const release = store.reserve('a');
    expect(() => store.reserve('a')).toThrow(expect.objectContaining({ code: 'FUNCTION_EXISTS' }));
    release();
    await store.insert(record('a', A), A);
    expect(() => store.reserve('a')).toThrow(expect.objectContaining({ code: 'FUNCTION_EXISTS' }));
  });

  it('answers FUNCTION_NOT_FOUND when removing an unknown name', async () => {
    await expect(store.remove('nope')).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
  });

  it('drops what an interrupted deploy left behind: an unreferenced blob and temp files', async () => {
    await store.insert(record('a', A), A);
    // A crash after the blob was written but before the index named it, and one mid-write.
    const orphan = sha256Digest(B).slice('sha256:'.length);
    await writeFile(join(dir, 'blobs', 'sha256', orphan), B);
    await writeFile(join(dir, 'blobs', 'sha256', '.tmp-half'), B.slice(0, 3));
    await writeFile(join(dir, '.tmp-functions.json-x'), '{"version":1,"functions":[');
    const reopened = await reopen();
    expect(reopened.list().map((r) => r.name)).toEqual(['a']);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([sha256Digest(A).slice(7)]);
  });

  it('serialises concurrent inserts so none is lost', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `f${i}`);
    await Promise.all(names.map((n) => store.insert(record(n, A), A)));
    const reopened = await reopen();
    expect(reopened.list()).toHaveLength(20);
    const index = JSON.parse(await readFile(join(dir, 'functions.json'), 'utf8')) as { functions: unknown[] };
    expect(index.functions).toHaveLength(20);
  });

  it('refuses to open a data directory another live engine holds', async () => {
    const second = new FileFunctionStore(dir, silentLogger);
    await writeFile(join(dir, 'engine.lock'), String(process.ppid));
    await expect(second.open()).rejects.toThrow(/in use by another engine/);
  });

  it('takes over the lock of an engine that died', async () => {
    await store.close();
    await writeFile(join(dir, 'engine.lock'), '999999999');
    store = new FileFunctionStore(dir, silentLogger);
    await expect(store.open()).resolves.toBeUndefined();
  });

  it('notices a blob damaged on disk instead of running it', async () => {
    await store.insert(record('a', A), A);
    await writeFile(store.blobPath(sha256Digest(A)), B);
    await expect(store.readBlob(sha256Digest(A))).rejects.toThrow(/does not match its digest/);
  });
});
