/** Types shared by the runtime's parts and its callers. The runtime knows nothing of registries or HTTP. */
import type { ExposedState } from './reuse/expose.js';
import type { WasmModule } from './wasm-api.js';

/** The calling conventions of SPEC §3. */
export type Abi = 'wasi' | 'string' | 'numeric';

/** What deploy learns about a module and keeps with the function entry. */
export interface ModuleAnalysis {
  abi: Abi;
  /** The export the engine calls: `_start` for WASI, else the function's entry export. */
  entrypoint: string;
  /** Names of all exports, in module order. */
  exports: string[];
  /** True when the module runs with WASI (imports wasi_snapshot_preview1 and exports `_start`). */
  wasiCap: boolean;
  /** For the numeric ABI: the value types of the entrypoint's parameters and results. */
  params?: ValType[];
  results?: ValType[];
}

export type ValType = 'i32' | 'i64' | 'f32' | 'f64';

/**
 * Invocation args after normalisation (SPEC §2, §3): values are strings.
 * - json: the compact JSON text of args (string ABI input; WASI argv when not positional)
 * - positional: the values in order when args was an array or an object keyed "0","1",…; else null
 * - values: the values in the order given (numeric ABI)
 */
export interface FunctionArgs {
  json: string;
  positional: string[] | null;
  values: string[];
}

/** Per-invocation limits (SPEC §3), already resolved from engine defaults and deploy overrides. */
export interface InvocationLimits {
  timeoutMs: number;
  memoryLimitMb: number;
  maxOutputBytes: number;
}

export interface InvocationRequest {
  /** sha256:<hex> of the module bytes: the key the compiled module is cached under. */
  digest: string;
  analysis: ModuleAnalysis;
  args: FunctionArgs;
  limits: InvocationLimits;
  /** WASI environment (empty by default). */
  env?: Record<string, string>;
  /** WASI stdin (empty by default). */
  stdin?: Uint8Array;
  /**
   * When the invocation reached the engine (performance.now() time): it must start within its time
   * limit from then, or it is refused with OVERLOADED (default: when the runtime is handed it).
   */
  arrivedAt?: number;
  /** Run inline on another thread already, and given up there: not tried inline again. */
  inlineTried?: boolean;
}

export interface InvocationResult {
  output: string;
  /** Captured stderr (WASI), kept for logs. */
  stderr: string;
  durationMs: number;
}

export interface RuntimeStats {
  /** Live sandbox workers. */
  workers: number;
  /** Workers running an invocation. */
  busy: number;
  /** Invocations waiting for a worker. */
  queued: number;
  /** Compiled modules held (one per digest and memory limit). */
  loadedModules: number;
  /** Bytes of the binaries of the compiled modules held (what the cache's bound counts). */
  loadedModuleBytes?: number;
  /** Modules evicted from the compiled cache to keep within its bound, since start. */
  evictedModules?: number;
  /** Invocations answered on the thread that read them, and those abandoned there for a worker, since start (inline/). */
  inlineRan?: number;
  inlineAbandoned?: number;
  /** Invocations stopped at their time limit by their own preemption checks, since start, by where they ran (the thread lived on). */
  preemptions?: { worker: number; inline: number };
  /** Sandbox workers replaced by a new one since start, by reason. */
  workerReplacements?: Record<WorkerReplaceReason, number>;
}

/**
 * Why a sandbox worker was replaced: 'deadline', terminated because guest code ran past a time
 * limit and did not stop itself (a call, or readying an instance after an answer); 'not_started',
 * terminated because it had not started a call it held by that call's deadline (the call runs
 * elsewhere); 'preload', terminated while readying a restored module ahead of its calls; 'crash'
 * and 'out_of_memory', it died by itself.
 */
export type WorkerReplaceReason = 'deadline' | 'not_started' | 'preload' | 'crash' | 'out_of_memory';

/**
 * What the runtime needs of a cancellation signal: whether it fired, and one listener for when it
 * does. An AbortSignal is one; the HTTP layer passes something cheaper per request (an
 * AbortController costs more to make than a small invocation's whole dispatch).
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A loaded module to hand to the sandboxes ahead of its first call (FunctionRuntime.preload). */
export interface PreloadRequest {
  digest: string;
  memoryLimitMb: number;
  abi: Abi;
  /** How long readying its instance may take (its start function runs then): its time limit. */
  timeoutMs: number;
}

/** A module preload set aside: its invocations are refused until it is loaded again. */
export interface PreloadFailure {
  digest: string;
  memoryLimitMb: number;
  reason: string;
}

/** A deploy's module as FunctionRuntime.admit takes it: analysis options and the limits it is compiled and tried under. */
export interface AdmitRequest {
  /** The function's name: the default entry export. */
  functionName: string;
  wasiCap?: boolean;
  entrypoint?: string;
  memoryLimitMb: number;
  timeoutMs: number;
}

export interface AdmittedModule {
  analysis: ModuleAnalysis;
  /** sha256:<hex> of the bytes. */
  digest: string;
  bytes: Uint8Array;
}

/**
 * A compiled module as another thread of this process runs it inline (inline/inline-executor.ts):
 * posted to a worker_thread, a WebAssembly.Module shares its code rather than being compiled again.
 */
export interface PortableModule {
  module: WasmModule;
  /** Where the module's state is exported, when its instances may be reused (reuse/expose.ts). */
  state?: ExposedState;
  /** Why they may not, otherwise. */
  noReuse?: string;
}

/** What the engine needs of a runtime; WorkerPoolRuntime is the real one, tests use fakes. */
export interface FunctionRuntime {
  /**
   * Compiles (memoised by digest + memory limit) the module; throws INVALID_FUNCTION_IMAGE.
   * `owned`: the caller will not use `bytes` again, and the runtime may take them (detach them)
   * instead of copying them.
   */
  load(digest: string, bytes: Uint8Array, memoryLimitMb: number, owned?: boolean): Promise<void>;
  /**
   * Optional: what a deploy does with a new module, off the thread that answers requests when the
   * runtime can: analyses it (throws INVALID_FUNCTION_IMAGE as analyzeModule does), hashes it,
   * compiles and loads it as load() would, and makes a trial instance of it within
   * `timeoutMs` (a start function that does not end, traps or exits with an error: throws
   * INVALID_FUNCTION_IMAGE). `bytes` may be transferred away: the answer carries them back.
   */
  admit?(bytes: Uint8Array, request: AdmitRequest): Promise<AdmittedModule>;
  /**
   * Runs one invocation of a loaded module. Throws EngineError: INVALID_ARGS, FUNCTION_FAILED,
   * FUNCTION_TIMEOUT, OVERLOADED. An aborted `signal` drops a call still queued (the promise then
   * rejects with UNAVAILABLE, "invocation cancelled"); a call already running finishes or times out.
   */
  invoke(req: InvocationRequest, signal?: CancelSignal): Promise<InvocationResult>;
  /** Forgets every compiled form of the module. */
  unload(digest: string): void;
  /**
   * Optional: hands modules already loaded to the sandboxes ahead of their first call (and readies
   * an instance of each); resolves when done, with the modules whose instantiation ran past its
   * time limit or exhausted a sandbox: those are set aside (their invocations answer
   * FUNCTION_FAILED) until they are unloaded. Never compiles; modules not loaded are skipped.
   */
  preload?(modules: PreloadRequest[]): Promise<PreloadFailure[]>;
  /**
   * Optional: a loaded module for another thread to run inline, when its calls may run inline
   * (inline running on, the module eligible, not set aside); else undefined.
   */
  portable?(digest: string, memoryLimitMb: number): PortableModule | undefined;
  stats(): RuntimeStats;
  /** stats().queued alone, without building the rest (read per call while calls wait). */
  queued(): number;
  /** Lets in-flight invocations finish (bounded), then stops the workers. */
  close(): Promise<void>;
}
