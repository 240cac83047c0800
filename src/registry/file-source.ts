/** A module read straight from a `.wasm` file (`file:PATH`), for local development. */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { EngineError } from '../errors.js';
import type { FileReference } from './reference.js';
import type { FetchedModule } from './types.js';
import { checkCoreModule } from './wasm-binary.js';

export async function readModuleFile(reference: FileReference, maxBytes: number): Promise<FetchedModule> {
  const file = reference.path;
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const reason = code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : (err as Error).message;
    throw new EngineError('IMAGE_NOT_FOUND', `module file ${file}: ${reason}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new EngineError('IMAGE_NOT_FOUND', `module file ${file}: not a regular file`);
    if (info.size > maxBytes) {
      throw new EngineError('INVALID_FUNCTION_IMAGE', `module file ${file} is larger than the limit of ${maxBytes} bytes`);
    }
    // Read through the same handle that was checked, so the size bound holds for what is read.
    const bytes = await handle.readFile();
    if (bytes.length > maxBytes) {
      throw new EngineError('INVALID_FUNCTION_IMAGE', `module file ${file} is larger than the limit of ${maxBytes} bytes`);
    }
    checkCoreModule(bytes, `module file ${file}`);
    return { bytes, fileName: path.basename(file) };
  } finally {
    await handle.close();
  }
}
