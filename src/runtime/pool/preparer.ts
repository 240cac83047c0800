/**
 * Deploy-time work on modules, done in worker threads so that the thread answering requests never
 * runs it: analysis, the memory and table caps, the reuse rewrite and the compile (seconds of CPU
 * for a module of a few hundred megabytes), and for a deploy a trial instance of the module under
 * the function's time limit. A compiled WebAssembly.Module posted back here shares its code with
 * the worker's, and goes on to the sandbox workers the same way.
 *
 * Jobs run one at a time per worker, on at most `workers` workers (started when needed, then kept
 * idle); more wait in order. A worker running a trial does not count against that bound (a trial
 * may take the function's whole time limit, up to an hour, and other deploys must not wait for it);
 * it is stopped after the trial when more than `workers` are left. A trial that runs past its limit
 * is stopped by terminating its worker (the only way to stop a running start function): only that
 * job fails.
 */
import { Worker } from 'node:worker_threads';
import { EngineError } from '../../errors.js';
import type { AnalyzeOptions } from '../analyze.js';
import type { AdmittedModule, ModuleAnalysis } from '../types.js';
import { ownsBuffer, type CompiledModule, type PrepareJob, type PrepareReply } from './prepare-protocol.js';
import { defaultPrepareWorkerUrl } from './worker-url.js';

export interface ModulePreparerOptions {
  /** Entry file of the worker (default: see worker-url.ts). */
  workerUrl?: URL;
  /** Workers at most (default 2: deploys are rare, and each job keeps a core busy). */
  workers?: number;
  /** Table entries a module's tables may hold in all (wasm-binary.ts withTableMaximum). */
  maxTableEntries: number;
}

/**
 * A deployed module: analysed, hashed, compiled, and its trial instance made. Its bytes are the
 * caller's own, which went to the worker and back.
 */
export interface PreparedModule extends AdmittedModule {
  compiled: CompiledModule;
}

/**
 * A worker's heap bound: the rewrites keep their bytes outside the heap, but a module with very
 * many functions makes many small objects; a worker past this dies alone (ERR_WORKER_OUT_OF_MEMORY)
 * instead of taking the process with it.
 */
const HEAP_LIMIT_MB = 1024;
const DEFAULT_WORKERS = 2;
/**
 * Deploys being prepared at once, queued ones included; more are refused with OVERLOADED. Trials
 * do not count against `workers`, so without this bound deploys of modules whose start function
 * loops would each keep a thread spinning for their whole time limit (up to an hour), and waiting
 * ones would hold their module's bytes.
 */
export const MAX_DEPLOYS_PREPARING = 8;

/**
 * Table entries a module may have in all tables, by default (--max-table-entries): the examples'
 * Rust and C modules have 5 to 125, large C++ programs tens of thousands; V8 keeps about 8 to 24
 * bytes per entry per instance, so this is at most a few MB per instance.
 */
export const DEFAULT_MAX_TABLE_ENTRIES = 100_000;

interface Job {
  message: PrepareJob;
  transfer: ArrayBuffer[];
  /** For an admit job: the trial's time limit. */
  trialMs: number | undefined;
  compiled: Extract<PrepareReply, { type: 'compiled' }> | undefined;
  resolve: (reply: Extract<PrepareReply, { type: 'compiled' }>) => void;
  reject: (err: EngineError) => void;
}

interface Slot {
  worker: Worker;
  online: boolean;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** A copy in a buffer of its own (Buffer's slice() would be a view of the same memory). */
const copyOf = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes);

export class ModulePreparer {
  private readonly slots = new Set<Slot>();
  private readonly queue: Job[] = [];
  private readonly max: number;
  private readonly workerUrl: URL;
  private nextId = 1;
  private closed = false;
  /** admit() calls not yet settled (see MAX_DEPLOYS_PREPARING). */
  private admitting = 0;

  constructor(private readonly options: ModulePreparerOptions) {
    this.max = Math.max(1, Math.floor(options.workers ?? DEFAULT_WORKERS));
    this.workerUrl = options.workerUrl ?? defaultPrepareWorkerUrl();
  }

  /**
   * Caps, rewrites and compiles a module (a restored or evicted one). Throws INVALID_FUNCTION_IMAGE.
   * `owned`: the caller gives its bytes away (they are transferred, and detached here); otherwise
   * they are copied first. A copy then a transfer, not a structured clone: cloning a large array
   * costs several times a copy on this thread.
   */
  async compile(bytes: Uint8Array, memoryLimitMb: number, owned = false): Promise<CompiledModule> {
    const sent = owned && ownsBuffer(bytes) ? bytes : copyOf(bytes);
    return (await this.submit({ bytes: sent, memoryLimitMb }, [sent.buffer as ArrayBuffer], undefined)).compiled;
  }

  /**
   * A deploy: analyses (throws what analyzeModule throws), hashes and compiles the module, then
   * makes a trial instance of it within `timeoutMs`. The bytes are transferred to the worker (no
   * copy on this thread when they own their buffer) and back: use the returned ones after.
   */
  async admit(bytes: Uint8Array, memoryLimitMb: number, analyze: AnalyzeOptions, timeoutMs: number): Promise<PreparedModule> {
    if (this.admitting >= MAX_DEPLOYS_PREPARING) {
      throw new EngineError('OVERLOADED', `too many deploys are being prepared (${this.admitting}); try again`, { retryAfterSeconds: 1 });
    }
    const sent = ownsBuffer(bytes) ? bytes : copyOf(bytes);
    this.admitting++;
    let reply: Extract<PrepareReply, { type: 'compiled' }>;
    try {
      reply = await this.submit({ bytes: sent, memoryLimitMb, admit: analyze }, [sent.buffer as ArrayBuffer], timeoutMs);
    } finally {
      this.admitting--;
    }
    return {
      compiled: reply.compiled,
      analysis: reply.analysis as ModuleAnalysis,
      digest: reply.digest as string,
      bytes: reply.bytes as Uint8Array,
    };
  }

  /** Stops every worker; jobs not finished fail with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    const stopping = new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 });
    for (const job of this.queue.splice(0)) job.reject(stopping);
    const exits: Promise<number>[] = [];
    for (const slot of [...this.slots]) {
      const job = this.retire(slot);
      job?.reject(stopping);
      exits.push(slot.worker.terminate());
    }
    await Promise.allSettled(exits);
  }

  private submit(
    fields: Omit<PrepareJob, 'id' | 'maxTableEntries'>,
    transfer: ArrayBuffer[],
    trialMs: number | undefined,
  ): Promise<Extract<PrepareReply, { type: 'compiled' }>> {
    if (this.closed) return Promise.reject(new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 }));
    return new Promise((resolve, reject) => {
      const message: PrepareJob = { id: this.nextId++, maxTableEntries: this.options.maxTableEntries, ...fields };
      this.queue.push({ message, transfer, trialMs, compiled: undefined, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      let slot: Slot | undefined;
      let counted = 0;
      for (const s of this.slots) {
        if (s.job === undefined) slot = s;
        if (s.timer === undefined) counted++;
      }
      if (!slot && counted < this.max) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift() as Job;
      slot.job = job;
      // A job in progress keeps the process alive; an idle worker does not.
      slot.worker.ref();
      try {
        slot.worker.postMessage(job.message, job.transfer);
      } catch (err) {
        slot.job = undefined;
        slot.worker.unref();
        job.reject(new EngineError('INTERNAL', `the module could not be sent to its preparation worker: ${err instanceof Error ? err.message : String(err)}`));
      }
    }
  }

  private spawn(): Slot {
    // No environment and no inherited CLI flags (see the sandbox pool's spawn).
    const worker = new Worker(this.workerUrl, { env: {}, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB } });
    worker.unref();
    const slot: Slot = { worker, online: false, job: undefined, timer: undefined };
    this.slots.add(slot);
    worker.on('online', () => {
      slot.online = true;
    });
    worker.on('message', (reply: PrepareReply) => this.onReply(slot, reply));
    worker.on('error', (err: Error) => this.onDeath(slot, err.message));
    worker.on('exit', (code: number) => this.onDeath(slot, `exited with code ${code}`));
    return slot;
  }

  private onReply(slot: Slot, reply: PrepareReply): void {
    const job = slot.job;
    if (!this.slots.has(slot) || !job || reply.id !== job.message.id) return;
    if (reply.type === 'compiled' && job.trialMs !== undefined) {
      // The worker makes the trial instance now: its time runs from here.
      job.compiled = reply;
      const limit = job.trialMs;
      slot.timer = setTimeout(() => this.onTrialTimeout(slot, limit), limit);
      // No longer counted against the bound: a waiting job may start on another worker.
      this.pump();
      return;
    }
    this.release(slot);
    if (reply.type === 'failed') job.reject(new EngineError(reply.code, reply.message));
    else if (reply.type === 'compiled') job.resolve(reply);
    else job.resolve(job.compiled as Extract<PrepareReply, { type: 'compiled' }>);
  }

  private onTrialTimeout(slot: Slot, limitMs: number): void {
    const job = this.retire(slot);
    void slot.worker.terminate();
    job?.reject(
      new EngineError('INVALID_FUNCTION_IMAGE', `the module's start function (its instantiation) ran past the time limit of ${limitMs} ms`),
    );
    this.pump();
  }

  private onDeath(slot: Slot, reason: string): void {
    if (!this.slots.has(slot)) return;
    const online = slot.online;
    const job = this.retire(slot);
    job?.reject(
      online
        ? new EngineError('INVALID_FUNCTION_IMAGE', `preparing the module stopped its worker: ${reason}`)
        : new EngineError('INTERNAL', `the module preparation worker could not start: ${reason}`),
    );
    this.pump();
  }

  /** The worker is free for the next job (or stopped, when more than the bound are left). */
  private release(slot: Slot): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.job = undefined;
    slot.worker.unref();
    if (this.slots.size > this.max && this.queue.length === 0) {
      this.retire(slot);
      void slot.worker.terminate();
      return;
    }
    this.pump();
  }

  /** Takes a worker out of service (its later events are ignored); returns the job it had. */
  private retire(slot: Slot): Job | undefined {
    clearTimeout(slot.timer);
    this.slots.delete(slot);
    const job = slot.job;
    slot.job = undefined;
    return job;
  }
}
