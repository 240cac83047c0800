/** Which image rule applies to a binary: only core modules are functions. */
import { EngineError } from '../errors.js';
import { COMPONENTS_UNSUPPORTED, wasmBinaryKind } from '../wasm-preamble.js';

export { COMPONENTS_UNSUPPORTED, hasWasmMagic } from '../wasm-preamble.js';

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
