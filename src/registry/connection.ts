/**
 * What pull and push share: one transport (scheme policy, connect timeout, retries) and one
 * authenticator (tokens cached across requests until they expire) per client.
 */
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ChallengeAuthenticator, anonymousCredentials, type CredentialProvider } from './auth.js';
import { RegistryTransport, readBodyLimited } from './transport.js';

export interface ConnectionOptions {
  logger: Logger;
  /** Registries spoken to over plain HTTP: `host:port`, or `host` for any port. Loopback always is. */
  insecureRegistries?: readonly string[];
  /** Where registry credentials come from; anonymous by default. */
  credentials?: CredentialProvider;
  /** Time to establish a connection (default 5 s). */
  connectTimeoutMs?: number;
  /** Retries of a request that failed in a way worth retrying (default 3). */
  retries?: number;
  /** First retry delay, doubled each time (default 250 ms); tests shorten it. */
  retryBaseDelayMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Token answers are small JSON documents. */
const MAX_TOKEN_BODY = 1024 * 1024;

export interface RegistryConnection {
  transport: RegistryTransport;
  auth: ChallengeAuthenticator;
}

export function createConnection(options: ConnectionOptions): RegistryConnection {
  const logger = options.logger;
  const transport = new RegistryTransport({
    insecureRegistries: options.insecureRegistries ?? [],
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    logger,
    ...(options.retries === undefined ? {} : { retries: options.retries }),
    ...(options.retryBaseDelayMs === undefined ? {} : { retryBaseDelayMs: options.retryBaseDelayMs }),
  });
  const auth = new ChallengeAuthenticator({
    credentials: options.credentials ?? anonymousCredentials,
    allowsPlainHttp: (host) => transport.allowsPlainHttp(host),
    logger,
    requestToken: async (tokenRequest, signal) => {
      const init = { signal, peer: `token service ${tokenRequest.url.host}` };
      const response = await transport.request(tokenRequest.url, {
        ...init,
        method: tokenRequest.method,
        headers: tokenRequest.headers,
        ...(tokenRequest.body === undefined ? {} : { body: tokenRequest.body }),
        // A token request has no side effect: asking again is safe, POST included.
        retry: true,
      });
      let body: Buffer | undefined;
      try {
        body = await readBodyLimited(response.body, MAX_TOKEN_BODY);
      } catch (err) {
        throw transport.failure(err, init);
      }
      if (!body) throw new EngineError('REGISTRY_ERROR', `token service ${tokenRequest.url.host} answered with more than ${MAX_TOKEN_BODY} bytes`);
      return { statusCode: response.statusCode, body };
    },
  });
  return { transport, auth };
}
