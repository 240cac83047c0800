/** Messages between the pool's module preparer (main thread) and its preparation workers. */
import type { ErrorCode } from '../../errors.js';
import type { AnalyzeOptions } from '../analyze.js';
import type { ExposedState } from '../reuse/expose.js';
import type { ModuleAnalysis } from '../types.js';
import type { WasmModule } from '../wasm-api.js';

/** The rewrites a module gets before it is compiled: its memory and table maxima. */
export interface ModuleCaps {
  memoryLimitMb: number;
  maxTableEntries: number;
}

export interface PrepareJob extends ModuleCaps {
  id: number;
  bytes: Uint8Array;
  /**
   * Deploy: analyse the module first (refusing what analysis refuses), hash it, send its bytes
   * back, and after compiling make one instance of it (a trial of its start function) before
   * answering 'tried'.
   */
  admit?: AnalyzeOptions;
}

/** What a module is compiled into for the pool (module-cache.ts LoadedModule, without the cache's fields). */
export interface CompiledModule {
  module: WasmModule;
  /** Size of the binary compiled (the cache's bound counts it). */
  bytes: number;
  state: ExposedState | undefined;
  noReuse: string | undefined;
  /** Why its calls may not run on the thread that reads them (inline/eligibility.ts); undefined: they may. */
  notInline?: string | undefined;
}

export type PrepareReply =
  | {
      id: number;
      type: 'compiled';
      compiled: CompiledModule;
      /** For an admit job: */
      analysis?: ModuleAnalysis;
      digest?: string;
      bytes?: Uint8Array;
    }
  /** An admit job's trial instance was made: its start function returned. */
  | { id: number; type: 'tried' }
  | { id: number; type: 'failed'; code: ErrorCode; message: string };

/** A view that spans the whole of an ordinary ArrayBuffer, which can then be transferred. */
export function ownsBuffer(bytes: Uint8Array): boolean {
  return bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
}
