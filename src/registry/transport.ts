/**
 * The HTTP transport to registries: which scheme a host gets (HTTPS, or plain HTTP for loopback and
 * configured insecure registries — never a silent fall-back), one undici Agent with a connect
 * timeout, bounded retries with exponential backoff (429, 5xx, reset or refused connections),
 * bounded body reads, and the translation of socket-level failures into REGISTRY_ERROR messages
 * that say what went wrong. undici's `request` is used rather than `fetch`, which refuses the Fetch
 * standard's "bad ports".
 */
import { isIPv4 } from 'node:net';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import { DOCKER_HUB } from './reference.js';

export interface TransportOptions {
  /** Registries reached over plain HTTP: `host:port` (that port only) or `host` (any port). */
  insecureRegistries: readonly string[];
  connectTimeoutMs: number;
  logger: Logger;
  /** Retries after a first attempt that failed in a way worth retrying (default 3). */
  retries?: number;
  /** First backoff; doubled each retry, with jitter (default 250 ms). */
  retryBaseDelayMs?: number;
}

export type HttpResponse = Dispatcher.ResponseData;

export interface RequestInit {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT';
  headers?: Record<string, string>;
  /** Sent as is. Only a Buffer or string can be sent again: a stream body needs `retry: false`. */
  body?: Buffer | string | Readable;
  signal: AbortSignal;
  /** Names the server in messages, e.g. `registry 127.0.0.1:5000`. */
  peer: string;
  /** Whether a failed attempt may be repeated (default: for GET and HEAD only). */
  retry?: boolean;
}

export const DEFAULT_RETRIES = 3;
const DEFAULT_RETRY_BASE_DELAY_MS = 250;
/** Backoff and Retry-After are capped: the total deadline of a pull bounds the rest. */
const MAX_RETRY_DELAY_MS = 10_000;
/** A registry that stops sending mid-answer is given up on after this (then retried or resumed). */
const STALL_TIMEOUT_MS = 30_000;
/** Answers worth asking again: rate limiting and server-side trouble that is usually brief. */
const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);
/** Network failures worth another attempt: the connection broke or the server was restarting. */
const RETRY_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function errorCode(err: unknown): string {
  const error = err as { code?: unknown; cause?: { code?: unknown } } | null;
  return String(error?.code ?? error?.cause?.code ?? '');
}

/** Whether a network failure (not an answer) is worth another attempt. */
export function isRetryableNetworkError(err: unknown): boolean {
  return RETRY_CODES.has(errorCode(err));
}

/** `Retry-After` in milliseconds (seconds or an HTTP date), if present and sane. */
function retryAfterMs(headers: HttpResponse['headers']): number | undefined {
  const value = headerValue(headers, 'retry-after');
  if (value === undefined) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Docker Hub's API lives on another host than its name. */
const DOCKER_HUB_API = 'registry-1.docker.io';

/** `host[:port]` → the bare host name, IPv6 brackets removed, lower-cased. */
export function hostName(host: string): string {
  try {
    return new URL(`http://${host}`).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  } catch {
    return host.toLowerCase();
  }
}

export function isLoopbackHost(host: string): boolean {
  const name = hostName(host);
  if (name === 'localhost' || name === '::1') return true;
  return isIPv4(name) && name.startsWith('127.');
}

function normalizeInsecureEntry(entry: string): string {
  return entry
    .trim()
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/+$/, '')
    .toLowerCase();
}

/** Socket-level failure → what a user can act on; `connecting` when no answer could even start. */
export function describeNetworkError(err: unknown, connectTimeoutMs: number): { reason: string; connecting: boolean } {
  const error = err instanceof Error ? err : new Error(String(err));
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const code = String((error as { code?: unknown }).code ?? (cause as { code?: unknown } | undefined)?.code ?? '');
  switch (code) {
    case 'ECONNREFUSED':
      return { reason: 'connection refused (is the registry running, and is the port right?)', connecting: true };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { reason: 'host name not found (DNS)', connecting: true };
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { reason: `no connection within ${connectTimeoutMs} ms`, connecting: true };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { reason: 'host unreachable', connecting: true };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { reason: 'timed out waiting for the answer', connecting: false };
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
    case 'EPIPE':
      return { reason: 'connection closed unexpectedly', connecting: false };
    default:
      break;
  }
  const message = cause?.message ?? error.message;
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/.test(code) || /certificate|ssl|tls/i.test(message)) {
    return { reason: `TLS failure: ${message}`, connecting: true };
  }
  return { reason: message || code || 'request failed', connecting: false };
}

export class RegistryTransport {
  private readonly agent: Agent;
  private readonly insecure: readonly string[];

  readonly retries: number;
  private readonly retryBaseDelayMs: number;

  constructor(private readonly options: TransportOptions) {
    this.agent = new Agent({
      connect: { timeout: options.connectTimeoutMs },
      headersTimeout: STALL_TIMEOUT_MS,
      bodyTimeout: STALL_TIMEOUT_MS,
    });
    this.insecure = options.insecureRegistries.map(normalizeInsecureEntry);
    this.retries = options.retries ?? DEFAULT_RETRIES;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
  }

  /** Waits before retry number `attempt` (1-based): exponential with jitter, or what the server asked. */
  async backoff(attempt: number, signal: AbortSignal, serverAskedMs?: number): Promise<void> {
    const exponential = this.retryBaseDelayMs * 2 ** (attempt - 1);
    // "Equal jitter" (half fixed, half random) keeps many engines from retrying in lock-step.
    const delay = serverAskedMs ?? exponential / 2 + Math.random() * (exponential / 2);
    try {
      await sleep(Math.min(delay, MAX_RETRY_DELAY_MS), undefined, { signal });
    } catch {
      // Aborted: the caller sees the aborted signal and reports the deadline or the cancellation.
    }
  }

  /** Whether `host` (`host[:port]`) may be spoken to over plain HTTP. */
  allowsPlainHttp(host: string): boolean {
    if (isLoopbackHost(host)) return true;
    const lower = host.toLowerCase();
    return this.insecure.includes(lower) || this.insecure.includes(hostName(host));
  }

  /** `https://host/` or `http://host/` for a registry name (Docker Hub mapped to its API host). */
  baseUrl(registry: string): URL {
    const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
    return new URL(`${this.allowsPlainHttp(host) ? 'http' : 'https'}://${host}/`);
  }

  /**
   * One request, repeated up to `retries` times on a retryable status or network failure when the
   * request may be repeated. The last answer is returned whatever its status; the caller judges it.
   */
  async request(url: URL, init: RequestInit): Promise<HttpResponse> {
    const method = init.method ?? 'GET';
    const replayable = init.body === undefined || typeof init.body === 'string' || Buffer.isBuffer(init.body);
    const mayRetry = replayable && (init.retry ?? (method === 'GET' || method === 'HEAD'));
    for (let attempt = 0; ; attempt += 1) {
      const last = !mayRetry || attempt >= this.retries;
      let response: HttpResponse;
      try {
        response = await request(url, {
          method,
          headers: init.headers ?? {},
          ...(init.body === undefined ? {} : { body: init.body }),
          signal: init.signal,
          dispatcher: this.agent,
        });
      } catch (err) {
        if (last || init.signal.aborted || !isRetryableNetworkError(err)) throw this.failure(err, init, attempt + 1);
        this.options.logger.debug({ method, url: `${url.origin}${url.pathname}`, attempt: attempt + 1, error: errorCode(err) }, 'registry request failed, retrying');
        await this.backoff(attempt + 1, init.signal);
        if (init.signal.aborted) throw this.failure(err, init);
        continue;
      }
      this.options.logger.debug({ method, url: `${url.origin}${url.pathname}`, status: response.statusCode }, 'registry request');
      if (last || !RETRY_STATUSES.has(response.statusCode)) return response;
      const asked = retryAfterMs(response.headers);
      await discardBody(response.body);
      this.options.logger.debug({ method, url: `${url.origin}${url.pathname}`, status: response.statusCode, attempt: attempt + 1 }, 'registry answer worth retrying');
      await this.backoff(attempt + 1, init.signal, asked);
      if (init.signal.aborted) throw this.failure(new Error('aborted'), init);
    }
  }

  /** Maps an error thrown while talking to `peer` (also while reading a body) to REGISTRY_ERROR. */
  failure(err: unknown, init: Pick<RequestInit, 'peer' | 'signal'>, attempts = 1): EngineError {
    if (err instanceof EngineError) return err;
    if (init.signal.aborted) return new EngineError('REGISTRY_ERROR', `request to ${init.peer} aborted`, { cause: err });
    const { reason, connecting } = describeNetworkError(err, this.options.connectTimeoutMs);
    const tries = attempts > 1 ? ` (${attempts} attempts)` : '';
    const message = connecting ? `cannot reach ${init.peer}: ${reason}${tries}` : `${init.peer} failed: ${reason}${tries}`;
    return new EngineError('REGISTRY_ERROR', message, { cause: err });
  }

  /** Releases every connection; requests still in flight fail (a stop must not wait on a slow registry). */
  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

/**
 * Reads a whole body, refusing more than `limit` bytes (the stream is destroyed, not drained, so
 * a hostile server cannot make us read forever).
 */
export async function readBodyLimited(body: HttpResponse['body'], limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limit) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Discards a body we do not need, so the connection can be reused; never throws. */
export async function discardBody(body: HttpResponse['body']): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    body.destroy();
  }
}

export function headerValue(headers: HttpResponse['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
