/**
 * The function store: entries plus wasm blobs by digest. Kept behind these interfaces so a
 * shared-database store for several engine nodes can replace the file store without touching HTTP
 * or runtime code.
 */
import type { ModuleAnalysis } from '../runtime/types.js';

export interface FunctionLimitsOverride {
  timeout_ms?: number;
  memory_limit_mb?: number;
  max_output_bytes?: number;
}

export interface FunctionRecord {
  name: string;
  image: string;
  /** sha256:<hex> of the wasm bytes; the blob's key. */
  digest: string;
  size: number;
  /** sha256 of the manifest the image reference resolved to, when it came from a registry/layout. */
  manifestDigest?: string;
  deployedAt: string;
  analysis: ModuleAnalysis;
  limits: FunctionLimitsOverride;
  env: Record<string, string>;
  /** Free-form metadata given at deploy (the OpenFaaS API's labels and annotations), echoed back. */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Desired replicas (OpenFaaS scale): bounds the function's concurrency; 0 pauses it. Absent: 1. */
  replicas?: number;
}

export interface BlobStore {
  /** Stores bytes under their digest (crash-safe; a no-op when present). Returns the digest. */
  put(bytes: Uint8Array): Promise<string>;
  get(digest: string): Promise<Uint8Array>;
  has(digest: string): Promise<boolean>;
  remove(digest: string): Promise<void>;
  /** Where the blob lives, for `func_local_path`. */
  pathOf(digest: string): string;
  list(): Promise<string[]>;
}

export interface FunctionStore {
  /** Loads persisted state; drops blobs no function references (leftovers of an interrupted deploy). */
  open(): Promise<void>;
  list(): FunctionRecord[];
  get(name: string): FunctionRecord | undefined;
  /**
   * Reserves a name for a deploy in progress. Throws FUNCTION_EXISTS when the name is deployed or
   * reserved. The returned release() must be called when the deploy ends, whatever the outcome.
   */
  reserve(name: string): () => void;
  /** Persists a new entry whose blob is already stored; atomic: after a crash it is whole or absent. */
  insert(record: FunctionRecord, bytes: Uint8Array): Promise<void>;
  /**
   * Replaces a deployed entry with a new version under the same name (update in place); atomic like
   * insert. The old version's blob is removed when no entry uses it any more. `bytes` may be omitted
   * when the record keeps a blob already stored (a change of settings only). Returns the old entry.
   * Throws FUNCTION_NOT_FOUND.
   */
  replace(record: FunctionRecord, bytes?: Uint8Array): Promise<FunctionRecord>;
  /** Removes an entry and its blob when no other entry uses it. Throws FUNCTION_NOT_FOUND. */
  remove(name: string): Promise<FunctionRecord>;
  readBlob(digest: string): Promise<Uint8Array>;
  blobPath(digest: string): string;
  close(): Promise<void>;
  /** Present when several engines share the store (PostgreSQL): what the engine must hear and tell. */
  cluster?: ClusterStore;
}

/** A change of one function's entry the engine did not make itself (another node's, or found by a resync). */
export interface FunctionChange {
  name: string;
  /** The entry the engine held before; undefined when the function is new to it. */
  previous: FunctionRecord | undefined;
  /** The entry now; undefined when the function was deleted. */
  current: FunctionRecord | undefined;
}

export interface ClusterStore {
  /** This node's name (logs, metrics, /system/info). */
  readonly node: string;
  /** Called once by the engine, before open(): applied changes are passed on after the store's view has them. */
  onChange(listener: (change: FunctionChange) => void): void;
  /** Called once by the engine: this node's invocations per function since each was (re)deployed, read periodically. */
  countInvocations(local: () => ReadonlyMap<string, number>): void;
  /** The cluster's invocations of a function: this node's `local` count plus the others' last reported. */
  invocations(name: string, local: number): number;
  /** Sets a function's replicas in the shared entry (whatever version of it is stored now). Throws FUNCTION_NOT_FOUND. */
  setReplicas(name: string, replicas: number): Promise<FunctionRecord>;
  /** Throws UNAVAILABLE, naming the store, when it is known to be unreachable: a change would fail anyway. */
  checkWritable(): void;
}
