/** A module read straight from a `.wasm` file (`file:PATH`), for local development. */
import path from 'node:path';
import { EngineError } from '../errors.js';
import { LocalFileError, readRegularFile } from './local-file.js';
import type { FileReference } from './reference.js';
import type { FetchedModule } from './types.js';
import { checkCoreModule } from './wasm-binary.js';

/**
 * A missing path (or a directory) is IMAGE_NOT_FOUND; a FIFO, socket or device is refused before
 * it is opened (local-file.ts) as INVALID_FUNCTION_IMAGE: something is there, and it can never be
 * a module. `signal` is the pull's deadline.
 */
export async function readModuleFile(reference: FileReference, maxBytes: number, signal?: AbortSignal): Promise<FetchedModule> {
  const file = reference.path;
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(
      file,
      maxBytes,
      () => new EngineError('INVALID_FUNCTION_IMAGE', `module file ${file} is larger than the limit of ${maxBytes} bytes`),
      signal,
    );
  } catch (err) {
    if (!(err instanceof LocalFileError)) throw err;
    if (err.problem === 'special') throw new EngineError('INVALID_FUNCTION_IMAGE', `module file ${file}: ${err.message}`);
    if (err.problem === 'directory') throw new EngineError('IMAGE_NOT_FOUND', `module file ${file}: not a regular file`);
    throw new EngineError('IMAGE_NOT_FOUND', `module file ${file}: ${err.message}`);
  }
  checkCoreModule(bytes, `module file ${file}`);
  return { bytes, fileName: path.basename(file) };
}
