/**
 * What makes the HTTP server an OpenFaaS provider an operator can run: the faas-provider routes,
 * the raw data plane, probes, metrics, optional Basic auth, and the OpenAPI document generated from
 * every route's schema. Registered by buildServer before the historical routes, so that the
 * OpenAPI and auth hooks see every route.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { BasicCredentials } from '../config/credentials.js';
import type { Engine } from '../core/engine.js';
import type { DurationCounts } from '../core/events.js';
import { EngineError } from '../errors.js';
import type { FunctionLogs } from '../logs/function-logs.js';
import type { EngineMetrics } from '../metrics/engine-metrics.js';
import { openFaasRoutes } from './openfaas/routes.js';
import { opsRoutes } from './ops/routes.js';
import { DOCS_PREFIX, DOCUMENTATION_TAG, documentDocsRoute, openApiTransform, withDocsPage } from './openapi.js';
import type { ErrorTranslator } from './plain-reply.js';
import { rawInvokeRoutes } from './raw-invoke.js';
import { asyncInvokeRoutes } from './async-invoke.js';
import { basicAuthChecker } from './basic-auth.js';

export interface PlatformOptions {
  metrics: EngineMetrics;
  logs: FunctionLogs;
  /** Basic auth on /system/* and the management routes; off when absent. */
  credentials?: BasicCredentials;
  /** Basic auth on the invocation routes too. */
  authInvoke: boolean;
  notReadyReason: () => string | undefined;
  version: { release: string; sha: string };
  /** This engine's node name (--node-name), for /system/info. */
  node?: string;
  /** True while the engine warms its HTTP path up before it says it listens: those requests are not counted. */
  warmingUp?: () => boolean;
}

/** The historical routes of SPEC §2, documented here so that server.ts stays as it was. */
const HISTORICAL: Record<string, { method: string; summary: string }> = {
  '/function/deploy': { method: 'POST', summary: 'Deploy a function (historical API)' },
  '/function/delete': { method: 'POST', summary: 'Delete a function (historical API)' },
  '/function/list': { method: 'GET', summary: 'List functions (historical API)' },
  '/function/query': { method: 'POST', summary: 'Query a function (historical API)' },
  '/function/invoke': { method: 'POST', summary: 'Invoke a function with JSON args (historical API)' },
};

const HISTORICAL_ANSWER = {
  description:
    'text/plain `status code: 200, message: TEXT`; with Accept: application/json, `{"status": 200, "message": TEXT, ...}`',
  type: 'string',
} as const;

const MANAGEMENT = new Set(['/function/deploy', '/function/delete', '/function/list', '/function/query']);
const INVOCATION = new Set(['/function/invoke', '/function/:name', '/function/:name/*', '/async-function/:name', '/async-function/:name/*']);

export function registerPlatform(app: FastifyInstance, engine: Engine, options: PlatformOptions, translateError: ErrorTranslator): void {
  // Response schemas document the answers (for OpenAPI); they must not change them. Every answer
  // is serialised as it was before they existed: JSON.stringify, nothing dropped or coerced.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // server.ts declares the historical routes at the root right after this, before any plugin has
  // loaded, so @fastify/swagger's own onRoute hook never sees them: they are captured here, from
  // the same route options, and added to the document it generates.
  const historical: RouteOptions[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    if (documentHistorical(route)) historical.push(route);
    documentDocsRoute(route);
  });

  void app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'WasmEngine',
        description:
          'A WebAssembly function engine: the historical management and invocation API, the OpenFaaS provider API, the raw data plane and operations routes.',
        version: options.version.release,
      },
      tags: [
        { name: 'Historical API', description: 'The five seed-compatible routes (SPEC §2)' },
        { name: 'OpenFaaS provider', description: 'The faas-provider routes and types' },
        { name: 'Invocation', description: 'The raw data plane, as the OpenFaaS gateway calls it' },
        { name: 'Operations', description: 'Probes and metrics' },
        DOCUMENTATION_TAG,
      ],
      components: { securitySchemes: { basicAuth: { type: 'http', scheme: 'basic' } } },
      ...(options.credentials ? { security: [{ basicAuth: [] }] } : {}),
    },
    transform: openApiTransform,
    transformObject: ((document) =>
      'openapiObject' in document ? withDocsPage(withRoutes(document.openapiObject, historical)) : document.swaggerObject) as SwaggerTransformObject,
  });
  void app.register(swaggerUi, { routePrefix: DOCS_PREFIX });

  if (options.credentials) {
    const check = basicAuthChecker(options.credentials);
    app.addHook('onRequest', async (request, reply) => {
      const url = request.routeOptions.url;
      if (url === undefined) return;
      const guarded = url.startsWith('/system/') || MANAGEMENT.has(url) || (options.authInvoke && INVOCATION.has(url));
      if (!guarded || check(request.headers.authorization)) return;
      reply.header('www-authenticate', 'Basic realm="wasm-engine", charset="UTF-8"');
      throw new EngineError('UNAUTHORIZED', 'authentication required: wrong or missing Basic credentials');
    });
  }

  const observe = httpObserver(options);
  app.addHook('onResponse', async (request, reply) => {
    observe(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  void app.register(opsRoutes, { metrics: options.metrics, notReadyReason: options.notReadyReason, translateError });
  void app.register(openFaasRoutes, { engine, logs: options.logs, version: options.version, ...(options.node === undefined ? {} : { node: options.node }), translateError });
  void app.register(rawInvokeRoutes, { engine, ...(options.credentials ? { credentials: options.credentials } : {}) });
  void app.register(asyncInvokeRoutes);
}

/** Counts one answered request in the HTTP metrics, unless the engine is warming its own path up. */
function httpObserver(options: Pick<PlatformOptions, 'metrics' | 'warmingUp'>): (method: string, route: string, status: number, seconds: number) => void {
  const { metrics, warmingUp } = options;
  return (method, route, status, seconds) => {
    if (warmingUp?.()) return;
    metrics.httpRequest(method, route, status, seconds);
  };
}

/** httpObserver for many answers of one method, route and status at once, their durations binned (an HTTP thread's report). */
export function httpCountsObserver(options: Pick<PlatformOptions, 'metrics' | 'warmingUp'>): (method: string, route: string, status: number, durations: DurationCounts) => void {
  const { metrics, warmingUp } = options;
  return (method, route, status, durations) => {
    if (warmingUp?.()) return;
    metrics.httpRequests(method, route, status, durations);
  };
}

/** Adds summary, tags and answers to a historical route; true when it is one worth documenting. */
function documentHistorical(route: RouteOptions): boolean {
  const doc = HISTORICAL[route.url];
  if (!doc) return false;
  // The 405 answers for other methods are not routes worth documenting.
  if (route.method !== doc.method) {
    route.schema = { ...route.schema, hide: true };
    return false;
  }
  route.schema = {
    ...route.schema,
    tags: ['Historical API'],
    summary: doc.summary,
    response: { 200: HISTORICAL_ANSWER, '4xx': HISTORICAL_ANSWER, '5xx': HISTORICAL_ANSWER },
  };
  return true;
}

/** The OpenAPI operations of routes @fastify/swagger did not see, from their own schemas. */
function withRoutes<D extends { paths?: unknown }>(document: D, routes: RouteOptions[]): D {
  // JSON round trip: TypeBox schemas carry symbol keys that have no place in the document.
  const plain = (schema: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  const paths: Record<string, Record<string, unknown>> = { ...(document.paths as Record<string, Record<string, unknown>>) };
  for (const route of routes) {
    const method = String(route.method).toLowerCase();
    const item = { ...(paths[route.url] ?? {}) };
    if (item[method]) continue;
    const schema = (route.schema ?? {}) as { summary?: string; tags?: string[]; body?: unknown };
    const answer = { description: HISTORICAL_ANSWER.description, content: { 'text/plain': { schema: { type: 'string' } } } };
    item[method] = {
      summary: schema.summary,
      tags: schema.tags,
      ...(schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: plain(schema.body) } } } } : {}),
      responses: { 200: answer, '4XX': answer, '5XX': answer },
    };
    paths[route.url] = item;
  }
  return { ...document, paths };
}
