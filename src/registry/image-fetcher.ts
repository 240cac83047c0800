/**
 * The registry side's entry point: parses a reference, dispatches to its source (registry, OCI
 * layout, file), bounds the whole pull in time, and logs the outcome.
 */
import { EngineError } from '../errors.js';
import { createConnection, DEFAULT_CONNECT_TIMEOUT_MS, type ConnectionOptions } from './connection.js';
import { readModuleFile } from './file-source.js';
import { resolveModule, type ResolveLimits } from './image-resolver.js';
import { OciLayoutSource } from './oci-layout.js';
import { logTransferProgress } from './progress-log.js';
import { parseImageReference } from './reference.js';
import { RegistryImageSource } from './registry-source.js';
import type { FetchOptions, FetchedModule, ImageFetcher, ModuleCache, TransferProgress } from './types.js';

export interface ImageFetcherOptions extends ConnectionOptions {
  /** Time for a whole pull, all requests and retries included (default 60 s). */
  timeoutMs?: number;
  /** Largest image: bytes downloaded, and separately bytes unpacked (default 256 MiB). */
  maxImageBytes?: number;
  /** Most files all tar layers together may hold (default 100 000). */
  maxTarEntries?: number;
  /** Modules already stored: layers known to hold one are not downloaded again. */
  cache?: ModuleCache;
  /** Transfer progress; by default large downloads are logged at info level. */
  onProgress?: (event: TransferProgress) => void;
}

export { DEFAULT_CONNECT_TIMEOUT_MS };
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_IMAGE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_TAR_ENTRIES = 100_000;

export interface ClosableImageFetcher extends ImageFetcher {
  close(): Promise<void>;
}

export function createImageFetcher(options: ImageFetcherOptions): ClosableImageFetcher {
  const logger = options.logger;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const limits: ResolveLimits = {
    maxImageBytes: options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES,
    maxTarEntries: options.maxTarEntries ?? DEFAULT_MAX_TAR_ENTRIES,
  };
  // One connection per fetcher: tokens are reused across pulls of the same repository.
  const { transport, auth } = createConnection(options);
  const onProgress = options.onProgress ?? logTransferProgress(logger);

  async function pull(reference: string, signal: AbortSignal): Promise<FetchedModule> {
    const parsed = parseImageReference(reference);
    const resolve = { limits, logger, signal, onProgress, ...(options.cache ? { cache: options.cache } : {}) };
    switch (parsed.kind) {
      case 'file':
        return readModuleFile(parsed, limits.maxImageBytes, signal);
      case 'oci':
        return resolveModule(new OciLayoutSource(parsed), resolve);
      case 'registry':
        return resolveModule(new RegistryImageSource(parsed, transport, auth), resolve);
    }
  }

  return {
    async fetch(reference: string, fetchOptions: FetchOptions = {}): Promise<FetchedModule> {
      const started = performance.now();
      const deadline = AbortSignal.timeout(timeoutMs);
      const signal = fetchOptions.signal ? AbortSignal.any([deadline, fetchOptions.signal]) : deadline;
      try {
        const fetched = await pull(reference, signal);
        logger.info(
          {
            image: reference,
            manifestDigest: fetched.manifestDigest,
            file: fetched.fileName,
            bytes: fetched.bytes.byteLength,
            downloadedBytes: fetched.downloadedBytes,
            reusedLayers: fetched.reusedLayers,
            ms: Math.round(performance.now() - started),
          },
          'image fetched',
        );
        return fetched;
      } catch (err) {
        // Whatever broke mid-flight, an expired deadline is the cause worth reporting.
        if (deadline.aborted) {
          throw new EngineError('REGISTRY_ERROR', `pulling ${reference} took longer than ${timeoutMs} ms`, { cause: err });
        }
        if (fetchOptions.signal?.aborted) {
          throw new EngineError('REGISTRY_ERROR', `pulling ${reference} was cancelled`, { cause: err });
        }
        logger.debug({ image: reference, err }, 'image fetch failed');
        throw err;
      }
    },
    close: () => transport.close(),
  };
}
