/**
 * What keeps /openapi.json a valid OpenAPI 3.0 document while the routes stay as Fastify declares
 * them: the methods OpenAPI 3.0 can name, wildcard routes as path templates, and the documentation
 * routes (/docs, from @fastify/swagger-ui) described rather than hidden.
 */
import type {
  FastifyInstance,
  FastifySchema,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
  RouteGenericInterface,
  RouteHandlerMethod,
  RouteOptions,
} from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';

/** The operations a Path Item Object of OpenAPI 3.0 has (QUERY, which Fastify's all() adds, is 3.2's). */
const OPENAPI_METHODS = new Set(['GET', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'TRACE']);

/** Where @fastify/swagger-ui serves the documentation page. */
export const DOCS_PREFIX = '/docs';

/** The name a trailing wildcard (`/*`) gets as a path template. */
const REST_PARAM = 'path';

/**
 * Registers `handler` for every method Fastify supports, as `app.all` does; the methods OpenAPI
 * 3.0 cannot name are routed the same but left out of the document.
 */
export function routeAnyMethod<R extends RouteGenericInterface>(
  app: FastifyInstance,
  url: string,
  schema: FastifySchema,
  handler: RouteHandlerMethod<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, R>,
): void {
  const documented = app.supportedMethods.filter((m) => OPENAPI_METHODS.has(m));
  const others = app.supportedMethods.filter((m) => !OPENAPI_METHODS.has(m));
  app.route<R>({ method: documented, url, schema, handler });
  if (others.length > 0) app.route<R>({ method: others, url, schema: { ...schema, hide: true }, handler });
}

/**
 * @fastify/swagger's per-route transform: a trailing `*` (Fastify's wildcard, which it would write
 * as `{*}`, a parameter no client can fill) becomes the template `{path}`, declared in the
 * route's parameters (the rest of the URL, slashes included); and a route declares exactly the
 * parameters of its own URL (the raw routes share one params schema with and without the `*`).
 */
export const openApiTransform: SwaggerTransform = ({ schema, url }) => {
  const params = schema?.params as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  const wildcard = url.endsWith('*');
  if (!params && !wildcard) return { schema, url };
  const path = wildcard ? `${url.slice(0, -1)}:${REST_PARAM}` : url;
  const names = [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
  const given = params?.properties ?? {};
  const properties: Record<string, unknown> = {};
  for (const name of names) {
    properties[name] =
      name === REST_PARAM && wildcard
        ? { type: 'string', description: 'The rest of the path, slashes included' }
        : (given[name] ?? { type: 'string' });
  }
  return { schema: { ...schema, params: { type: 'object', properties, required: names } }, url: path };
};

const TAGS = ['Documentation'];

/** What each documentation route serves; every one of them is a route a client may ask for. */
const DOCS_ROUTES: Record<string, { summary: string; type: string; redirect?: true }> = {
  [DOCS_PREFIX]: { summary: 'The interactive documentation (Swagger UI) of this API', type: 'text/html' },
  [`${DOCS_PREFIX}/`]: { summary: 'The interactive documentation (Swagger UI) of this API', type: 'text/html' },
  [`${DOCS_PREFIX}/json`]: { summary: 'This OpenAPI document, as the documentation page loads it', type: 'application/json' },
  [`${DOCS_PREFIX}/yaml`]: { summary: 'This OpenAPI document in YAML', type: 'application/x-yaml' },
  [`${DOCS_PREFIX}/static/index.html`]: { summary: 'Redirects to the documentation page', type: 'text/html', redirect: true },
  [`${DOCS_PREFIX}/static/swagger-initializer.js`]: { summary: "The documentation page's start-up script", type: 'application/javascript' },
  [`${DOCS_PREFIX}/static/*`]: { summary: "The documentation page's static files (scripts, styles, images)", type: '*/*' },
};

/**
 * Gives @fastify/swagger-ui's routes (which it declares hidden) a summary and an answer, so that
 * the document covers every route the server answers. Theme files, when configured, stay hidden.
 */
export function documentDocsRoute(route: RouteOptions): void {
  const doc = DOCS_ROUTES[route.url];
  if (!doc || (route.method !== 'GET' && !(Array.isArray(route.method) && route.method.includes('GET')))) return;
  route.schema = {
    ...route.schema,
    hide: false,
    tags: TAGS,
    summary: doc.summary,
    response: doc.redirect
      ? { 302: { description: `${doc.summary} (Location: ${DOCS_PREFIX}/)`, type: 'null' } }
      : { 200: { description: doc.summary, content: { [doc.type]: { schema: { type: 'string' } } } } },
  };
}

/**
 * Fastify declares the page's route once and serves it at both `/docs` and `/docs/`, handing
 * @fastify/swagger one route object whose URL it then changes to the second: the first is added
 * back here, as the same operation.
 */
export function withDocsPage<D extends { paths?: unknown }>(document: D): D {
  const paths = document.paths as Record<string, unknown> | undefined;
  const page = paths?.[`${DOCS_PREFIX}/`];
  if (!paths || page === undefined || paths[DOCS_PREFIX] !== undefined) return document;
  return { ...document, paths: { [DOCS_PREFIX]: page, ...paths } };
}

export const DOCUMENTATION_TAG = { name: 'Documentation', description: 'This document and its interactive page' };
