/** Messages between the pool (main thread) and its sandbox workers. Kept small: this is the hot path. */
import type { ErrorCode } from '../../errors.js';
import type { SandboxCall } from '../abi/call.js';
import type { InvocationResult } from '../types.js';
import type { WasmModule } from '../wasm-api.js';

export interface InvokeMessage {
  type: 'invoke';
  id: number;
  moduleId: number;
  /**
   * Sent only the first time a worker needs this module: structured clone of a compiled module
   * shares its code, so the worker neither recompiles nor receives the bytes again.
   */
  module?: WasmModule;
  /** False when the module was unloaded meanwhile: run it once without caching it. */
  keep?: boolean;
  call: SandboxCall;
}

export interface EvictMessage {
  type: 'evict';
  moduleIds: number[];
}

export type ToWorker = InvokeMessage | EvictMessage;

export type FromWorker =
  | { type: 'ready' }
  | { type: 'done'; id: number; result: InvocationResult }
  | { type: 'failed'; id: number; code: ErrorCode; message: string };
