/**
 * Small JSON notes keyed by an image layer's sha256 digest, under DATA/layers/sha256/<hex>.json:
 * what the registry side learned about a layer (which modules it holds), so a layer whose modules
 * are already stored is not downloaded again. Each note is written crash-safely on its own; the
 * store does not interpret them. A lost or damaged note only costs a download.
 */
import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-file.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const FILE = /^([0-9a-f]{64})\.json$/;

/** Where the notes live in a data directory. */
export function layerNotesDir(dataDir: string): string {
  return join(dataDir, 'layers', 'sha256');
}

export class FileLayerNotes {
  private readonly dir: string;
  private made = false;

  constructor(dataDir: string) {
    this.dir = layerNotesDir(dataDir);
  }

  private path(digest: string): string | undefined {
    const match = DIGEST.exec(digest);
    return match ? join(this.dir, `${match[1]}.json`) : undefined;
  }

  async get(digest: string): Promise<unknown> {
    const file = this.path(digest);
    if (!file) return undefined;
    try {
      return JSON.parse(await readFile(file, 'utf8')) as unknown;
    } catch {
      return undefined; // absent or damaged: either way, no note
    }
  }

  async put(digest: string, note: unknown): Promise<void> {
    const file = this.path(digest);
    if (!file) return;
    if (!this.made) {
      await mkdir(this.dir, { recursive: true });
      this.made = true;
    }
    await writeFileAtomic(file, JSON.stringify(note));
  }

  async remove(digest: string): Promise<void> {
    const file = this.path(digest);
    if (file) await unlink(file).catch(() => {});
  }

  /** Removes leftovers of interrupted writes and every note `keep` refuses; returns how many were removed. */
  async prune(keep: (note: unknown) => boolean): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0; // no notes yet
    }
    let removed = 0;
    for (const name of names) {
      const match = FILE.exec(name);
      if (name.startsWith(TEMP_PREFIX) || !match || !keep(await this.get(`sha256:${match[1]}`))) {
        await unlink(join(this.dir, name)).catch(() => {});
        removed += 1;
      }
    }
    return removed;
  }
}
