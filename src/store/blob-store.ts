/** Wasm blobs stored once each, by sha256 digest, under DATA/blobs/sha256/<hex>. */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import { removeTempFiles, syncDir, writeFileAtomic } from './atomic-file.js';
import type { BlobStore } from './types.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Bytes hashed per turn of the event loop: a few milliseconds each. */
const HASH_SLICE = 4 * 1024 * 1024;

/**
 * The same digest, hashed a slice at a time with the event loop let run in between: blobs are
 * written and read on the thread that answers requests, and hashing a module of hundreds of MB in
 * one go would keep it from answering for a few hundred milliseconds. (Web Crypto's asynchronous
 * digest copies its input on the calling thread first, slower than hashing it.)
 */
export async function sha256DigestSliced(bytes: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < bytes.byteLength; at += HASH_SLICE) {
    if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    hash.update(bytes.subarray(at, at + HASH_SLICE));
  }
  return `sha256:${hash.digest('hex')}`;
}

export class FileBlobStore implements BlobStore {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'blobs', 'sha256');
  }

  /** Returns the temporary files it removed (leftovers of writes cut short by a crash). */
  async init(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true });
    return removeTempFiles(this.dir);
  }

  pathOf(digest: string): string {
    const match = DIGEST.exec(digest);
    if (!match) throw new EngineError('INTERNAL', `not a sha256 digest: ${digest}`);
    return join(this.dir, match[1]!);
  }

  async put(bytes: Uint8Array): Promise<string> {
    const digest = await sha256DigestSliced(bytes);
    if (!(await this.has(digest))) await writeFileAtomic(this.pathOf(digest), bytes);
    return digest;
  }

  async get(digest: string): Promise<Uint8Array> {
    const read = await readFile(this.pathOf(digest));
    // A view, not a copy (new Uint8Array(buffer) copies): a module may be hundreds of MB.
    const bytes = new Uint8Array(read.buffer, read.byteOffset, read.byteLength);
    // A blob damaged on disk must not run as if it were the deployed module.
    if ((await sha256DigestSliced(bytes)) !== digest) {
      throw new EngineError('INTERNAL', `stored blob ${digest} does not match its digest`);
    }
    return bytes;
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(digest))).isFile();
    } catch {
      return false;
    }
  }

  async remove(digest: string): Promise<void> {
    try {
      await unlink(this.pathOf(digest));
      await syncDir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  async list(): Promise<string[]> {
    const names = await readdir(this.dir);
    return names.filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }
}
