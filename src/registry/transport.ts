/**
 * The HTTP transport to registries: which scheme a host gets (HTTPS, or plain HTTP for loopback and
 * configured insecure registries), one undici Agent with a connect timeout, bounded body reads,
 * and the translation of socket-level failures into REGISTRY_ERROR messages that say what went wrong.
 * undici's `request` is used rather than `fetch`, which refuses the Fetch standard's "bad ports".
 */
import { isIPv4 } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import { DOCKER_HUB } from './reference.js';

export interface TransportOptions {
  /** Registries reached over plain HTTP: `host:port` (that port only) or `host` (any port). */
  insecureRegistries: readonly string[];
  connectTimeoutMs: number;
  logger: Logger;
}

export type HttpResponse = Dispatcher.ResponseData;

export interface RequestInit {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  signal: AbortSignal;
  /** Names the server in messages, e.g. `registry 127.0.0.1:5000`. */
  peer: string;
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

  constructor(private readonly options: TransportOptions) {
    this.agent = new Agent({ connect: { timeout: options.connectTimeoutMs } });
    this.insecure = options.insecureRegistries.map(normalizeInsecureEntry);
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

  async request(url: URL, init: RequestInit): Promise<HttpResponse> {
    const method = init.method ?? 'GET';
    try {
      const response = await request(url, {
        method,
        headers: init.headers ?? {},
        signal: init.signal,
        dispatcher: this.agent,
      });
      this.options.logger.debug({ method, url: `${url.origin}${url.pathname}`, status: response.statusCode }, 'registry request');
      return response;
    } catch (err) {
      throw this.failure(err, init);
    }
  }

  /** Maps an error thrown while talking to `peer` (also while reading a body) to REGISTRY_ERROR. */
  failure(err: unknown, init: Pick<RequestInit, 'peer' | 'signal'>): EngineError {
    if (err instanceof EngineError) return err;
    if (init.signal.aborted) return new EngineError('REGISTRY_ERROR', `request to ${init.peer} aborted`, { cause: err });
    const { reason, connecting } = describeNetworkError(err, this.options.connectTimeoutMs);
    const message = connecting ? `cannot reach ${init.peer}: ${reason}` : `${init.peer} failed: ${reason}`;
    return new EngineError('REGISTRY_ERROR', message, { cause: err });
  }

  async close(): Promise<void> {
    await this.agent.close();
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
