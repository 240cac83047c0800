/**
 * Recognises WebAssembly binaries by their 8-byte preamble, so the image side can tell a core
 * module from a component (or from something that is not WebAssembly at all) without the runtime.
 * Full validation is the runtime's job; this only decides which image rule applies.
 */
import { EngineError } from '../errors.js';

const MAGIC = [0x00, 0x61, 0x73, 0x6d]; // "\0asm"

export function hasWasmMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && MAGIC.every((b, i) => bytes[i] === b);
}

export type WasmBinaryKind = 'module' | 'component' | 'unknown-version' | 'not-wasm';

export function wasmBinaryKind(bytes: Uint8Array): WasmBinaryKind {
  if (!hasWasmMagic(bytes)) return 'not-wasm';
  if (bytes.length < 8) return 'unknown-version';
  // Preamble after the magic: a u16 version and a u16 layer. Core modules are version 1 layer 0;
  // the component model keeps layer 1 (its version is still a pre-release number).
  const version = (bytes[4] ?? 0) | ((bytes[5] ?? 0) << 8);
  const layer = (bytes[6] ?? 0) | ((bytes[7] ?? 0) << 8);
  if (layer === 1) return 'component';
  if (layer === 0 && version === 1) return 'module';
  return 'unknown-version';
}

export const COMPONENTS_UNSUPPORTED = 'WebAssembly components are not supported yet (only core modules are)';

/** Throws INVALID_FUNCTION_IMAGE unless `bytes` is a core WebAssembly module; `what` names it. */
export function checkCoreModule(bytes: Uint8Array, what: string): void {
  switch (wasmBinaryKind(bytes)) {
    case 'module':
      return;
    case 'component':
      throw new EngineError('INVALID_FUNCTION_IMAGE', `${what} is a component: ${COMPONENTS_UNSUPPORTED}`);
    case 'unknown-version':
      throw new EngineError('INVALID_FUNCTION_IMAGE', `${what} is a WebAssembly binary of an unsupported version`);
    case 'not-wasm':
      throw new EngineError('INVALID_FUNCTION_IMAGE', `${what} is not a WebAssembly module (no \\0asm magic)`);
  }
}
