/**
 * The engine's operations — deploy, delete, list, query, invoke — over the store, the image
 * fetcher and the runtime. What the HTTP API and any other front end call; knows nothing of HTTP.
 */
import { EngineError, toEngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ImageFetcher } from '../registry/types.js';
import { analyzeModule, normalizeArgs, warmUpFunction } from '../runtime/index.js';
import type { CancelSignal, FunctionArgs, FunctionRuntime, InvocationLimits, InvocationRequest, InvocationResult, ModuleAnalysis } from '../runtime/index.js';
import { sha256Digest } from '../store/index.js';
import type { FunctionChange, FunctionLimitsOverride, FunctionRecord, FunctionStore } from '../store/index.js';
import { noEvents, type DeployOperation, type EngineEvents, type Outcome } from './events.js';
import { FunctionGate } from './function-gate.js';
import type { InvocableFunction, ThreadInvocations, ThreadStderr } from './function-table.js';
import { checkFunctionName } from './function-name.js';
import { rawInput, type RawInvokeRequest } from './raw-input.js';

export type { RawInvokeRequest } from './raw-input.js';

export interface DeployRequest {
  name: string;
  image: string;
  /** Omitted: decided from the module's imports. */
  wasiCap?: boolean;
  entrypoint?: string;
  limits?: FunctionLimitsOverride;
  env?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Desired replicas; omitted: 1 on deploy, unchanged on update. */
  replicas?: number;
}

export interface InvokeRequest {
  name: string;
  /** The request's `args` as sent: an object, an array, or undefined. */
  args: unknown;
  stdin?: Uint8Array;
  /** Fires when the caller goes away: a call still waiting is dropped. An AbortSignal will do. */
  signal?: CancelSignal;
  /** The caller ran it inline already and gave up (an HTTP thread): the runtime's workers run it. */
  inlineTried?: boolean;
}

export interface EngineDefaults {
  timeoutMs: number;
  memoryLimitMb: number;
  maxOutputBytes: number;
}

export interface EngineParts {
  store: FunctionStore;
  fetcher: ImageFetcher;
  runtime: FunctionRuntime;
  defaults: EngineDefaults;
  logger: Logger;
  /** Checks an image reference's syntax before anything is fetched; throws INVALID_REQUEST. */
  checkImageReference: (reference: string) => void;
  /** Where metrics and function logs hear of invocations, deploys and pulls; none when absent. */
  events?: EngineEvents;
  /** How replicas bound concurrency; unbounded when absent. */
  scaling?: ScalingOptions;
}

export interface ScalingOptions {
  /** Invocations of one function that may run at once per replica. */
  concurrencyPerReplica: number;
  /** Invocations of one function that may wait for a slot before OVERLOADED. */
  maxWaiting: number;
  /**
   * Invocations that may wait in all, for a function's slot or for a worker (the runtime's queue),
   * before OVERLOADED; unbounded when absent.
   */
  maxWaitingTotal?: number;
}

/** What the engine knows of a function at run time, besides its stored entry. */
export interface FunctionRunState {
  record: FunctionRecord;
  replicas: number;
  /** Replicas ready to run: all of them once the module is compiled, else 0. */
  availableReplicas: number;
  /** Invocations since the engine started (or the function was deployed). */
  invocations: number;
}

export const MAX_REPLICAS = 1000;

/** The built-in warm-up function's name: deployed names start with a letter or a digit. */
export const WARM_UP_NAME = '_wasm-engine-warm-up';

/**
 * What the engine keeps per function name besides its stored entry; replaced when the function is
 * deleted (invocations still running keep the old one, marked removed).
 */
interface FunctionState {
  gate: FunctionGate;
  invocations: number;
  /** Deleted, or the built-in warm-up function: its events are not counted. */
  removed: boolean;
  /**
   * Its module handed to the runtime: LOADED once compiled (its replicas are then available), the
   * load on its way, or undefined before the first load and after a failed one (retried by the
   * next call rather than remembered forever).
   */
  module: typeof LOADED | Promise<void> | undefined;
  /** limitsOf(limitsRecord), kept for the record it was made for: a call's limits without an object per call. */
  limitsRecord?: FunctionRecord;
  limits?: InvocationLimits;
}

const LOADED = 'loaded';

/** Per module digest: invocations using it, so that an update or delete unloads it only when they end. */
interface DigestUse {
  inflight: number;
  /**
   * Deploys and updates between loading the module and storing the entry that names it. Until that
   * entry is visible in the store, a delete or update of another function of the same module sees
   * no user of it: the module must stay loaded while any such change is on its way.
   */
  pending: number;
  /** No function uses the digest any more: unload when inflight reaches 0. */
  retired: boolean;
  /** Has run once since it was loaded: the next invocation is not a cold start. */
  warm: boolean;
}

export class Engine {
  private readonly store: FunctionStore;
  private readonly fetcher: ImageFetcher;
  private readonly runtime: FunctionRuntime;
  private readonly defaults: EngineDefaults;
  private readonly logger: Logger;
  private readonly checkImageReference: (reference: string) => void;
  /** The built-in function invocable while the engine warms up (beginWarmUp). */
  private warmUp: FunctionRecord | undefined;
  private readonly events: EngineEvents;
  private readonly scaling: ScalingOptions;
  private readonly functions = new Map<string, FunctionState>();
  private readonly uses = new Map<string, DigestUse>();
  /**
   * Per function name: the update or scale in progress; the next one waits for it. Not in
   * FunctionState: a chain of changes outlives a delete of the function.
   */
  private readonly changing = new Map<string, Promise<unknown>>();
  private inflight = 0;
  /** Invocations waiting for their function's slot, over all functions. */
  private waiting = 0;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  /** Hear of every change to what a function's calls run (watchFunctions). */
  private readonly watchers: ((name: string) => void)[] = [];

  constructor(parts: EngineParts) {
    this.store = parts.store;
    this.fetcher = parts.fetcher;
    this.runtime = parts.runtime;
    this.defaults = parts.defaults;
    this.logger = parts.logger;
    this.checkImageReference = parts.checkImageReference;
    this.events = parts.events ?? noEvents;
    this.scaling = parts.scaling ?? { concurrencyPerReplica: Infinity, maxWaiting: Infinity };
    // A store shared by several engines: other nodes' changes reach this one through it.
    this.store.cluster?.onChange((change) => this.applyChange(change));
    this.store.cluster?.countInvocations(() => this.localInvocationCounts());
  }

  /** Opens the store and starts compiling every restored function in the background. */
  async restore(): Promise<number> {
    await this.store.open();
    const records = this.store.list();
    for (const record of records) {
      this.prepare(record, this.stateOf(record)).catch((err: unknown) => {
        this.logger.error({ function: record.name, err }, 'restored function failed to compile');
      });
    }
    return records.length;
  }

  /** Resolves when every restored function is compiled (failures are logged, not thrown). */
  async whenAllReady(): Promise<void> {
    const loading: Promise<void>[] = [];
    for (const state of this.functions.values()) if (state.module instanceof Promise) loading.push(state.module);
    await Promise.allSettled(loading);
  }

  /**
   * Once every restored function is compiled, hands their modules to the sandboxes ahead of their
   * first call (when the runtime can), so that a first invocation neither waits for a module to
   * cross to a worker nor for its first instance. A function whose first instance cannot be made
   * within its time limit (a start function that never returns) or without exhausting a sandbox
   * is set aside: logged here with the reason, kept in the store and listed, and its invocations
   * answer FUNCTION_FAILED until it is deployed again. Never throws.
   */
  async preloadRestored(): Promise<void> {
    await this.whenAllReady();
    if (!this.runtime.preload) return;
    const records = this.store.list().filter((record) => this.functions.get(record.name)?.module === LOADED);
    const modules = records.map((record) => {
      const limits = this.limitsOf(record);
      return { digest: record.digest, memoryLimitMb: limits.memoryLimitMb, abi: record.analysis.abi, timeoutMs: limits.timeoutMs };
    });
    if (modules.length > 0) this.logger.info({ functions: modules.length }, `readying ${modules.length} restored functions in the sandboxes`);
    try {
      const failures = await this.runtime.preload(modules);
      for (const { digest, reason } of failures) {
        for (const record of this.store.list()) {
          if (record.digest === digest) this.logger.error({ function: record.name, digest, reason }, `function ${record.name} set aside: ${reason}`);
        }
      }
    } catch (err) {
      this.logger.warn({ err }, 'restored functions could not be preloaded in the sandboxes');
    }
  }

  list(): FunctionRecord[] {
    return this.store.list();
  }

  /** The deployed function of that name, if any. */
  find(name: string): FunctionRecord | undefined {
    return this.store.get(name);
  }

  /**
   * Cold starts: a first request that takes code paths V8 has not compiled yet costs milliseconds,
   * and the error paths a missing function takes are not those of a successful invocation. So
   * while the engine warms up it can invoke a built-in function, end to end, under a name no deploy
   * can take (names start with a letter or digit). It is never listed or queried, and never counted
   * (its state is marked removed, which the events skip); endWarmUp() forgets it.
   */
  async beginWarmUp(): Promise<{ name: string; args: unknown; expected: string }> {
    const fn = warmUpFunction();
    const record: FunctionRecord = {
      name: WARM_UP_NAME,
      image: 'built-in',
      digest: sha256Digest(fn.bytes),
      size: fn.bytes.length,
      deployedAt: new Date(0).toISOString(),
      analysis: analyzeModule(fn.bytes, { functionName: WARM_UP_NAME, entrypoint: fn.entrypoint }),
      limits: {},
      env: {},
    };
    await this.runtime.load(record.digest, fn.bytes, this.limitsOf(record).memoryLimitMb);
    const state = this.stateOf(record);
    state.removed = true;
    state.module = LOADED;
    this.warmUp = record;
    return { name: record.name, args: fn.args, expected: fn.expected };
  }

  endWarmUp(): void {
    const record = this.warmUp;
    if (!record) return;
    this.warmUp = undefined;
    this.functions.delete(record.name);
    this.runtime.unload(record.digest);
  }

  /** The function an invocation names: a deployed one, or the built-in one while warming up. */
  private invocable(name: string): FunctionRecord {
    const warmUp = this.warmUp;
    if (warmUp !== undefined && name === warmUp.name) return warmUp;
    return this.query(name);
  }

  query(name: string): FunctionRecord {
    const record = this.store.get(name);
    if (!record) throw new EngineError('FUNCTION_NOT_FOUND', `function ${name} is not deployed`);
    return record;
  }

  blobPath(record: FunctionRecord): string {
    return this.store.blobPath(record.digest);
  }

  async deploy(request: DeployRequest): Promise<FunctionRecord> {
    this.refuseWhenClosing();
    checkFunctionName(request.name);
    this.checkImageReference(request.image);
    const limits = checkLimits(request.limits ?? {});
    const replicas = checkReplicas(request.replicas ?? 1);
    const release = this.store.reserve(request.name);
    const started = performance.now();
    let held: string | undefined;
    try {
      const { record, bytes } = await this.buildVersion(request, limits, () => replicas);
      const { digest, analysis } = record;
      held = this.hold(digest);
      // Compile before persisting: a module the runtime refuses never becomes a deployed function.
      await this.runtime.load(digest, bytes, this.limitsOf(record).memoryLimitMb);
      await this.store.insert(record, bytes);
      this.stateOf(record).module = LOADED;
      this.changed(record.name);
      this.logger.info(
        { function: record.name, image: record.image, digest, abi: analysis.abi, ms: Math.round(performance.now() - started) },
        'function deployed',
      );
      this.deployEvent('deploy', 'success', started);
      return record;
    } catch (err) {
      this.deployEvent('deploy', outcomeOf(err), started);
      throw err;
    } finally {
      release();
      if (held !== undefined) this.unhold(held);
    }
  }

  /**
   * Deploys a new version of a deployed function under the same name (OpenFaaS update): the new
   * module is compiled before the stored entry is swapped atomically, invocations that started on
   * the old version finish on it, and the old module is unloaded only when they have ended.
   */
  async update(request: DeployRequest): Promise<FunctionRecord> {
    this.refuseWhenClosing();
    checkFunctionName(request.name);
    this.checkImageReference(request.image);
    const limits = checkLimits(request.limits ?? {});
    if (request.replicas !== undefined) checkReplicas(request.replicas);
    this.query(request.name);
    this.store.cluster?.checkWritable();
    return this.exclusive(request.name, async () => {
      const started = performance.now();
      let held: string | undefined;
      try {
        // Replicas are read after the pull: a scale that ran meanwhile must not be undone.
        const { record, bytes } = await this.buildVersion(request, limits, () => request.replicas ?? this.query(request.name).replicas ?? 1);
        const { digest } = record;
        const replicas = record.replicas ?? 1;
        held = this.hold(digest);
        await this.runtime.load(digest, bytes, this.limitsOf(record).memoryLimitMb);
        const old = await this.store.replace(record, bytes);
        const state = this.functions.get(record.name);
        if (state) {
          state.module = LOADED;
          state.gate.setLimit(this.limitFor(replicas));
        } else this.stateOf(record).module = LOADED;
        this.changed(record.name);
        if (old.digest !== digest) this.retire(old.digest);
        this.logger.info(
          { function: record.name, image: record.image, digest, previous: old.digest, ms: Math.round(performance.now() - started) },
          'function updated',
        );
        this.deployEvent('update', 'success', started);
        return record;
      } catch (err) {
        this.deployEvent('update', outcomeOf(err), started);
        throw err;
      } finally {
        // A new module compiled for an entry that was not stored (deleted meanwhile) is not kept.
        if (held !== undefined) this.unhold(held);
      }
    });
  }

  /** Pulls and analyses an image and builds the entry it would be stored as (deploy and update). */
  private async buildVersion(
    request: DeployRequest,
    limits: FunctionLimitsOverride,
    replicasOf: () => number,
  ): Promise<{ record: FunctionRecord; bytes: Uint8Array }> {
    const fetched = await this.pull(request.image);
    const { analysis, digest, bytes } = await this.inspect(fetched.bytes, request, limits);
    const replicas = replicasOf();
    const record: FunctionRecord = {
      name: request.name,
      image: request.image,
      digest,
      size: bytes.byteLength,
      ...(fetched.manifestDigest === undefined ? {} : { manifestDigest: fetched.manifestDigest }),
      deployedAt: new Date().toISOString(),
      analysis,
      limits,
      env: request.env ?? {},
      ...metadata(request),
      ...(replicas === 1 ? {} : { replicas }),
    };
    return { record, bytes };
  }

  /**
   * Analyses and hashes a new module; when the runtime can, also compiles it and makes a trial
   * instance (its start function run under the function's time limit), all off the thread that
   * answers requests: on a module of hundreds of MB that work takes seconds.
   */
  private async inspect(
    moduleBytes: Uint8Array,
    request: DeployRequest,
    limits: FunctionLimitsOverride,
  ): Promise<{ analysis: ModuleAnalysis; digest: string; bytes: Uint8Array }> {
    const analyze = {
      functionName: request.name,
      ...(request.wasiCap === undefined ? {} : { wasiCap: request.wasiCap }),
      ...(request.entrypoint === undefined ? {} : { entrypoint: request.entrypoint }),
    };
    if (!this.runtime.admit) return { analysis: analyzeModule(moduleBytes, analyze), digest: sha256Digest(moduleBytes), bytes: moduleBytes };
    return this.runtime.admit(moduleBytes, {
      ...analyze,
      memoryLimitMb: limits.memory_limit_mb ?? this.defaults.memoryLimitMb,
      timeoutMs: limits.timeout_ms ?? this.defaults.timeoutMs,
    });
  }

  /** Sets a function's replicas: its concurrency bound, persisted; 0 pauses it. */
  async scale(name: string, replicas: number): Promise<FunctionRecord> {
    checkReplicas(replicas);
    this.query(name);
    return this.exclusive(name, async () => {
      const current = this.query(name);
      let record: FunctionRecord = { ...current };
      if (replicas === 1) delete record.replicas;
      else record.replicas = replicas;
      // Shared: set on whatever version is stored now (another node may have updated it meanwhile).
      if (this.store.cluster) record = await this.store.cluster.setReplicas(name, replicas);
      else if ((current.replicas ?? 1) !== replicas) await this.store.replace(record);
      this.functions.get(name)?.gate.setLimit(this.limitFor(replicas));
      this.changed(name);
      this.logger.info({ function: name, replicas }, 'function scaled');
      return record;
    });
  }

  /** The run-time view of a function (OpenFaaS FunctionStatus). */
  runState(name: string): FunctionRunState {
    const record = this.query(name);
    const replicas = record.replicas ?? 1;
    const state = this.functions.get(name);
    return {
      record,
      replicas,
      availableReplicas: state?.module === LOADED ? replicas : 0,
      invocations: this.invocationsOf(name),
    };
  }

  /** This node's invocations, or the cluster's when the store is shared. */
  private invocationsOf(name: string): number {
    const local = this.functions.get(name)?.invocations ?? 0;
    return this.store.cluster ? this.store.cluster.invocations(name, local) : local;
  }

  private localInvocationCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [name, state] of this.functions) if (!state.removed) counts.set(name, state.invocations);
    return counts;
  }

  /**
   * Another node changed a function (or a resync found it changed): the store's view already
   * holds the change; bring the runtime along the way a local deploy, update or delete would.
   */
  private applyChange({ name, previous, current }: FunctionChange): void {
    if (current === undefined) {
      if (previous !== undefined) {
        this.forget(name, previous);
        this.logger.info({ function: name }, 'function deleted through another node');
      }
      return;
    }
    const reload =
      previous === undefined || previous.digest !== current.digest || this.limitsOf(previous).memoryLimitMb !== this.limitsOf(current).memoryLimitMb;
    const state = this.stateOf(current);
    if (reload) {
      state.module = undefined;
      this.prepare(current, state).catch((err: unknown) => {
        this.logger.error({ function: name, err }, 'function changed by another node failed to load');
      });
    }
    state.gate.setLimit(this.limitFor(current.replicas ?? 1));
    this.changed(name);
    if (previous !== undefined && previous.digest !== current.digest) this.retire(previous.digest);
    this.logger.info(
      { function: name, digest: current.digest, replicas: current.replicas ?? 1 },
      previous === undefined ? 'function deployed through another node' : 'function changed through another node',
    );
  }

  /** Invocations running or waiting for a slot, over all functions. */
  get inflightInvocations(): number {
    return this.inflight;
  }

  /** From now on invocations and deploys are refused with UNAVAILABLE; those running go on. */
  beginShutdown(): void {
    this.closing = true;
  }

  get shuttingDown(): boolean {
    return this.closing;
  }

  /** Resolves when no invocation is running or waiting. */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async delete(name: string): Promise<FunctionRecord> {
    const record = await this.store.remove(name);
    this.forget(name, record);
    this.logger.info({ function: name }, 'function deleted');
    return record;
  }

  /** A deleted function: its invocations waiting are refused, its module unloaded when unused. */
  private forget(name: string, record: FunctionRecord): void {
    const state = this.functions.get(name);
    if (state) {
      this.functions.delete(name);
      state.removed = true;
      state.gate.rejectAll(new EngineError('FUNCTION_NOT_FOUND', `function ${name} was deleted`));
    }
    this.changed(name);
    // Invocations already running finish on the module; it is unloaded when they end.
    this.retire(record.digest);
    this.events.functionRemoved(name);
  }

  // Not `async`: an async function returning run()'s promise would wrap it in one more promise
  // and cost microtask turns per invocation; errors still come back as a rejected promise.
  invoke(request: InvokeRequest): Promise<InvocationResult> {
    let record: FunctionRecord;
    let args: FunctionArgs;
    try {
      record = this.invocable(request.name);
    } catch (err) {
      return Promise.reject(err);
    }
    try {
      args = normalizeArgs(request.args);
    } catch (err) {
      this.events.invocation(record.name, outcomeOf(err), 0, false);
      return Promise.reject(err);
    }
    return this.run(record, args, request.stdin, record.env, request.signal, request.inlineTried === true);
  }

  /** An invocation from the raw data plane: body, query and environment mean what raw-input.ts says. */
  async invokeRaw(request: RawInvokeRequest): Promise<InvocationResult> {
    const record = this.query(request.name);
    let input;
    try {
      input = rawInput(record, request);
    } catch (err) {
      this.events.invocation(record.name, outcomeOf(err), 0, false);
      throw err;
    }
    return this.run(record, input.args, input.stdin, input.env, request.signal);
  }

  private async run(
    record: FunctionRecord,
    args: FunctionArgs,
    stdin: Uint8Array | undefined,
    env: Record<string, string>,
    signal: CancelSignal | undefined,
    inlineTried = false,
  ): Promise<InvocationResult> {
    const started = performance.now();
    const state = this.stateOf(record);
    if (this.closing) {
      const err = new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 });
      this.events.invocation(record.name, err.code, 0, false);
      throw err;
    }
    state.invocations += 1;
    const use = this.useOf(record.digest);
    use.inflight += 1;
    this.inflight += 1;
    let entered = false;
    let cold = false;
    try {
      entered = state.gate.tryEnter();
      if (!entered) {
        this.refuseWhenQueueFull();
        this.waiting += 1;
        try {
          // Its time to start runs from its arrival, here: the pool counts on from `arrivedAt`.
          await state.gate.enter(signal, this.limitsOf(record).timeoutMs);
        } finally {
          this.waiting -= 1;
        }
        entered = true;
      }
      // Once loaded, awaiting the settled load again would only cost a microtask hop per invocation.
      if (state.module !== LOADED) await this.prepare(record, state);
      cold = !use.warm;
      use.warm = true;
      const request: InvocationRequest = { digest: record.digest, analysis: record.analysis, args, limits: this.callLimits(record, state), env, arrivedAt: started };
      // Set rather than spread in: spreading a conditional object costs two objects per call.
      if (stdin !== undefined) request.stdin = stdin;
      if (inlineTried) request.inlineTried = true;
      const result = await this.runtime.invoke(request, signal);
      if (!state.removed) {
        this.events.invocation(record.name, 'success', (performance.now() - started) / 1000, cold);
        if (result.stderr !== '') this.events.functionStderr(record.name, result.stderr);
      }
      if (result.stderr !== '') this.logger.debug({ function: record.name, stderr: result.stderr }, 'function stderr');
      return result;
    } catch (err) {
      if (!state.removed) {
        this.events.invocation(record.name, outcomeOf(err), (performance.now() - started) / 1000, cold);
        const stderr = stderrOf(err);
        if (stderr !== '') this.events.functionStderr(record.name, stderr);
      }
      throw err;
    } finally {
      if (entered) state.gate.leave();
      use.inflight -= 1;
      if (use.retired && use.inflight === 0) this.unload(record.digest);
      this.inflight -= 1;
      if (this.inflight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /**
   * `listener` hears, synchronously, of every change to what calls of a function run or whether
   * they may run (deployed, updated, loaded, scaled, deleted): before the change's caller is
   * answered, so that a copy kept elsewhere (invocableFunction) is never behind an answer.
   */
  watchFunctions(listener: (name: string) => void): void {
    this.watchers.push(listener);
  }

  private changed(name: string): void {
    for (const listener of this.watchers) listener(name);
  }

  /**
   * The function as another thread may run its calls (function-table.ts), or undefined when they
   * must come here: not deployed, not loaded yet, or not runnable inline (runtime.portable).
   */
  invocableFunction(name: string): InvocableFunction | undefined {
    const record = this.store.get(name);
    const state = this.functions.get(name);
    if (record === undefined || state === undefined || state.module !== LOADED || !this.runtime.portable) return undefined;
    const limits = this.limitsOf(record);
    const module = this.runtime.portable(record.digest, limits.memoryLimitMb);
    if (module === undefined) return undefined;
    const { digest, analysis, env } = record;
    return { name, digest, memoryLimitMb: limits.memoryLimitMb, analysis, limits, env, gate: state.gate.cells, module };
  }

  /** Calls another thread ran (on invocableFunction's copy): counted and reported as run() does its own. */
  recordInvocations(calls: readonly ThreadInvocations[], stderr: readonly ThreadStderr[]): void {
    for (const batch of calls) {
      const state = this.functions.get(batch.name);
      if (state === undefined || state.removed) continue;
      state.invocations += batch.durations.count;
      // Its version's first run anywhere is the cold one (a version replaced meanwhile: not counted
      // so): of a batch, at most its first.
      const use = this.store.get(batch.name)?.digest === batch.digest ? this.useOf(batch.digest) : undefined;
      const cold = use !== undefined && !use.warm;
      if (use) use.warm = true;
      this.events.invocationBatch(batch.name, batch.outcome, batch.durations, cold ? 1 : 0);
    }
    for (const [name, text] of stderr) {
      const state = this.functions.get(name);
      if (state === undefined || state.removed) continue;
      this.events.functionStderr(name, text);
      this.logger.debug({ function: name, stderr: text }, 'function stderr');
    }
  }

  /** Another thread gave back a slot of the function's gate while calls waited for one here. */
  slotReleased(name: string): void {
    this.functions.get(name)?.gate.wake();
  }

  /** limitsOf(record), made once per record (records are replaced, never changed): shared by its calls, which only read it. */
  private callLimits(record: FunctionRecord, state: FunctionState): InvocationLimits {
    if (state.limitsRecord !== record || state.limits === undefined) {
      state.limits = this.limitsOf(record);
      state.limitsRecord = record;
    }
    return state.limits;
  }

  limitsOf(record: FunctionRecord): InvocationLimits {
    return {
      timeoutMs: record.limits.timeout_ms ?? this.defaults.timeoutMs,
      memoryLimitMb: record.limits.memory_limit_mb ?? this.defaults.memoryLimitMb,
      maxOutputBytes: record.limits.max_output_bytes ?? this.defaults.maxOutputBytes,
    };
  }

  /**
   * Hands a stored function's module to the runtime once; concurrent callers share the work.
   * `state`: the function's (an invocation running across a delete passes its own, removed one).
   */
  private prepare(record: FunctionRecord, state: FunctionState): Promise<void> {
    const current = state.module;
    if (current === LOADED) return Promise.resolve();
    if (current !== undefined) return current;
    const pending: Promise<void> = this.store
      .readBlob(record.digest)
      // The bytes were read for this load alone: the runtime may take them rather than copy them.
      .then((bytes) => this.runtime.load(record.digest, bytes, this.limitsOf(record).memoryLimitMb, true))
      .then(() => {
        // An update or delete meanwhile has decided what the function runs.
        if (state.module === pending && this.store.get(record.name)?.digest === record.digest) {
          state.module = LOADED;
          this.changed(record.name);
        }
      });
    pending.catch(() => {
      if (state.module === pending) state.module = undefined;
    });
    state.module = pending;
    return pending;
  }

  private stateOf(record: FunctionRecord): FunctionState {
    let state = this.functions.get(record.name);
    if (!state) {
      state = {
        gate: new FunctionGate(record.name, this.limitFor(record.replicas ?? 1), this.scaling.maxWaiting),
        invocations: 0,
        removed: false,
        module: undefined,
      };
      this.functions.set(record.name, state);
    }
    return state;
  }

  private useOf(digest: string): DigestUse {
    let use = this.uses.get(digest);
    if (!use) {
      use = { inflight: 0, pending: 0, retired: false, warm: false };
      this.uses.set(digest, use);
    }
    return use;
  }

  private limitFor(replicas: number): number {
    // 0 × Infinity would be NaN: zero replicas pause the function whatever the per-replica bound.
    return replicas === 0 ? 0 : replicas * this.scaling.concurrencyPerReplica;
  }

  /**
   * A deploy or update is about to load `digest` and store an entry naming it: the module is no
   * longer on its way out, and stays loaded until unhold(). Taken before the load, so that an
   * unload cannot fall between the compile and the store's write either.
   */
  private hold(digest: string): string {
    const use = this.useOf(digest);
    use.pending += 1;
    use.retired = false;
    return digest;
  }

  /** The change that held `digest` has ended: stored (kept), or failed (unloaded when unused). */
  private unhold(digest: string): void {
    // retire() never unloads a held digest, so the entry hold() made is still the one in the map.
    const use = this.uses.get(digest);
    if (!use) return;
    use.pending -= 1;
    if (use.pending === 0) this.retire(digest);
  }

  /** Unloads a module no function uses any more, once the invocations running on it have ended. */
  private retire(digest: string): void {
    if (this.store.list().some((r) => r.digest === digest)) return;
    const use = this.uses.get(digest);
    // A change on its way holds it: its unhold() retires it again if no stored entry names it then.
    if (use && use.pending > 0) return;
    if (use && use.inflight > 0) use.retired = true;
    else this.unload(digest);
  }

  private unload(digest: string): void {
    this.uses.delete(digest);
    this.runtime.unload(digest);
  }

  private async pull(image: string): ReturnType<ImageFetcher['fetch']> {
    const started = performance.now();
    try {
      const fetched = await this.fetcher.fetch(image);
      this.events.pull('success', fetched.bytes.byteLength, (performance.now() - started) / 1000);
      return fetched;
    } catch (err) {
      this.events.pull(outcomeOf(err), 0, (performance.now() - started) / 1000);
      throw err;
    }
  }

  /** Runs changes of one function's entry (update, scale) one after another. */
  private exclusive<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.changing.get(name) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.changing.set(name, settled);
    void settled.then(() => {
      if (this.changing.get(name) === settled) this.changing.delete(name);
    });
    return run;
  }

  private deployEvent(operation: DeployOperation, outcome: Outcome, started: number): void {
    this.events.deploy(operation, outcome, (performance.now() - started) / 1000);
  }

  /** The global bound: what waits for a slot and what waits for a worker, together. */
  private refuseWhenQueueFull(): void {
    const max = this.scaling.maxWaitingTotal;
    if (max === undefined) return;
    const queued = this.waiting + this.runtime.queued();
    if (queued >= max) {
      throw new EngineError('OVERLOADED', `too many invocations are waiting (${queued})`, { retryAfterSeconds: 1 });
    }
  }

  private refuseWhenClosing(): void {
    if (this.closing) throw new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 });
  }
}

function outcomeOf(err: unknown): Outcome {
  return toEngineError(err).code;
}

/**
 * The stderr a failed invocation carries: a `stderr` property when the error has one, else the
 * tail the runtime appends to a guest failure's message (`…; stderr: TAIL`, runtime/traps.ts).
 */
export function stderrOf(err: unknown): string {
  const stderr = (err as { stderr?: unknown } | null)?.stderr;
  if (typeof stderr === 'string') return stderr;
  if (err instanceof EngineError && (err.code === 'FUNCTION_FAILED' || err.code === 'FUNCTION_TIMEOUT')) {
    const at = err.message.indexOf(STDERR_MARK);
    if (at >= 0) return err.message.slice(at + STDERR_MARK.length);
  }
  return '';
}

const STDERR_MARK = '; stderr: ';

function metadata(request: DeployRequest): Pick<FunctionRecord, 'labels' | 'annotations'> {
  return {
    ...(request.labels === undefined || Object.keys(request.labels).length === 0 ? {} : { labels: { ...request.labels } }),
    ...(request.annotations === undefined || Object.keys(request.annotations).length === 0
      ? {}
      : { annotations: { ...request.annotations } }),
  };
}

function checkReplicas(replicas: number): number {
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) {
    throw new EngineError('INVALID_REQUEST', `invalid replicas ${replicas}: expected an integer from 0 to ${MAX_REPLICAS}`);
  }
  return replicas;
}

/** The largest output a function may be allowed: an answer the HTTP layer can build in both formats (README, "Output cap"). */
export const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

const LIMIT_RANGES: Record<keyof FunctionLimitsOverride, [number, number]> = {
  timeout_ms: [1, 3_600_000],
  memory_limit_mb: [1, 4096],
  max_output_bytes: [1, MAX_OUTPUT_BYTES],
};

function checkLimits(limits: FunctionLimitsOverride): FunctionLimitsOverride {
  for (const [key, [min, max]] of Object.entries(LIMIT_RANGES) as [keyof FunctionLimitsOverride, [number, number]][]) {
    const value = limits[key];
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
      throw new EngineError('INVALID_REQUEST', `invalid ${key} ${value}: expected an integer from ${min} to ${max}`);
    }
  }
  return { ...limits };
}
