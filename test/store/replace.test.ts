/** FunctionStore.replace: the update in place of the OpenFaaS API, crash-safe like insert. */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/store/index.js';
import { A, B, record, useTempStore } from './support.js';

describe('FileFunctionStore.replace', () => {
  const temp = useTempStore('we-replace-');

  it('swaps the entry, returns the old one, and drops the blob no one uses', async () => {
    await temp.store.insert(record('f', A), A);
    const old = await temp.store.replace(record('f', B, { labels: { v: '2' }, replicas: 3 }), B);
    expect(old.digest).toBe(sha256Digest(A));
    expect(temp.store.get('f')).toMatchObject({ digest: sha256Digest(B), labels: { v: '2' }, replicas: 3 });
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toEqual([sha256Digest(B).slice(7)]);
    expect((await temp.reopen()).get('f')).toMatchObject({ digest: sha256Digest(B), replicas: 3 });
  });

  it('keeps a blob another function still uses', async () => {
    await temp.store.insert(record('f', A), A);
    await temp.store.insert(record('g', A), A);
    await temp.store.replace(record('f', B), B);
    expect(await temp.store.readBlob(sha256Digest(A))).toEqual(A);
  });

  it('changes settings only without bytes when the blob is stored', async () => {
    await temp.store.insert(record('f', A), A);
    await temp.store.replace(record('f', A, { replicas: 0 }));
    expect((await temp.reopen()).get('f')?.replicas).toBe(0);
    await expect(temp.store.replace(record('f', B))).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(temp.store.get('f')?.replicas).toBe(0);
  });

  it('refuses an unknown function with FUNCTION_NOT_FOUND', async () => {
    await expect(temp.store.replace(record('nope', A), A)).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toEqual([]);
  });

  it('after a crash between the new blob and the index, the old entry is whole and the stray blob goes', async () => {
    await temp.store.insert(record('f', A), A);
    // The state a crash after writing the new blob but before the index would leave.
    await writeFile(join(temp.dir, 'blobs', 'sha256', sha256Digest(B).slice(7)), B);
    const reopened = await temp.reopen();
    expect(reopened.get('f')?.digest).toBe(sha256Digest(A));
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toEqual([sha256Digest(A).slice(7)]);
  });
});
