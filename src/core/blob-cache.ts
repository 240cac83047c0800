/**
 * The registry side's module cache, served by the function store: modules are the store's blobs
 * (kept while some function uses them), and layer notes live beside them in the data directory.
 */
import type { Logger } from '../logger.js';
import { layerNoteModules, type ModuleCache } from '../registry/index.js';
import type { FunctionStore } from '../store/index.js';
import type { FileLayerNotes } from '../store/layer-notes.js';

const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function storeModuleCache(store: FunctionStore, notes: FileLayerNotes): ModuleCache {
  return {
    async module(digest) {
      if (!SHA256.test(digest)) return undefined;
      try {
        // readBlob verifies the bytes against the digest: a damaged blob is a miss, not a module.
        return await store.readBlob(digest);
      } catch {
        return undefined;
      }
    },
    layerNote: (digest) => notes.get(digest),
    rememberLayer: (digest, note) => notes.put(digest, note),
    forgetLayer: (digest) => notes.remove(digest),
  };
}

/** Drops notes naming a module no deployed function uses (run once the store is open). */
export async function pruneLayerNotes(store: FunctionStore, notes: FileLayerNotes, logger: Logger): Promise<void> {
  const live = new Set(store.list().map((record) => record.digest));
  const removed = await notes.prune((note) => {
    const modules = layerNoteModules(note);
    return modules.length > 0 && modules.every((digest) => live.has(digest));
  });
  if (removed > 0) logger.debug({ removed }, 'removed layer notes of modules no function uses');
}
