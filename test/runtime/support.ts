/** Helpers for the runtime tests: WAT fixtures built from source, compiled modules, requests. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'vitest';
import { EngineError, type ErrorCode } from '../../src/errors.js';
import { analyzeModule, normalizeArgs, wasm, withMemoryMaximum } from '../../src/runtime/index.js';
import type { InvocationRequest, ModuleAnalysis, WasmModule } from '../../src/runtime/index.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WAT_DIR = join(REPO_ROOT, 'test', 'fixtures', 'wat');
const OUT_DIR = join(REPO_ROOT, 'test', '.fixtures');
const WAT2WASM = '/usr/bin/wat2wasm';

const built = new Map<string, Uint8Array>();

/** Compiles test/fixtures/wat/NAME.wat (wabt) and returns the module's bytes. */
export function wat(name: string): Uint8Array {
  let bytes = built.get(name);
  if (!bytes) {
    mkdirSync(OUT_DIR, { recursive: true });
    const out = join(OUT_DIR, `runtime-${name}.wasm`);
    // Written under a private name then renamed: test files build fixtures in parallel processes.
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(WAT2WASM, ['--enable-all', join(WAT_DIR, `${name}.wat`), '-o', tmp]);
    renameSync(tmp, out);
    bytes = new Uint8Array(readFileSync(out));
    built.set(name, bytes);
  }
  return bytes;
}

/** Compiles WAT text given inline (wabt). */
export function watText(text: string): Uint8Array {
  mkdirSync(OUT_DIR, { recursive: true });
  const dir = mkdtempSync(join(OUT_DIR, 'runtime-text-'));
  try {
    writeFileSync(join(dir, 'm.wat'), text);
    execFileSync(WAT2WASM, ['--enable-all', join(dir, 'm.wat'), '-o', join(dir, 'm.wasm')]);
    return new Uint8Array(readFileSync(join(dir, 'm.wasm')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Compiles bytes the way the pool does: memory capped at the limit. */
export function compile(bytes: Uint8Array, memoryLimitMb = 128): WasmModule {
  return new wasm.Module(withMemoryMaximum(bytes, memoryLimitMb * 16));
}

export const LIMITS = { timeoutMs: 5_000, memoryLimitMb: 128, maxOutputBytes: 1024 * 1024 };

export function request(
  analysis: ModuleAnalysis,
  args: unknown = undefined,
  extra: Partial<Omit<InvocationRequest, 'limits'>> & { limits?: Partial<InvocationRequest['limits']> } = {},
): InvocationRequest {
  const { limits, ...rest } = extra;
  return { digest: 'sha256:test', analysis, args: normalizeArgs(args), ...rest, limits: { ...LIMITS, ...limits } };
}

/** Analysis of a fixture, deployed under `functionName` (default: the fixture's name). */
export function analyzed(name: string, opts: { functionName?: string; wasiCap?: boolean; entrypoint?: string } = {}): ModuleAnalysis {
  return analyzeModule(wat(name), { functionName: opts.functionName ?? name, ...opts });
}

/** Runs `fn` and returns the EngineError it throws, checking its code (and message). */
export function engineError(fn: () => unknown, code: ErrorCode, message?: RegExp): EngineError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    const e = err as EngineError;
    expect(e.code, e.message).toBe(code);
    if (message) expect(e.message).toMatch(message);
    return e;
  }
  throw new Error(`expected an EngineError ${code}, but nothing was thrown`);
}

export async function engineRejection(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<EngineError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a rejection with ${code}`).toBeInstanceOf(EngineError);
  const e = err as EngineError;
  expect(e.code, e.message).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

/**
 * Compiles the sandbox worker (and what it imports) from the current sources into a private
 * directory and returns its URL: worker threads cannot run the .ts sources vitest runs, and a
 * private fresh build means these tests never run a stale dist/. `--noCheck` only transpiles
 * (type errors elsewhere in the tree must not break this); `tsc --noEmit` checks types separately.
 */
export function buildWorker(): { url: URL; dispose: () => void } {
  mkdirSync(OUT_DIR, { recursive: true });
  const dir = mkdtempSync(join(OUT_DIR, 'runtime-build-'));
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(
    process.execPath,
    [
      tsc,
      join(REPO_ROOT, 'src', 'runtime', 'pool', 'worker.ts'),
      '--outDir', dir,
      '--rootDir', join(REPO_ROOT, 'src'),
      '--module', 'nodenext',
      '--moduleResolution', 'nodenext',
      '--target', 'es2022',
      '--types', 'node',
      '--skipLibCheck',
      '--noCheck',
    ],
    { cwd: REPO_ROOT, stdio: 'pipe' },
  );
  return {
    url: pathToFileURL(join(dir, 'runtime', 'pool', 'worker.js')),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds or `ms` pass. */
export async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(10);
  }
}
