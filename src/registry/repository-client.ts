/**
 * Requests to one repository of one registry, with the authentication dance: credentials the
 * authenticator remembered go up front, a 401 is answered once (its challenge, then the request
 * again), and refusals become errors naming the registry, the repository and what was tried.
 * Shared by pull (registry-source.ts) and push (push/pusher.ts).
 */
import { EngineError } from '../errors.js';
import type { Authenticator, RegistryAccess } from './auth.js';
import type { RegistryReference } from './reference.js';
import { registryAnswerError } from './registry-errors.js';
import { discardBody, readBodyLimited, type HttpResponse, type RegistryTransport, type RequestInit } from './transport.js';
import { parseWwwAuthenticate } from './www-authenticate.js';

/** Error bodies are read for their message only. */
const MAX_ERROR_BODY = 64 * 1024;

export interface SendOptions {
  method?: RequestInit['method'];
  headers?: Record<string, string>;
  body?: Buffer;
  access?: RegistryAccess;
  retry?: boolean;
  signal: AbortSignal;
}

export class RepositoryClient {
  readonly registry: string;
  readonly repository: string;
  /** `registry HOST`, as messages name the peer. */
  readonly origin: string;
  readonly base: URL;

  constructor(
    reference: Pick<RegistryReference, 'registry' | 'repository'>,
    readonly transport: RegistryTransport,
    readonly auth: Authenticator,
  ) {
    this.registry = reference.registry;
    this.repository = reference.repository;
    this.origin = `registry ${reference.registry}`;
    this.base = transport.baseUrl(reference.registry);
  }

  /** `/v2/REPOSITORY/PATH` on this registry. */
  url(path: string): URL {
    return new URL(`v2/${this.repository}/${path}`, this.base);
  }

  error(message: string): EngineError {
    return new EngineError('REGISTRY_ERROR', `registry ${this.registry} ${message}`);
  }

  /** The Authorization to send to `url`: only ever to the registry's own origin. */
  authorizationFor(url: URL, access: RegistryAccess = 'pull'): string | undefined {
    return url.origin === this.base.origin ? this.auth.authorizationFor(this.registry, this.repository, access) : undefined;
  }

  /** One registry request, answering at most one authentication challenge. */
  async send(url: URL, options: SendOptions): Promise<HttpResponse> {
    const access = options.access ?? 'pull';
    let authorization = this.authorizationFor(url, access);
    for (let answered = false; ; answered = true) {
      const headers: Record<string, string> = { ...options.headers };
      if (authorization !== undefined) headers.authorization = authorization;
      const response = await this.transport.request(url, {
        ...(options.method === undefined ? {} : { method: options.method }),
        headers,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(options.retry === undefined ? {} : { retry: options.retry }),
        signal: options.signal,
        peer: this.origin,
      });
      // A second 401 means our fresh answer was refused: the caller reports it.
      if (response.statusCode !== 401 || answered) return response;
      const challenges = parseWwwAuthenticate(response.headers['www-authenticate']);
      await discardBody(response.body);
      if (authorization !== undefined) this.auth.forget(this.registry, this.repository, access);
      authorization = await this.auth.respond(challenges, this.registry, this.repository, options.signal, access);
    }
  }

  /** Throws the error an unexpected answer deserves (reading its body for the message). */
  async ensureStatus(response: HttpResponse, expected: readonly number[], what: string, access: RegistryAccess = 'pull'): Promise<void> {
    if (expected.includes(response.statusCode)) return;
    let body: Buffer | undefined;
    try {
      body = await readBodyLimited(response.body, MAX_ERROR_BODY);
    } catch {
      body = undefined; // the status alone still says enough
    }
    throw registryAnswerError(response.statusCode, body, {
      registry: this.registry,
      repository: this.repository,
      what,
      credential: this.auth.attempted(this.registry, this.repository, access),
      ...(this.auth.sources === undefined ? {} : { sources: this.auth.sources }),
    });
  }
}
