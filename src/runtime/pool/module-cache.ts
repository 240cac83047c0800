/**
 * The pool's compiled modules, keyed by digest and memory limit (the limit is baked into the
 * module's memory maximum, so two limits are two compilations). Compiles are memoised: concurrent
 * loads of one key share one compile, and a failed compile is not remembered.
 *
 * The cache is bounded in bytes, least recently used first out. A module evicted that way is not
 * forgotten: the next call of it gets its bytes again through `fetch` (the engine reads them from
 * its store) and compiles it anew. unload() forgets a module for good. The bound counts the size of
 * the module's binary, which is what the cache can know; V8's machine code for it is of the same
 * order (typically one to three times the binary).
 *
 * Modules are capped, rewritten and compiled by the preparer's worker threads, never on this
 * (the HTTP) thread: see preparer.ts.
 */
import { EngineError } from '../../errors.js';
import type { AnalyzeOptions } from '../analyze.js';
import type { ExposedState } from '../reuse/expose.js';
import type { AdmittedModule } from '../types.js';
import type { WasmModule } from '../wasm-api.js';
import type { CompiledModule } from './prepare-protocol.js';
import type { ModulePreparer } from './preparer.js';

export interface LoadedModule {
  /** Small number naming the module in messages to workers. */
  id: number;
  digest: string;
  module: WasmModule;
  /** Size of the binary compiled: what the cache's bound counts. */
  bytes: number;
  /** Where the state is exported when instances may be reused; else why they may not. */
  state: ExposedState | undefined;
  noReuse: string | undefined;
  /** Why its calls may not run inline (inline/eligibility.ts); undefined: they may. */
  notInline?: string | undefined;
  /** Set by unload or eviction: workers must not keep it any longer. */
  unloaded?: boolean;
  /**
   * How the pool schedules its calls (fairness.ts, applied by scheduler.ts), the pool's alone to change:
   * guarded until a call of it answers fast, and again while it is seen slow.
   */
  guarded: boolean;
  /** A call of it has answered within SLOW_CALL_MS at least once. */
  proven: boolean;
  /** When it was last asked for, on the cache's own count: eviction takes the lowest first. */
  lastUse: number;
  /** Guarded at least until then (performance.now() time), having been seen slow. */
  slowUntil: number;
}

export interface ModuleCacheOptions {
  /** Compiles modules, off this thread. */
  preparer: ModulePreparer;
  /** Bytes of module binaries kept compiled (default: unbounded). */
  maxBytes?: number;
  /** Gets an evicted module's bytes again (default: none, and an evicted module is an error). */
  fetch?: (digest: string) => Promise<Uint8Array>;
  /** Called with the modules dropped to keep within the bound (the pool tells its workers). */
  onEvict?: (evicted: LoadedModule[]) => void;
}

const keyOf = (digest: string, memoryLimitMb: number): string => `${digest}|${memoryLimitMb}`;

export class ModuleCache {
  private nextId = 1;
  /** Compiled modules by key; how recently each was used is its `lastUse` (touch). */
  private readonly ready = new Map<string, LoadedModule>();
  /** The count touch() stamps modules with. */
  private uses = 0;
  private readonly pending = new Map<string, Promise<LoadedModule>>();
  /** Keys evicted for room, that a call may bring back. */
  private readonly evicted = new Set<string>();
  private heldBytes = 0;
  private evictions = 0;
  /**
   * The keys, made once per digest and limit: every call looks its module up, and a key built per
   * call is a new string hashed anew (the digest's own hash is kept with it).
   */
  private readonly keys = new Map<string, Map<number, string>>();

  constructor(private readonly options: ModuleCacheOptions) {}

  get size(): number {
    return this.ready.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** Modules dropped to keep within the bound, since the cache was made. */
  get evictedCount(): number {
    return this.evictions;
  }

  /** `owned`: the bytes are the cache's to give away (to the preparation worker, without a copy). */
  load(digest: string, bytes: Uint8Array, memoryLimitMb: number, owned = false): Promise<LoadedModule> {
    const key = this.keyOf(digest, memoryLimitMb, true);
    const done = this.ready.get(key);
    if (done) return Promise.resolve(this.touch(done));
    let compiling = this.pending.get(key);
    if (!compiling) {
      compiling = this.compile(digest, bytes, memoryLimitMb, owned).then(
        (loaded) => {
          // An unload during the compile wins: keep nothing for a key no longer pending.
          if (this.pending.get(key) === compiling) {
            this.pending.delete(key);
            this.evicted.delete(key);
            this.ready.set(key, loaded);
            this.heldBytes += loaded.bytes;
            this.trim(key);
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

  /**
   * A deploy's module: analysed (throws INVALID_FUNCTION_IMAGE as analyzeModule does), hashed,
   * compiled and tried (a start function that runs past `timeoutMs`, traps or exits with an error
   * is refused with INVALID_FUNCTION_IMAGE), all in a preparation worker; then held like a loaded
   * one. `bytes` may be transferred away: use the returned ones after.
   */
  async admit(
    bytes: Uint8Array,
    memoryLimitMb: number,
    analyze: AnalyzeOptions,
    timeoutMs: number,
  ): Promise<AdmittedModule> {
    const admitted = await this.options.preparer.admit(bytes, memoryLimitMb, analyze, timeoutMs);
    const { digest } = admitted;
    const key = this.keyOf(digest, memoryLimitMb, true);
    // Compiled already (or being so) under this key: that one stays, this one is dropped.
    if (!this.ready.has(key) && !this.pending.has(key)) {
      this.evicted.delete(key);
      this.ready.set(key, this.loadedOf(digest, admitted.compiled));
      this.heldBytes += admitted.compiled.bytes;
      this.trim(key);
    }
    return { analysis: admitted.analysis, digest, bytes: admitted.bytes };
  }

  /**
   * The loaded module, or a compile in progress (an evicted module is fetched and compiled again),
   * or undefined when it was never loaded or was unloaded.
   */
  get(digest: string, memoryLimitMb: number): LoadedModule | Promise<LoadedModule> | undefined {
    const key = this.keyOf(digest, memoryLimitMb);
    const done = this.ready.get(key);
    if (done) return this.touch(done);
    const compiling = this.pending.get(key);
    if (compiling) return compiling;
    const fetch = this.options.fetch;
    if (!this.evicted.has(key) || !fetch) return undefined;
    // Registered as pending at once, so that concurrent calls share one fetch and compile.
    let reloading: Promise<LoadedModule> | undefined;
    const started = fetch(digest).then((bytes) => {
      if (this.pending.get(key) !== reloading) throw new EngineError('INTERNAL', `module ${digest} was unloaded while it was reloaded`);
      this.pending.delete(key);
      // Fetched for this load alone: no copy needed.
      return this.load(digest, bytes, memoryLimitMb, true);
    });
    reloading = started.catch((err: unknown) => {
      if (this.pending.get(key) === reloading) this.pending.delete(key);
      throw err;
    });
    this.pending.set(key, reloading);
    return reloading;
  }

  /** The module if it is compiled and held now, without counting this as a use. */
  peek(digest: string, memoryLimitMb: number): LoadedModule | undefined {
    return this.ready.get(this.keyOf(digest, memoryLimitMb));
  }

  /** Drops every compiled form of `digest` for good; returns the dropped ones. */
  unload(digest: string): LoadedModule[] {
    const removed: LoadedModule[] = [];
    for (const [key, loaded] of this.ready) {
      if (loaded.digest === digest) {
        this.drop(key, loaded);
        removed.push(loaded);
      }
    }
    this.keys.delete(digest);
    const prefix = `${digest}|`;
    for (const key of [...this.pending.keys()]) if (key.startsWith(prefix)) this.pending.delete(key);
    for (const key of [...this.evicted.keys()]) if (key.startsWith(prefix)) this.evicted.delete(key);
    return removed;
  }

  /** The key; `remember` (a module is loaded under it): kept until the digest is unloaded. */
  private keyOf(digest: string, memoryLimitMb: number, remember = false): string {
    let byLimit = this.keys.get(digest);
    let key = byLimit?.get(memoryLimitMb);
    if (key !== undefined) return key;
    key = keyOf(digest, memoryLimitMb);
    if (remember) {
      if (byLimit === undefined) {
        byLimit = new Map();
        this.keys.set(digest, byLimit);
      }
      byLimit.set(memoryLimitMb, key);
    }
    return key;
  }

  /** A count rather than reordering the map: every call touches its module, eviction is rare. */
  private touch(loaded: LoadedModule): LoadedModule {
    loaded.lastUse = ++this.uses;
    return loaded;
  }

  private drop(key: string, loaded: LoadedModule): void {
    this.ready.delete(key);
    this.heldBytes -= loaded.bytes;
    loaded.unloaded = true;
  }

  /** Evicts least recently used modules (never `keep`, the one just loaded) while over the bound. */
  private trim(keep: string): void {
    const max = this.options.maxBytes;
    if (max === undefined || this.heldBytes <= max) return;
    const evicted: LoadedModule[] = [];
    const byAge = [...this.ready].sort((a, b) => a[1].lastUse - b[1].lastUse);
    for (const [key, loaded] of byAge) {
      if (this.heldBytes <= max) break;
      if (key === keep) continue;
      this.drop(key, loaded);
      this.evicted.add(key);
      this.evictions++;
      evicted.push(loaded);
    }
    if (evicted.length > 0) this.options.onEvict?.(evicted);
  }

  private async compile(digest: string, bytes: Uint8Array, memoryLimitMb: number, owned: boolean): Promise<LoadedModule> {
    return this.loadedOf(digest, await this.options.preparer.compile(bytes, memoryLimitMb, owned));
  }

  private loadedOf(digest: string, compiled: CompiledModule): LoadedModule {
    return { id: this.nextId++, digest, ...compiled, guarded: true, proven: false, slowUntil: 0, lastUse: ++this.uses };
  }
}
