/**
 * Node's global `WebAssembly` object, typed for what the runtime uses. The project compiles with
 * lib ES2022 and @types/node, neither of which declares `WebAssembly`; declaring our own narrow
 * view here (instead of a global ambient declaration) cannot clash with lib.dom should anyone add it.
 */

declare const wasmModuleBrand: unique symbol;

/** A compiled module. Opaque: only the WebAssembly API makes one. Structured clone shares its code. */
export interface WasmModule {
  readonly [wasmModuleBrand]: true;
}

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  /** Grows by `delta` pages; returns the old size in pages; throws RangeError past the maximum. */
  grow(delta: number): number;
}

export interface WasmGlobal {
  readonly value: unknown;
}

/** An exported mutable global: its value can be set from JavaScript (instance reuse restores it). */
export interface WasmMutableGlobal {
  value: unknown;
}

export interface WasmTable {
  readonly length: number;
  get(index: number): unknown;
  set(index: number, value: unknown): void;
}

export interface WasmInstance {
  readonly exports: Readonly<Record<string, unknown>>;
}

export type WasmImportObject = Record<string, Record<string, unknown>>;

interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports?: WasmImportObject) => WasmInstance;
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Global: abstract new (...args: never[]) => WasmGlobal;
  RuntimeError: new (message?: string) => Error;
  CompileError: new (message?: string) => Error;
  LinkError: new (message?: string) => Error;
  validate(bytes: Uint8Array): boolean;
  compile(bytes: Uint8Array): Promise<WasmModule>;
}

export const wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

export const WASM_PAGE_BYTES = 65_536;
/** Pages a 32-bit memory can have at most (4 GiB). */
export const WASM_MAX_PAGES = 65_536;
