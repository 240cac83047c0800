/**
 * Stacks tar layers the way a container runtime would (OCI image spec "Applying Changesets"), so
 * "exactly one .wasm file in the image" means in the final tree: a file a later layer deleted,
 * replaced or hid does not count. Only `*.wasm` regular files are tracked.
 */
import { posix } from 'node:path';
import type { TreeChanges } from './layers.js';

/** `*.wasm` regular files in the tree so far, by absolute path. */
export type WasmTree = Map<string, Buffer>;

function ancestors(path: string): string[] {
  const result: string[] = [];
  for (let dir = posix.dirname(path); ; dir = posix.dirname(dir)) {
    result.push(dir);
    if (dir === '/') return result;
  }
}

function hiddenBy(path: string, upper: TreeChanges): boolean {
  if (upper.whiteouts.has(path) || upper.otherEntries.has(path)) return true;
  for (const dir of ancestors(path)) {
    if (upper.opaqueDirs.has(dir)) return true;
    if (dir === '/') continue;
    // A deleted directory, or a directory replaced by a file or link, takes its contents with it.
    if (upper.whiteouts.has(dir) || upper.otherEntries.get(dir) === 'other' || upper.wasmFiles.has(dir)) return true;
  }
  return false;
}

/** The tree after applying `upper` on top of `lower`; whiteouts only affect lower layers. */
export function applyLayer(lower: WasmTree, upper: TreeChanges): WasmTree {
  const result: WasmTree = new Map();
  for (const [path, bytes] of lower) if (!hiddenBy(path, upper)) result.set(path, bytes);
  for (const [path, bytes] of upper.wasmFiles) result.set(path, bytes);
  return result;
}
