/**
 * Knowing a layer's module before downloading it. A layer whose blob is the module itself has the
 * module's digest, so the store answers directly. A tar layer is described by a note written after
 * its first download: the layer's effect on the file tree, with each `*.wasm` file given by the
 * digest of its bytes. When every module a note names is stored, the layer is rebuilt from the
 * store and not downloaded. Any trouble with the cache is a miss, never a failed pull.
 */
import type { Logger } from '../logger.js';
import { sha256Digest } from './digest.js';
import type { LayerContent, TreeChanges } from './layers.js';
import type { Descriptor } from './manifest.js';
import type { ModuleCache } from './types.js';

interface TreeNote {
  v: 1;
  kind: 'tree';
  wasmFiles: Array<[string, string]>;
  otherEntries: Array<[string, 'dir' | 'other']>;
  whiteouts: string[];
  opaqueDirs: string[];
}

/** Notes are kept for small layers only: a wasm image's layer holds a handful of entries. */
const MAX_NOTE_ENTRIES = 10_000;
const SHA256 = /^sha256:[0-9a-f]{64}$/;

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function isPairs<T extends string>(value: unknown, second: (v: unknown) => v is T): value is Array<[string, T]> {
  return Array.isArray(value) && value.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && second(p[1]));
}

function readNote(value: unknown): TreeNote | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const note = value as Record<string, unknown>;
  if (note.v !== 1 || note.kind !== 'tree') return undefined;
  const isDigest = (v: unknown): v is string => typeof v === 'string' && SHA256.test(v);
  const isKind = (v: unknown): v is 'dir' | 'other' => v === 'dir' || v === 'other';
  if (!isPairs(note.wasmFiles, isDigest) || !isPairs(note.otherEntries, isKind)) return undefined;
  if (!isStringArray(note.whiteouts) || !isStringArray(note.opaqueDirs)) return undefined;
  return note as unknown as TreeNote;
}

/** The module digests a note refers to (for pruning notes whose modules are gone). */
export function layerNoteModules(value: unknown): string[] {
  return readNote(value)?.wasmFiles.map(([, digest]) => digest) ?? [];
}

/** The layer's content from the cache, or undefined when it must be downloaded. */
export async function cachedLayer(cache: ModuleCache, layer: Descriptor, logger: Logger): Promise<LayerContent | undefined> {
  if (!SHA256.test(layer.digest)) return undefined;
  try {
    const module = await cache.module(layer.digest);
    if (module && module.byteLength === layer.size) return { kind: 'module', bytes: Buffer.from(module.buffer, module.byteOffset, module.byteLength) };
    const note = readNote(await cache.layerNote(layer.digest));
    if (!note) return undefined;
    const changes: TreeChanges = {
      wasmFiles: new Map(),
      otherEntries: new Map(note.otherEntries),
      whiteouts: new Set(note.whiteouts),
      opaqueDirs: new Set(note.opaqueDirs),
    };
    for (const [path, digest] of note.wasmFiles) {
      const bytes = await cache.module(digest);
      if (!bytes) {
        // The module was deleted since: the note is of no more use.
        await cache.forgetLayer(layer.digest);
        return undefined;
      }
      changes.wasmFiles.set(path, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
    return { kind: 'tree', changes };
  } catch (err) {
    logger.warn({ layer: layer.digest, err }, 'module cache lookup failed; downloading the layer');
    return undefined;
  }
}

/** Writes a note for a tar layer that held modules, so the next pull can skip it. */
export async function rememberLayer(cache: ModuleCache, layer: Descriptor, content: LayerContent, logger: Logger): Promise<void> {
  if (content.kind !== 'tree' || content.changes.wasmFiles.size === 0 || !SHA256.test(layer.digest)) return;
  const { wasmFiles, otherEntries, whiteouts, opaqueDirs } = content.changes;
  if (wasmFiles.size + otherEntries.size + whiteouts.size + opaqueDirs.size > MAX_NOTE_ENTRIES) return;
  const note: TreeNote = {
    v: 1,
    kind: 'tree',
    wasmFiles: [...wasmFiles].map(([path, bytes]) => [path, sha256Digest(bytes)]),
    otherEntries: [...otherEntries],
    whiteouts: [...whiteouts],
    opaqueDirs: [...opaqueDirs],
  };
  try {
    await cache.rememberLayer(layer.digest, note);
  } catch (err) {
    logger.warn({ layer: layer.digest, err }, 'could not remember what a layer holds');
  }
}
