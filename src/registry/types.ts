/** Types of the image sources. The registry side knows nothing of the runtime. */

/** A module fetched from an image source, verified against every digest on the way. */
export interface FetchedModule {
  bytes: Uint8Array;
  /** sha256:<hex> of the manifest the reference resolved to (absent for file: sources). */
  manifestDigest?: string;
  /** Path of the .wasm file inside the image (or the file name for file: sources), for messages. */
  fileName: string;
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
