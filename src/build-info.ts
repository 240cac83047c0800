/**
 * The release and commit this engine was built from, for /system/info and the OpenAPI document:
 * the version in package.json, and the commit scripts/build-info.mjs wrote at build time into
 * dist/build-info.json (with `-dirty` when the checkout had uncommitted changes to tracked files,
 * as `git describe --dirty` marks it). "unknown" where either cannot be read.
 */
import { readFileSync } from 'node:fs';

export interface BuildVersion {
  release: string;
  sha: string;
}

function readJson(url: URL): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(url, 'utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function buildVersion(): BuildVersion {
  const pkg = readJson(new URL('../package.json', import.meta.url));
  const info = readJson(new URL('./build-info.json', import.meta.url));
  const release = typeof pkg?.version === 'string' ? pkg.version : 'unknown';
  const commit = typeof info?.commit === 'string' && info.commit !== '' ? info.commit : 'unknown';
  return { release, sha: commit !== 'unknown' && info?.dirty === true ? `${commit}-dirty` : commit };
}
