/**
 * Recognises WebAssembly binaries by their 8-byte preamble. Shared by the image side (which must
 * tell a core module from a component without the runtime) and the runtime (which refuses
 * components at analysis). Full validation is the runtime's job.
 */
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
