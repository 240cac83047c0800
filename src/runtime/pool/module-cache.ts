/**
 * The pool's compiled modules, keyed by digest and memory limit (the limit is baked into the
 * module's memory maximum, so two limits are two compilations). Compiles are memoised: concurrent
 * loads of one key share one compile, and a failed compile is not remembered.
 */
import { EngineError } from '../../errors.js';
import { wasm, type WasmModule } from '../wasm-api.js';
import { withMemoryMaximum } from '../wasm-binary.js';

export interface LoadedModule {
  /** Small number naming the module in messages to workers. */
  id: number;
  digest: string;
  module: WasmModule;
  /** Set by unload: workers must not keep it any longer. */
  unloaded?: boolean;
}

const PAGES_PER_MIB = 16;

const keyOf = (digest: string, memoryLimitMb: number): string => `${digest}|${memoryLimitMb}`;

export class ModuleCache {
  private nextId = 1;
  private readonly ready = new Map<string, LoadedModule>();
  private readonly pending = new Map<string, Promise<LoadedModule>>();

  get size(): number {
    return this.ready.size;
  }

  load(digest: string, bytes: Uint8Array, memoryLimitMb: number): Promise<LoadedModule> {
    const key = keyOf(digest, memoryLimitMb);
    const done = this.ready.get(key);
    if (done) return Promise.resolve(done);
    let compiling = this.pending.get(key);
    if (!compiling) {
      compiling = this.compile(digest, bytes, memoryLimitMb).then(
        (loaded) => {
          // An unload during the compile wins: keep nothing for a key no longer pending.
          if (this.pending.get(key) === compiling) {
            this.pending.delete(key);
            this.ready.set(key, loaded);
          }
          return loaded;
        },
        (err: unknown) => {
          if (this.pending.get(key) === compiling) this.pending.delete(key);
          throw err;
        },
      );
      this.pending.set(key, compiling);
    }
    return compiling;
  }

  /** The loaded module, or a compile in progress, or undefined when it was never loaded. */
  get(digest: string, memoryLimitMb: number): LoadedModule | Promise<LoadedModule> | undefined {
    const key = keyOf(digest, memoryLimitMb);
    return this.ready.get(key) ?? this.pending.get(key);
  }

  /** Drops every compiled form of `digest`; returns the dropped ones. */
  unload(digest: string): LoadedModule[] {
    const removed: LoadedModule[] = [];
    for (const [key, loaded] of this.ready) {
      if (loaded.digest === digest) {
        this.ready.delete(key);
        loaded.unloaded = true;
        removed.push(loaded);
      }
    }
    for (const key of this.pending.keys()) if (key.startsWith(`${digest}|`)) this.pending.delete(key);
    return removed;
  }

  private async compile(digest: string, bytes: Uint8Array, memoryLimitMb: number): Promise<LoadedModule> {
    const capped = withMemoryMaximum(bytes, Math.floor(memoryLimitMb * PAGES_PER_MIB));
    try {
      return { id: this.nextId++, digest, module: await wasm.compile(capped) };
    } catch (err) {
      const reason = err instanceof Error ? err.message.replace(/^WebAssembly\.compile\(\): /, '') : String(err);
      throw new EngineError('INVALID_FUNCTION_IMAGE', `the module does not compile: ${reason}`, { cause: err });
    }
  }
}
