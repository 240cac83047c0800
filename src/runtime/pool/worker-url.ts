/**
 * Where the worker entry file is. Compiled (dist/runtime/pool/*.js) it is the sibling worker.js.
 * Run from TypeScript sources (vitest transforms .ts on the fly, but only on its own thread),
 * Node 20 cannot start a worker thread on a .ts file: it has no type stripping and the test
 * runner's transform does not reach worker threads. The sources then use the compiled worker
 * from `npm run build` (tsconfig maps src/ to dist/ one to one), which `npm test` builds first;
 * tests of the runtime itself compile a fresh private copy and pass it as `workerUrl` instead,
 * so they never run a stale build.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EngineError } from '../../errors.js';

export function defaultWorkerUrl(): URL {
  return compiledEntry('worker.js', 'sandbox worker');
}

/** Where the preparation worker's entry file is (prepare-worker.ts), found as the sandbox worker's is. */
export function defaultPrepareWorkerUrl(): URL {
  return compiledEntry('prepare-worker.js', 'preparation worker');
}

function compiledEntry(file: string, what: string): URL {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith('.ts')) return new URL(`./${file}`, here);
  const compiled = new URL(`../../../dist/runtime/pool/${file}`, here);
  if (!existsSync(fileURLToPath(compiled))) {
    throw new EngineError('INTERNAL', `the compiled ${what} ${fileURLToPath(compiled)} is missing: run \`npm run build\` first`);
  }
  return compiled;
}
