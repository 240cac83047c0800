/**
 * Registry authentication: answers a 401's challenge and remembers the answer per repository so
 * later requests carry it up front. Bearer (the distribution token protocol: anonymous, Basic
 * credentials, or an OAuth2 identity token traded at the token service) and Basic. Where
 * credentials come from is a separate seam, `CredentialProvider` (see credentials.ts).
 *
 * Secrets never leave this file except in the Authorization headers it returns: messages and logs
 * name the user and where the credentials came from, never a password or a token.
 */
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AuthChallenge } from './www-authenticate.js';

export interface RegistryCredentials {
  username: string;
  password: string;
  /**
   * An OAuth2 refresh token (Docker's `identitytoken`, or a helper answering user `<token>`),
   * traded at the token service instead of sending the password.
   */
  identityToken?: string;
  /** Where these came from, for messages (never the secret), e.g. `Docker config /home/u/.docker/config.json`. */
  source?: string;
}

/** The credentials seam: given a registry (host[:port]; Docker Hub is `docker.io`), its credentials. */
export interface CredentialProvider {
  credentialsFor(registry: string): Promise<RegistryCredentials | undefined>;
  /** Where the provider looks, for "no credentials found" messages. */
  readonly description?: string;
}

export const anonymousCredentials: CredentialProvider = {
  credentialsFor: async () => undefined,
};

/** Credentials from a fixed table keyed by registry, e.g. from the engine's configuration. */
export function staticCredentials(table: Record<string, RegistryCredentials>, source = 'the engine configuration'): CredentialProvider {
  return {
    credentialsFor: async (registry) => {
      const found = table[registry];
      return found ? { source, ...found } : undefined;
    },
    description: source,
  };
}

/** What a refusal message says was tried, e.g. `user "alice" from Docker config /x/config.json`. */
export function describeCredentials(credentials: RegistryCredentials): string {
  const named = credentials.username !== '' && credentials.username !== '<token>';
  const who = credentials.identityToken !== undefined
    ? `an identity token${named ? ` of user "${credentials.username}"` : ''}`
    : `user "${credentials.username}"`;
  return credentials.source ? `${who} from ${credentials.source}` : who;
}

export interface AuthHttpResponse {
  statusCode: number;
  body: Buffer;
}

export interface TokenRequest {
  url: URL;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

/** Performs a token request; supplied by the transport so auth knows nothing of sockets. */
export type TokenRequester = (request: TokenRequest, signal: AbortSignal) => Promise<AuthHttpResponse>;

/** What a request needs: reading an image, or also writing to its repository. */
export type RegistryAccess = 'pull' | 'push';

export interface Authenticator {
  /** The Authorization value to send up front for this repository, if an earlier challenge gave one. */
  authorizationFor(registry: string, repository: string, access?: RegistryAccess): string | undefined;
  /**
   * Answers a 401's challenges with the Authorization value to retry with. Throws
   * REGISTRY_AUTH_FAILED when it cannot (no credentials for Basic, token service refused).
   */
  respond(challenges: AuthChallenge[], registry: string, repository: string, signal: AbortSignal, access?: RegistryAccess): Promise<string>;
  /** Drops what was remembered for the repository (the registry refused it). */
  forget(registry: string, repository: string, access?: RegistryAccess): void;
  /** What the last answer for this repository sent, for refusal messages (never the secret). */
  attempted(registry: string, repository: string, access?: RegistryAccess): string;
  /** Where credentials are looked for, for messages when none were found. */
  readonly sources?: string;
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
/** Sent as `client_id` in OAuth2 token requests, as the protocol asks clients to identify themselves. */
const CLIENT_ID = 'wasm-engine';

type Remembered = { kind: 'basic'; authorization: string; tried: string } | { kind: 'bearer'; tokenKey: string; tried: string };

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
  readonly sources: string | undefined;

  constructor(private readonly options: ChallengeAuthenticatorOptions) {
    this.now = options.now ?? Date.now;
    this.sources = options.credentials.description;
  }

  private key(registry: string, repository: string, access: RegistryAccess): string {
    return `${registry}/${repository}#${access}`;
  }

  authorizationFor(registry: string, repository: string, access: RegistryAccess = 'pull'): string | undefined {
    const entry = this.remembered.get(this.key(registry, repository, access));
    if (!entry) return undefined;
    if (entry.kind === 'basic') return entry.authorization;
    const token = this.tokens.get(entry.tokenKey);
    if (!token || token.expiresAt <= this.now()) return undefined;
    return token.authorization;
  }

  forget(registry: string, repository: string, access: RegistryAccess = 'pull'): void {
    const key = this.key(registry, repository, access);
    const entry = this.remembered.get(key);
    if (entry?.kind === 'bearer') this.tokens.delete(entry.tokenKey);
    this.remembered.delete(key);
  }

  attempted(registry: string, repository: string, access: RegistryAccess = 'pull'): string {
    return this.remembered.get(this.key(registry, repository, access))?.tried ?? 'no credentials';
  }

  async respond(
    challenges: AuthChallenge[],
    registry: string,
    repository: string,
    signal: AbortSignal,
    access: RegistryAccess = 'pull',
  ): Promise<string> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) return this.respondBearer(bearer, registry, repository, signal, access);
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (basic) return this.respondBasic(registry, repository, access);
    const schemes = challenges.map((c) => c.scheme).join(', ') || 'none';
    throw authFailed(`registry ${registry} requires authentication with a scheme this engine does not support (${schemes})`);
  }

  /** Keeps the token cache from growing with every repository a long-running engine ever pulled. */
  private pruneExpired(): void {
    const now = this.now();
    for (const [key, token] of this.tokens) if (token.expiresAt <= now) this.tokens.delete(key);
  }

  private async respondBasic(registry: string, repository: string, access: RegistryAccess): Promise<string> {
    const credentials = await this.options.credentials.credentialsFor(registry);
    if (!credentials) {
      const where = this.options.credentials.description;
      throw authFailed(
        `registry ${registry} requires credentials (Basic authentication) for repository ${repository} and ` +
          (where ? `none were found (looked in: ${where})` : 'none are configured'),
      );
    }
    const authorization = basicAuthorization(credentials);
    this.remembered.set(this.key(registry, repository, access), { kind: 'basic', authorization, tried: describeCredentials(credentials) });
    return authorization;
  }

  private async respondBearer(
    challenge: AuthChallenge,
    registry: string,
    repository: string,
    signal: AbortSignal,
    access: RegistryAccess,
  ): Promise<string> {
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
    // The registry's scope says what it wants; without one, ask for what we are about to do. A push
    // asks for pull and push up front, as docker does, rather than being challenged twice.
    const wanted = access === 'push' ? `repository:${repository}:pull,push` : `repository:${repository}:pull`;
    const given = challenge.params.scope;
    const scope = given === undefined || (access === 'push' && !/\bpush\b/.test(given)) ? wanted : given;
    const credentials = await this.options.credentials.credentialsFor(registry);
    const tried = credentials ? `a token for ${describeCredentials(credentials)}` : 'an anonymous token';
    const tokenKey = `${url.href}|${service ?? ''}|${scope}|${credentials ? describeCredentials(credentials) : ''}`;
    const key = this.key(registry, repository, access);
    const cached = this.tokens.get(tokenKey);
    if (cached && cached.expiresAt > this.now()) {
      this.remembered.set(key, { kind: 'bearer', tokenKey, tried });
      return cached.authorization;
    }

    const scopes = scope.split(' ').filter(Boolean);
    let request: TokenRequest;
    if (credentials?.identityToken !== undefined) {
      // OAuth2 refresh-token grant (docker's distribution token protocol, "oauth" flavour).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.identityToken, client_id: CLIENT_ID });
      if (service !== undefined) form.set('service', service);
      form.set('scope', scopes.join(' '));
      request = { url, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() };
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const one of scopes) url.searchParams.append('scope', one);
      request = { url, method: 'GET', headers: credentials ? { authorization: basicAuthorization(credentials) } : {} };
    }
    const started = this.now();
    const response = await this.options.requestToken(request, signal);
    const where = `token service ${url.origin} of registry ${registry}`;
    if (response.statusCode === 401 || response.statusCode === 403) {
      throw authFailed(`${where} refused ${tried} for repository ${repository} (HTTP ${response.statusCode})`);
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
    this.remembered.set(key, { kind: 'bearer', tokenKey, tried });
    // The token itself is never logged: only what it is for.
    this.options.logger.debug({ registry, repository, scope, expiresIn, credential: tried }, 'registry token obtained');
    return authorization;
  }
}
