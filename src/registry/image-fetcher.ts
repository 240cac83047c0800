/**
 * The registry side's entry point: parses a reference, dispatches to its source (registry, OCI
 * layout, file), bounds the whole pull in time, and logs the outcome.
 */
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ChallengeAuthenticator, anonymousCredentials, type CredentialProvider } from './auth.js';
import { readModuleFile } from './file-source.js';
import { resolveModule, type ResolveLimits } from './image-resolver.js';
import { OciLayoutSource } from './oci-layout.js';
import { parseImageReference } from './reference.js';
import { RegistryImageSource } from './registry-source.js';
import { RegistryTransport, readBodyLimited } from './transport.js';
import type { FetchOptions, FetchedModule, ImageFetcher } from './types.js';

export interface ImageFetcherOptions {
  logger: Logger;
  /** Registries spoken to over plain HTTP: `host:port`, or `host` for any port. Loopback always is. */
  insecureRegistries?: readonly string[];
  /** Where registry credentials come from; anonymous by default. */
  credentials?: CredentialProvider;
  /** Time to establish a connection (default 5 s). */
  connectTimeoutMs?: number;
  /** Time for a whole pull, all requests included (default 60 s). */
  timeoutMs?: number;
  /** Largest image: bytes downloaded, and separately bytes unpacked (default 256 MiB). */
  maxImageBytes?: number;
  /** Most files all tar layers together may hold (default 100 000). */
  maxTarEntries?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_IMAGE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_TAR_ENTRIES = 100_000;
/** Token answers are small JSON documents. */
const MAX_TOKEN_BODY = 1024 * 1024;

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
  const transport = new RegistryTransport({
    insecureRegistries: options.insecureRegistries ?? [],
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    logger,
  });
  // One authenticator per fetcher: tokens are reused across pulls of the same repository.
  const auth = new ChallengeAuthenticator({
    credentials: options.credentials ?? anonymousCredentials,
    allowsPlainHttp: (host) => transport.allowsPlainHttp(host),
    logger,
    requestToken: async (url, authorization, signal) => {
      const init = { signal, peer: `token service ${url.host}` };
      const response = await transport.request(url, { ...init, headers: authorization ? { authorization } : {} });
      let body: Buffer | undefined;
      try {
        body = await readBodyLimited(response.body, MAX_TOKEN_BODY);
      } catch (err) {
        throw transport.failure(err, init);
      }
      if (!body) throw new EngineError('REGISTRY_ERROR', `token service ${url.host} answered with more than ${MAX_TOKEN_BODY} bytes`);
      return { statusCode: response.statusCode, body };
    },
  });

  async function pull(reference: string, signal: AbortSignal): Promise<FetchedModule> {
    const parsed = parseImageReference(reference);
    switch (parsed.kind) {
      case 'file':
        return readModuleFile(parsed, limits.maxImageBytes);
      case 'oci':
        return resolveModule(new OciLayoutSource(parsed), limits, logger, signal);
      case 'registry':
        return resolveModule(new RegistryImageSource(parsed, transport, auth), limits, logger, signal);
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
