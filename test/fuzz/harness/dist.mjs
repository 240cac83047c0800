/**
 * The engine's compiled modules the fuzzers use. They run the build (`npm test` and `npm run fuzz`
 * build first), so that the long run needs no TypeScript loader and the sandbox workers, which
 * only run compiled code, are the same code as the rest.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const DIST = new URL('../../../dist/', import.meta.url);
if (!existsSync(fileURLToPath(new URL('runtime/index.js', DIST)))) {
  throw new Error(`the fuzzers run the built engine: ${fileURLToPath(DIST)} is missing, run \`npm run build\` first`);
}

export {
  InstanceRunner,
  PreemptClock,
  analyzeModule,
  injectPreemption,
  normalizeArgs,
  prepareForReuse,
  toSandboxCall,
  wasm,
  withMemoryMaximum,
  parseModule,
} from '../../../dist/runtime/index.js';
export { sections } from '../../../dist/runtime/wasm-binary.js';
export { ByteReader, encodeU32 } from '../../../dist/runtime/byte-reader.js';
export { EngineError } from '../../../dist/errors.js';
export { ERROR_STATUS } from '../../../dist/api/error-status.js';
