/** Test modules built from WAT source by the test setup (never committed binaries). */
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { basename, join } from 'node:path';
import { REPO_ROOT } from './engine-process.js';

export const FIXTURE_OUT = join(REPO_ROOT, 'test', '.fixtures');
export const EXAMPLES_WASM = join(REPO_ROOT, 'examples', 'build', 'wasm');
export const EXAMPLES_OCI = join(REPO_ROOT, 'examples', 'build', 'oci');

/** Compiles test/fixtures/<dir>/<name>.wat with wabt's wat2wasm; returns the .wasm path. */
export function watFixture(dir: string, name: string): string {
  mkdirSync(FIXTURE_OUT, { recursive: true });
  const source = join(REPO_ROOT, 'test', 'fixtures', dir, `${name}.wat`);
  const out = join(FIXTURE_OUT, `${basename(dir)}-${name}.wasm`);
  return buildInto(out, (tmp) => execFileSync('wat2wasm', ['--enable-all', source, '-o', tmp]));
}

/**
 * Builds `out` under a private name and renames it into place: test files running in parallel
 * may build the same fixture, and one must never read another's half-written file.
 */
function buildInto(out: string, build: (tmp: string) => void): string {
  const tmp = `${out}.${process.pid}-${threadId}-${Math.random().toString(36).slice(2)}.tmp`;
  build(tmp);
  renameSync(tmp, out);
  return out;
}

/** Compiles test/fixtures/<dir>/<name>.c for WASI with clang and Debian's wasi-libc; returns the .wasm path. */
export function cFixture(dir: string, name: string): string {
  mkdirSync(FIXTURE_OUT, { recursive: true });
  const source = join(REPO_ROOT, 'test', 'fixtures', dir, `${name}.c`);
  const out = join(FIXTURE_OUT, `${basename(dir)}-${name}.wasm`);
  return buildInto(out, (tmp) => execFileSync('clang', ['--target=wasm32-wasi', '--sysroot=/usr', '-O2', '-Wl,--strip-all', '-o', tmp, source]));
}
