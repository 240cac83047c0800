/**
 * The raw data plane: `/function/{name}[/{path}]`, any method, as OpenFaaS's gateway and classic
 * watchdog speak it. The request body, query and CGI-style `Http_*` variables go to the engine's
 * invokeRaw (which decides what they mean per ABI); the output is the response body.
 *
 * The static routes `/function/deploy` etc. are matched before this parametric one, and their
 * names are reserved, so a reserved word here is an unknown route as it was before.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { BasicCredentials } from '../config/credentials.js';
import type { Engine } from '../core/engine.js';
import { RESERVED_NAMES } from '../core/function-name.js';
import { PRIVATE_HEADERS } from '../core/raw-input.js';
import { EngineError } from '../errors.js';
import type { FunctionRecord } from '../store/index.js';
import { ClientGone } from './invoke-route.js';
import { NAMESPACE } from './openfaas/mapping.js';
import { routeAnyMethod } from './openapi.js';

const EMPTY = new Uint8Array(0);
const SUFFIX = `.${NAMESPACE}`;

const RawParams = Type.Object({ name: Type.String(), '*': Type.Optional(Type.String()) });

export interface RawInvokeOptions {
  engine: Engine;
  /** The engine's Basic credentials, when on: a header carrying them under any name stays private. */
  credentials?: BasicCredentials;
}

export async function rawInvokeRoutes(app: FastifyInstance, options: RawInvokeOptions): Promise<void> {
  const { engine } = options;
  const secrets = options.credentials ? credentialForms(options.credentials) : [];
  // The body is the function's input, whatever its type: bytes, never parsed.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const handler = async (request: FastifyRequest<{ Params: { name: string; '*'?: string } }>, reply: FastifyReply) => {
    const record = resolveFunction(engine, request.params.name);
    if (record === undefined) {
      throw new EngineError('NOT_FOUND', `no route ${request.method} ${request.url}: no function named ${request.params.name}`);
    }
    const gone = new ClientGone();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) gone.abort();
    });
    const body = request.body instanceof Uint8Array ? request.body : EMPTY;
    const queryAt = request.url.indexOf('?');
    const rawQuery = queryAt < 0 ? '' : request.url.slice(queryAt + 1);
    const path = `/${request.params['*'] ?? ''}`;
    const result = await engine.invokeRaw({
      name: record.name,
      body,
      params: [...new URLSearchParams(rawQuery)],
      env: cgiEnvironment(request, path, rawQuery, body.byteLength, secrets),
      signal: gone,
    });
    // As the classic watchdog: the function's content_type setting, else the caller's own type.
    const type = record.env.content_type ?? request.headers['content-type'] ?? 'text/plain; charset=utf-8';
    reply.header('x-duration-seconds', (result.durationMs / 1000).toFixed(6));
    return reply.code(200).type(type).send(result.output);
  };

  const schema = {
    tags: ['Invocation'],
    summary: 'Invoke a function with the raw request (WASI: body is stdin, Http_* environment; string ABI: body; numeric ABI: query)',
    params: RawParams,
    response: { 200: { description: "The function's output", content: { '*/*': { schema: { type: 'string' } } } } },
  } as const;
  routeAnyMethod(app, '/function/:name', schema, handler);
  routeAnyMethod(app, '/function/:name/*', schema, handler);
}

/** The deployed function a path segment names: itself, or with OpenFaaS's `.openfaas-fn` suffix dropped. */
function resolveFunction(engine: Engine, segment: string): FunctionRecord | undefined {
  if (RESERVED_NAMES.has(segment)) return undefined;
  return engine.find(segment) ?? (segment.endsWith(SUFFIX) ? engine.find(segment.slice(0, -SUFFIX.length)) : undefined);
}

/**
 * The classic watchdog's CGI variables: every header as Http_<Canonical_Name> (first value), and
 * Http_Method, Http_ContentLength, Http_Content_Length, Http_Query (when non-empty), Http_Path,
 * Http_Host. Never the private headers (Authorization, Proxy-Authorization, Cookie: SPEC §3a), nor
 * a header whose value holds one of `secrets` (the engine's own credentials, forwarded by a proxy
 * under another name, say).
 */
export function cgiEnvironment(
  request: FastifyRequest,
  path: string,
  rawQuery: string,
  length: number,
  secrets: readonly string[] = [],
): Record<string, string> {
  const env: Record<string, string> = {};
  const raw = request.raw.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (PRIVATE_HEADERS.has(name.toLowerCase())) continue;
    const value = raw[i + 1]!;
    if (secrets.length > 0 && secrets.some((secret) => value.includes(secret))) continue;
    const key = `Http_${canonicalHeader(name).replace(/-/g, '_')}`;
    if (!(key in env)) env[key] = value;
  }
  env.Http_Method = request.method;
  env.Http_ContentLength = String(length);
  env.Http_Content_Length = String(length);
  if (rawQuery !== '') env.Http_Query = rawQuery;
  env.Http_Path = path;
  const host = request.headers.host;
  if (host) env.Http_Host = host;
  return env;
}

/**
 * How the engine's Basic credentials may appear in a header: the token of `Basic TOKEN`, and the
 * password itself when it is long enough not to turn up by chance in unrelated values.
 */
function credentialForms(credentials: BasicCredentials): string[] {
  const token = Buffer.from(`${credentials.user}:${credentials.password}`, 'utf8').toString('base64');
  return credentials.password.length >= MIN_SECRET_CHARS ? [token, credentials.password] : [token];
}

const MIN_SECRET_CHARS = 8;

/** Go's textproto.CanonicalMIMEHeaderKey: `x-forwarded-for` → `X-Forwarded-For`. */
export function canonicalHeader(name: string): string {
  return name
    .toLowerCase()
    .split('-')
    .map((part) => (part === '' ? part : part[0]!.toUpperCase() + part.slice(1)))
    .join('-');
}
