/** Layer notes on disk: written atomically, read back, damaged ones ignored, pruned at start. */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileLayerNotes } from '../../src/store/layer-notes.js';

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'we-notes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileLayerNotes', () => {
  it('stores notes by layer digest and ignores digests it cannot name a file after', async () => {
    const notes = new FileLayerNotes(dir);
    expect(await notes.get(digest('a'))).toBeUndefined();
    await notes.put(digest('a'), { v: 1, modules: ['x'] });
    expect(await notes.get(digest('a'))).toEqual({ v: 1, modules: ['x'] });
    await notes.put('sha256:../../etc/passwd', { evil: true });
    await notes.put(`sha512:${'b'.repeat(128)}`, { other: true });
    expect(await readdir(join(dir, 'layers', 'sha256'))).toEqual([`${'a'.repeat(64)}.json`]);
    await notes.remove(digest('a'));
    expect(await notes.get(digest('a'))).toBeUndefined();
  });

  it('a damaged note reads as none', async () => {
    const notes = new FileLayerNotes(dir);
    await notes.put(digest('c'), {});
    await writeFile(join(dir, 'layers', 'sha256', `${'c'.repeat(64)}.json`), '{"half');
    expect(await notes.get(digest('c'))).toBeUndefined();
  });

  it('prune keeps what the predicate keeps and removes leftovers of interrupted writes', async () => {
    const notes = new FileLayerNotes(dir);
    expect(await notes.prune(() => true)).toBe(0); // nothing written yet
    await notes.put(digest('d'), { keep: true });
    await notes.put(digest('e'), { keep: false });
    await writeFile(join(dir, 'layers', 'sha256', '.tmp-xyz'), 'partial');
    expect(await notes.prune((note) => (note as { keep: boolean }).keep)).toBe(2);
    expect(await readdir(join(dir, 'layers', 'sha256'))).toEqual([`${'d'.repeat(64)}.json`]);
  });
});
