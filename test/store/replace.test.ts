/** FunctionStore.replace: the update in place of the OpenFaaS API, crash-safe like insert. */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { FileFunctionStore, sha256Digest, type FunctionRecord } from '../../src/store/index.js';

function record(name: string, bytes: Uint8Array, extra: Partial<FunctionRecord> = {}): FunctionRecord {
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

const A = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1]);
const B = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 2]);

describe('FileFunctionStore.replace', () => {
  let dir: string;
  let store: FileFunctionStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-replace-'));
    store = new FileFunctionStore(dir, silentLogger);
    await store.open();
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const reopen = async (): Promise<FileFunctionStore> => {
    await store.close();
    store = new FileFunctionStore(dir, silentLogger);
    await store.open();
    return store;
  };

  it('swaps the entry, returns the old one, and drops the blob no one uses', async () => {
    await store.insert(record('f', A), A);
    const old = await store.replace(record('f', B, { labels: { v: '2' }, replicas: 3 }), B);
    expect(old.digest).toBe(sha256Digest(A));
    expect(store.get('f')).toMatchObject({ digest: sha256Digest(B), labels: { v: '2' }, replicas: 3 });
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([sha256Digest(B).slice(7)]);
    expect((await reopen()).get('f')).toMatchObject({ digest: sha256Digest(B), replicas: 3 });
  });

  it('keeps a blob another function still uses', async () => {
    await store.insert(record('f', A), A);
    await store.insert(record('g', A), A);
    await store.replace(record('f', B), B);
    expect(await store.readBlob(sha256Digest(A))).toEqual(A);
  });

  it('changes settings only without bytes when the blob is stored', async () => {
    await store.insert(record('f', A), A);
    await store.replace(record('f', A, { replicas: 0 }));
    expect((await reopen()).get('f')?.replicas).toBe(0);
    await expect(store.replace(record('f', B))).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(store.get('f')?.replicas).toBe(0);
  });

  it('refuses an unknown function with FUNCTION_NOT_FOUND', async () => {
    await expect(store.replace(record('nope', A), A)).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
  });

  it('after a crash between the new blob and the index, the old entry is whole and the stray blob goes', async () => {
    await store.insert(record('f', A), A);
    // The state a crash after writing the new blob but before the index would leave.
    await writeFile(join(dir, 'blobs', 'sha256', sha256Digest(B).slice(7)), B);
    const reopened = await reopen();
    expect(reopened.get('f')?.digest).toBe(sha256Digest(A));
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([sha256Digest(A).slice(7)]);
  });
});
