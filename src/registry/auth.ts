/**
 * Registry authentication: answers a 401's challenge and remembers the answer per repository so
 * later requests carry it up front. Bearer (the distribution token protocol, anonymous unless
 * credentials are configured) and Basic. Where credentials come from is a separate seam,
 * `CredentialProvider`: anonymous by default; configuration and Docker's config.json plug in there.
 */
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AuthChallenge } from './www-authenticate.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

/** The credentials seam: given a registry (host[:port]; Docker Hub is `docker.io`), its credentials. */
export interface CredentialProvider {
  credentialsFor(registry: string): Promise<RegistryCredentials | undefined>;
}

export const anonymousCredentials: CredentialProvider = {
  credentialsFor: async () => undefined,
};

/** Credentials from a fixed table keyed by registry, e.g. from the engine's configuration. */
export function staticCredentials(table: Record<string, RegistryCredentials>): CredentialProvider {
  return { credentialsFor: async (registry) => table[registry] };
}

export interface AuthHttpResponse {
  statusCode: number;
  body: Buffer;
}

/** Performs the token GET; supplied by the transport so auth knows nothing of sockets. */
export type TokenRequester = (url: URL, authorization: string | undefined, signal: AbortSignal) => Promise<AuthHttpResponse>;

export interface Authenticator {
  /** The Authorization value to send up front for this repository, if an earlier challenge gave one. */
  authorizationFor(registry: string, repository: string): string | undefined;
  /**
   * Answers a 401's challenges with the Authorization value to retry with. Throws
   * REGISTRY_AUTH_FAILED when it cannot (no credentials for Basic, token service refused).
   */
  respond(challenges: AuthChallenge[], registry: string, repository: string, signal: AbortSignal): Promise<string>;
  /** Drops what was remembered for the repository (the registry refused it). */
  forget(registry: string, repository: string): void;
}

export interface ChallengeAuthenticatorOptions {
  credentials: CredentialProvider;
  requestToken: TokenRequester;
  /** Whether plain HTTP may be used to reach `host` (the transport's policy, applied to token realms too). */
  allowsPlainHttp: (host: string) => boolean;
  logger: Logger;
  now?: () => number;
}

/** The token protocol's default lifetime and floor ("if expires_in < 60, assume 60"). */
const MIN_TOKEN_SECONDS = 60;
/** Renew this much early so a token does not expire on its way to the registry. */
const EXPIRY_MARGIN_MS = 10_000;

type Remembered = { kind: 'basic'; authorization: string } | { kind: 'bearer'; tokenKey: string };

function basicAuthorization(credentials: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`;
}

function authFailed(message: string): EngineError {
  return new EngineError('REGISTRY_AUTH_FAILED', message);
}

export class ChallengeAuthenticator implements Authenticator {
  private readonly remembered = new Map<string, Remembered>();
  private readonly tokens = new Map<string, { authorization: string; expiresAt: number }>();
  private readonly now: () => number;

  constructor(private readonly options: ChallengeAuthenticatorOptions) {
    this.now = options.now ?? Date.now;
  }

  authorizationFor(registry: string, repository: string): string | undefined {
    const entry = this.remembered.get(`${registry}/${repository}`);
    if (!entry) return undefined;
    if (entry.kind === 'basic') return entry.authorization;
    const token = this.tokens.get(entry.tokenKey);
    if (!token || token.expiresAt <= this.now()) return undefined;
    return token.authorization;
  }

  forget(registry: string, repository: string): void {
    const key = `${registry}/${repository}`;
    const entry = this.remembered.get(key);
    if (entry?.kind === 'bearer') this.tokens.delete(entry.tokenKey);
    this.remembered.delete(key);
  }

  async respond(challenges: AuthChallenge[], registry: string, repository: string, signal: AbortSignal): Promise<string> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) return this.respondBearer(bearer, registry, repository, signal);
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (basic) return this.respondBasic(registry, repository);
    const schemes = challenges.map((c) => c.scheme).join(', ') || 'none';
    throw authFailed(`registry ${registry} requires authentication with a scheme this engine does not support (${schemes})`);
  }

  /** Keeps the token cache from growing with every repository a long-running engine ever pulled. */
  private pruneExpired(): void {
    const now = this.now();
    for (const [key, token] of this.tokens) if (token.expiresAt <= now) this.tokens.delete(key);
  }

  private async respondBasic(registry: string, repository: string): Promise<string> {
    const credentials = await this.options.credentials.credentialsFor(registry);
    if (!credentials) {
      throw authFailed(`registry ${registry} requires credentials (Basic authentication) and none are configured for it`);
    }
    const authorization = basicAuthorization(credentials);
    this.remembered.set(`${registry}/${repository}`, { kind: 'basic', authorization });
    return authorization;
  }

  private async respondBearer(challenge: AuthChallenge, registry: string, repository: string, signal: AbortSignal): Promise<string> {
    const { realm, service } = challenge.params;
    if (!realm) throw new EngineError('REGISTRY_ERROR', `registry ${registry} sent a Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new EngineError('REGISTRY_ERROR', `registry ${registry} sent a Bearer challenge with an invalid realm ${JSON.stringify(realm)}`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.options.allowsPlainHttp(url.host))) {
      throw new EngineError(
        'REGISTRY_ERROR',
        `registry ${registry} points to token service ${url.origin}, which is neither HTTPS nor a loopback or insecure registry`,
      );
    }
    // The registry's scope says what it wants; without one, ask for pull on the repository.
    const scope = challenge.params.scope ?? `repository:${repository}:pull`;
    const tokenKey = `${url.href}|${service ?? ''}|${scope}`;
    const cached = this.tokens.get(tokenKey);
    if (cached && cached.expiresAt > this.now()) {
      this.remembered.set(`${registry}/${repository}`, { kind: 'bearer', tokenKey });
      return cached.authorization;
    }

    if (service !== undefined) url.searchParams.set('service', service);
    for (const one of scope.split(' ').filter(Boolean)) url.searchParams.append('scope', one);
    const credentials = await this.options.credentials.credentialsFor(registry);
    const started = this.now();
    const response = await this.options.requestToken(url, credentials ? basicAuthorization(credentials) : undefined, signal);
    const where = `token service ${url.origin} of registry ${registry}`;
    if (response.statusCode === 401 || response.statusCode === 403) {
      throw authFailed(`${where} refused ${credentials ? 'the configured credentials' : 'an anonymous token'} (HTTP ${response.statusCode})`);
    }
    if (response.statusCode !== 200) {
      throw new EngineError('REGISTRY_ERROR', `${where} answered HTTP ${response.statusCode}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(response.body.toString('utf8'));
    } catch {
      throw new EngineError('REGISTRY_ERROR', `${where} answered with something that is not JSON`);
    }
    const record = typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {};
    const token = typeof record.token === 'string' && record.token !== '' ? record.token : record.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new EngineError('REGISTRY_ERROR', `${where} answered without a token`);
    }
    const expiresIn = typeof record.expires_in === 'number' && record.expires_in > MIN_TOKEN_SECONDS ? record.expires_in : MIN_TOKEN_SECONDS;
    // Expiry counts from when we asked, on our clock: issued_at is the server's clock.
    const authorization = `Bearer ${token}`;
    this.pruneExpired();
    this.tokens.set(tokenKey, { authorization, expiresAt: started + expiresIn * 1000 - EXPIRY_MARGIN_MS });
    this.remembered.set(`${registry}/${repository}`, { kind: 'bearer', tokenKey });
    this.options.logger.debug({ registry, repository, scope, expiresIn, anonymous: !credentials }, 'registry token obtained');
    return authorization;
  }
}
