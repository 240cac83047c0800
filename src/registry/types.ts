/** Types of the image sources. The registry side knows nothing of the runtime. */

/** A module fetched from an image source, verified against every digest on the way. */
export interface FetchedModule {
  bytes: Uint8Array;
  /** sha256:<hex> of the manifest the reference resolved to (absent for file: sources). */
  manifestDigest?: string;
  /** Path of the .wasm file inside the image (or the file name for file: sources), for messages. */
  fileName: string;
  /** Blob bytes actually transferred (layers found in the module cache are not). */
  downloadedBytes?: number;
  /** Layers taken from the module cache instead of being downloaded. */
  reusedLayers?: number;
}

/** One step of a blob transfer, for progress bars (CLI) and progress lines (engine log). */
export interface TransferProgress {
  direction: 'upload' | 'download';
  /** `skipped`: not transferred at all (already on the registry, or already stored here). */
  phase: 'start' | 'progress' | 'done' | 'skipped';
  digest: string;
  total: number;
  done: number;
}

export interface FetchOptions {
  signal?: AbortSignal;
}

/** Fetches the one .wasm module an image reference names: registry, `oci:PATH[:tag]` or `file:PATH`. */
export interface ImageFetcher {
  fetch(reference: string, options?: FetchOptions): Promise<FetchedModule>;
  /** Releases pooled connections; optional so test doubles need not implement it. */
  close?(): Promise<void>;
}

/**
 * Modules the engine already keeps (by sha256 of the module), and what earlier pulls learned about
 * layers, so a layer whose module is stored is not downloaded again. A layer whose blob IS the
 * module needs no note: its digest is the module's. A tar layer's note says which modules it holds.
 * Notes are opaque JSON to the store; the registry side validates them on read.
 */
export interface ModuleCache {
  /** The stored module with this digest, or undefined. */
  module(digest: string): Promise<Uint8Array | undefined>;
  layerNote(layerDigest: string): Promise<unknown>;
  rememberLayer(layerDigest: string, note: unknown): Promise<void>;
  forgetLayer(layerDigest: string): Promise<void>;
}
