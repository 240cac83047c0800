/**
 * The engine's operations — deploy, delete, list, query, invoke — over the store, the image
 * fetcher and the runtime. What the HTTP API and any other front end call; knows nothing of HTTP.
 */
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ImageFetcher } from '../registry/types.js';
import { analyzeModule, normalizeArgs } from '../runtime/index.js';
import type { FunctionRuntime, InvocationLimits, InvocationResult } from '../runtime/index.js';
import { sha256Digest } from '../store/index.js';
import type { FunctionLimitsOverride, FunctionRecord, FunctionStore } from '../store/index.js';
import { checkFunctionName } from './function-name.js';

export interface DeployRequest {
  name: string;
  image: string;
  /** Omitted: decided from the module's imports. */
  wasiCap?: boolean;
  entrypoint?: string;
  limits?: FunctionLimitsOverride;
  env?: Record<string, string>;
}

export interface InvokeRequest {
  name: string;
  /** The request's `args` as sent: an object, an array, or undefined. */
  args: unknown;
  stdin?: Uint8Array;
  signal?: AbortSignal;
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
}

export class Engine {
  private readonly store: FunctionStore;
  private readonly fetcher: ImageFetcher;
  private readonly runtime: FunctionRuntime;
  private readonly defaults: EngineDefaults;
  private readonly logger: Logger;
  private readonly checkImageReference: (reference: string) => void;
  /** Per function: its module compiled and handed to the runtime (or being so). */
  private readonly ready = new Map<string, Promise<void>>();

  constructor(parts: EngineParts) {
    this.store = parts.store;
    this.fetcher = parts.fetcher;
    this.runtime = parts.runtime;
    this.defaults = parts.defaults;
    this.logger = parts.logger;
    this.checkImageReference = parts.checkImageReference;
  }

  /** Opens the store and starts compiling every restored function in the background. */
  async restore(): Promise<number> {
    await this.store.open();
    const records = this.store.list();
    for (const record of records) {
      this.prepare(record).catch((err: unknown) => {
        this.logger.error({ function: record.name, err }, 'restored function failed to compile');
      });
    }
    return records.length;
  }

  /** Resolves when every restored function is compiled (failures are logged, not thrown). */
  async whenAllReady(): Promise<void> {
    await Promise.allSettled([...this.ready.values()]);
  }

  list(): FunctionRecord[] {
    return this.store.list();
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
    checkFunctionName(request.name);
    this.checkImageReference(request.image);
    const limits = checkLimits(request.limits ?? {});
    const release = this.store.reserve(request.name);
    const started = performance.now();
    try {
      const fetched = await this.fetcher.fetch(request.image);
      const analysis = analyzeModule(fetched.bytes, {
        functionName: request.name,
        ...(request.wasiCap === undefined ? {} : { wasiCap: request.wasiCap }),
        ...(request.entrypoint === undefined ? {} : { entrypoint: request.entrypoint }),
      });
      const digest = sha256Digest(fetched.bytes);
      const record: FunctionRecord = {
        name: request.name,
        image: request.image,
        digest,
        size: fetched.bytes.byteLength,
        ...(fetched.manifestDigest === undefined ? {} : { manifestDigest: fetched.manifestDigest }),
        deployedAt: new Date().toISOString(),
        analysis,
        limits,
        env: request.env ?? {},
      };
      // Compile before persisting: a module the runtime refuses never becomes a deployed function.
      await this.runtime.load(digest, fetched.bytes, this.limitsOf(record).memoryLimitMb);
      await this.store.insert(record, fetched.bytes);
      this.ready.set(record.name, Promise.resolve());
      this.logger.info(
        { function: record.name, image: record.image, digest, abi: analysis.abi, ms: Math.round(performance.now() - started) },
        'function deployed',
      );
      return record;
    } finally {
      release();
    }
  }

  async delete(name: string): Promise<FunctionRecord> {
    const record = await this.store.remove(name);
    this.ready.delete(name);
    if (!this.store.list().some((r) => r.digest === record.digest)) this.runtime.unload(record.digest);
    this.logger.info({ function: name }, 'function deleted');
    return record;
  }

  async invoke(request: InvokeRequest): Promise<InvocationResult> {
    const record = this.query(request.name);
    const args = normalizeArgs(request.args);
    await this.prepare(record);
    const result = await this.runtime.invoke(
      {
        digest: record.digest,
        analysis: record.analysis,
        args,
        limits: this.limitsOf(record),
        env: record.env,
        ...(request.stdin === undefined ? {} : { stdin: request.stdin }),
      },
      request.signal,
    );
    if (result.stderr !== '') this.logger.debug({ function: record.name, stderr: result.stderr }, 'function stderr');
    return result;
  }

  limitsOf(record: FunctionRecord): InvocationLimits {
    return {
      timeoutMs: record.limits.timeout_ms ?? this.defaults.timeoutMs,
      memoryLimitMb: record.limits.memory_limit_mb ?? this.defaults.memoryLimitMb,
      maxOutputBytes: record.limits.max_output_bytes ?? this.defaults.maxOutputBytes,
    };
  }

  /** Hands a stored function's module to the runtime once; concurrent callers share the work. */
  private prepare(record: FunctionRecord): Promise<void> {
    let pending = this.ready.get(record.name);
    if (!pending) {
      pending = this.store
        .readBlob(record.digest)
        .then((bytes) => this.runtime.load(record.digest, bytes, this.limitsOf(record).memoryLimitMb));
      // A failed load is retried by the next call rather than remembered forever.
      pending.catch(() => this.ready.delete(record.name));
      this.ready.set(record.name, pending);
    }
    return pending;
  }
}

const LIMIT_RANGES: Record<keyof FunctionLimitsOverride, [number, number]> = {
  timeout_ms: [1, 3_600_000],
  memory_limit_mb: [1, 4096],
  max_output_bytes: [1, 1024 * 1024 * 1024],
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
