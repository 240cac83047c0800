import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { FileFunctionStore, sha256Digest } from '../../src/store/index.js';
import { A, B, record, useTempStore } from './support.js';

describe('FileFunctionStore', () => {
  const temp = useTempStore('we-store-');

  it('keeps entries and blobs across a reopen', async () => {
    await temp.store.insert(record('a', A), A);
    await temp.store.insert(record('b', B), B);
    const reopened = await temp.reopen();
    expect(reopened.list().map((r) => r.name)).toEqual(['a', 'b']);
    expect(await reopened.readBlob(sha256Digest(A))).toEqual(A);
  });

  it('stores a blob shared by two functions once and removes it with the last user', async () => {
    await temp.store.insert(record('a', A), A);
    await temp.store.insert(record('a2', A), A);
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toHaveLength(1);
    await temp.store.remove('a');
    expect(await temp.store.readBlob(sha256Digest(A))).toEqual(A);
    await temp.store.remove('a2');
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toHaveLength(0);
  });

  it('refuses a second reservation of a name, and a name already deployed', async () => {
    const release = temp.store.reserve('a');
    expect(() => temp.store.reserve('a')).toThrow(expect.objectContaining({ code: 'FUNCTION_EXISTS' }));
    release();
    await temp.store.insert(record('a', A), A);
    expect(() => temp.store.reserve('a')).toThrow(expect.objectContaining({ code: 'FUNCTION_EXISTS' }));
  });

  it('answers FUNCTION_NOT_FOUND when removing an unknown name', async () => {
    await expect(temp.store.remove('nope')).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
  });

  it('drops what an interrupted deploy left behind: an unreferenced blob and temp files', async () => {
    await temp.store.insert(record('a', A), A);
    // A crash after the blob was written but before the index named it, and one mid-write.
    const orphan = sha256Digest(B).slice('sha256:'.length);
    await writeFile(join(temp.dir, 'blobs', 'sha256', orphan), B);
    await writeFile(join(temp.dir, 'blobs', 'sha256', '.tmp-half'), B.slice(0, 3));
    await writeFile(join(temp.dir, '.tmp-functions.json-x'), '{"version":1,"functions":[');
    await mkdir(join(temp.dir, 'layers', 'sha256'), { recursive: true });
    await writeFile(join(temp.dir, 'layers', 'sha256', `.tmp-${'1'.repeat(64)}.json-x`), '{');
    const reopened = await temp.reopen();
    expect(reopened.list().map((r) => r.name)).toEqual(['a']);
    expect(await readdir(join(temp.dir, 'blobs', 'sha256'))).toEqual([sha256Digest(A).slice(7)]);
    expect((await readdir(temp.dir)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
    expect(await readdir(join(temp.dir, 'layers', 'sha256'))).toEqual([]);
  });

  it('serialises concurrent inserts so none is lost', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `f${i}`);
    await Promise.all(names.map((n) => temp.store.insert(record(n, A), A)));
    const reopened = await temp.reopen();
    expect(reopened.list()).toHaveLength(20);
    const index = JSON.parse(await readFile(join(temp.dir, 'functions.json'), 'utf8')) as { functions: unknown[] };
    expect(index.functions).toHaveLength(20);
  });

  it('refuses to open a data directory another live engine holds', async () => {
    const second = new FileFunctionStore(temp.dir, silentLogger);
    await expect(second.open()).rejects.toThrow(new RegExp(`in use by another engine \\(pid ${process.pid} on `));
  });

  it("refuses a live older engine's lock file (a bare pid)", async () => {
    await temp.store.close();
    await writeFile(join(temp.dir, 'engine.lock'), String(process.ppid));
    const second = new FileFunctionStore(temp.dir, silentLogger);
    await expect(second.open()).rejects.toThrow(/in use by another engine/);
    await rm(join(temp.dir, 'engine.lock'));
    temp.store = new FileFunctionStore(temp.dir, silentLogger);
    await temp.store.open();
  });

  it('takes over the lock of an engine that died', async () => {
    await temp.store.close();
    await writeFile(join(temp.dir, 'engine.lock'), '999999999');
    temp.store = new FileFunctionStore(temp.dir, silentLogger);
    await expect(temp.store.open()).resolves.toBeUndefined();
  });

  it('refuses every write once its lock was taken by another engine (it stalled past the bound)', async () => {
    await temp.store.insert(record('a', A), A);
    await rename(join(temp.dir, 'engine.lock'), join(temp.dir, 'taken'));
    await mkdir(join(temp.dir, 'engine.lock'));
    await writeFile(join(temp.dir, 'engine.lock', 'owner'), JSON.stringify({ token: 'e'.repeat(32), pid: 7, host: 'elsewhere', since: 'now' }));
    // The heartbeat (every 2 s) finds out; until it does, writes still go through.
    let refusal: unknown;
    for (let i = 0; i < 100 && refusal === undefined; i++) {
      try {
        await temp.store.remove('a');
        await temp.store.insert(record('a', A), A);
      } catch (err) {
        refusal = err;
      }
      if (refusal === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(refusal).toMatchObject({ code: 'UNAVAILABLE', message: /data directory lock was lost \(another engine holds it now \(pid 7 on elsewhere/ });
    // It leaves the other engine's lock alone when it closes.
    await temp.store.close();
    expect(JSON.parse(await readFile(join(temp.dir, 'engine.lock', 'owner'), 'utf8'))).toMatchObject({ pid: 7 });
    await rm(join(temp.dir, 'engine.lock'), { recursive: true });
    temp.store = new FileFunctionStore(temp.dir, silentLogger);
    await temp.store.open();
  });

  it('notices a blob damaged on disk instead of running it', async () => {
    await temp.store.insert(record('a', A), A);
    await writeFile(temp.store.blobPath(sha256Digest(A)), B);
    await expect(temp.store.readBlob(sha256Digest(A))).rejects.toThrow(/does not match its digest/);
  });
});
