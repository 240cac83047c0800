/**
 * The HTTP layer: routes of SPEC §2 translated to calls of the core Engine, and every failure
 * translated to the status and code name of §2. No engine logic lives here.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Engine } from '../core/engine.js';
import { EngineError, toEngineError } from '../errors.js';
import { onClientError, onFrameworkError, refuseRequestsWithoutHost } from './client-errors.js';
import { lingerAfterAnswer } from './linger.js';
import { gatePipelinedRequests } from './pipeline-gate.js';
import { invokeRoute } from './invoke-route.js';
import { registerPlatform, type PlatformOptions } from './platform.js';
import { connectionsCheckingInterval } from './request-timeout.js';
import { entryJson, listText, queryText } from './presenters.js';
import { INVOKE_ROUTE, sendError, sendSuccess } from './reply.js';
import { DeployBody, InvokeBody, NameBody } from './schemas.js';

export interface ServerOptions {
  engine: Engine;
  bodyLimitBytes: number;
  /** How long a client may take to send a whole request (request-timeout.ts); Fastify's default, none, when absent. */
  requestTimeoutMs?: number;
  /** pino logger for Fastify's own lines; silent when absent. */
  httpLogger?: FastifyBaseLogger;
  /** The OpenFaaS provider, raw invocation and operations routes; only the historical routes when absent. */
  platform?: PlatformOptions;
}

const ALL_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

export function buildServer(options: ServerOptions): FastifyInstance {
  const { engine } = options;
  const app = Fastify({
    ...(options.httpLogger ? { loggerInstance: options.httpLogger } : { logger: false }),
    // Per-request lines would cost the hot path; errors are still logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes,
    ...(options.requestTimeoutMs === undefined ? {} : { http: { connectionsCheckingInterval: connectionsCheckingInterval(options.requestTimeoutMs) } }),
    return503OnClosing: true,
    clientErrorHandler: onClientError,
    frameworkErrors: onFrameworkError,
    ajv: {
      // Mistyped fields are errors, not values to coerce or drop silently.
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false },
    },
  });

  if (options.requestTimeoutMs !== undefined) {
    // Node cuts a request past its request timeout only when its headers timeout is no longer (as
    // its constructor would have made them); the HTTP threads take both from this server.
    app.server.requestTimeout = options.requestTimeoutMs;
    app.server.headersTimeout = Math.min(app.server.headersTimeout, options.requestTimeoutMs);
  }

  // Bodies are JSON whatever Content-Type says (SPEC §2): the historical curl lines send two
  // Content-Type headers and a bare `curl -d` sends a form type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new EngineError('INVALID_REQUEST', `request body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });

  app.setErrorHandler((error: FastifyError | EngineError, request, reply) => {
    const engineError = translateError(error);
    if (engineError.code === 'INTERNAL') request.log.error({ err: error }, 'unexpected error');
    if (engineError.code === 'PAYLOAD_TOO_LARGE') lingerAfterAnswer(request.raw, reply.raw, options.bodyLimitBytes);
    return sendError(request, reply, engineError);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new EngineError('NOT_FOUND', `no route ${request.method} ${request.url}`)),
  );

  if (options.platform) registerPlatform(app, engine, options.platform, translateError);

  app.post<{ Body: DeployBody }>('/function/deploy', { schema: { body: DeployBody } }, async (request, reply) => {
    const body = request.body;
    const record = await engine.deploy({
      name: body.function_name,
      image: body.function_image,
      ...(body.wasi_cap === undefined ? {} : { wasiCap: body.wasi_cap }),
      ...(body.entrypoint === undefined ? {} : { entrypoint: body.entrypoint }),
      limits: {
        ...(body.timeout_ms === undefined ? {} : { timeout_ms: body.timeout_ms }),
        ...(body.memory_limit_mb === undefined ? {} : { memory_limit_mb: body.memory_limit_mb }),
        ...(body.max_output_bytes === undefined ? {} : { max_output_bytes: body.max_output_bytes }),
      },
      ...(body.env === undefined ? {} : { env: body.env }),
    });
    return sendSuccess(request, reply, `deploy function ${record.name} successfully!`, {
      function: entryJson(record, engine.blobPath(record)),
    });
  });

  app.post<{ Body: NameBody }>('/function/delete', { schema: { body: NameBody } }, async (request, reply) => {
    const record = await engine.delete(request.body.function_name);
    return sendSuccess(request, reply, `delete function ${record.name} successfully!`);
  });

  app.get('/function/list', async (request, reply) => {
    const records = engine.list();
    return sendSuccess(request, reply, listText(records), {
      functions: records.map((r) => entryJson(r, engine.blobPath(r))),
    });
  });

  app.post<{ Body: NameBody }>('/function/query', { schema: { body: NameBody } }, async (request, reply) => {
    const record = engine.query(request.body.function_name);
    const path = engine.blobPath(record);
    return sendSuccess(request, reply, queryText(record, path), { function: entryJson(record, path) });
  });

  // The invocation route's one implementation (invoke-route.ts). In the engine the HTTP threads
  // answer invocations themselves and pass on here only those Basic auth refuses, which its hook
  // answers first; a server built alone (tests) serves them here. The route takes the request over
  // after Fastify's hooks and before Fastify reads the body, so the handler below is never run;
  // the route's schema stays for the OpenAPI document.
  const logError = (err: unknown): void => app.log.error({ err }, 'unexpected error');
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  const throughFastify = invokeRoute({ engine, bodyLimitBytes: options.bodyLimitBytes, logError, closing: () => closing });
  app.post<{ Body: InvokeBody }>(
    INVOKE_ROUTE,
    {
      schema: { body: InvokeBody },
      onRequest: (request, reply, done) => {
        reply.hijack();
        throughFastify(request.raw, reply.raw);
        done();
      },
    },
    async () => {
      throw new EngineError('INTERNAL', 'the invocation route was not taken over');
    },
  );

  registerMethodNotAllowed(app, { '/function/deploy': 'POST', '/function/delete': 'POST', '/function/list': 'GET', '/function/query': 'POST', [INVOKE_ROUTE]: 'POST' });

  gatePipelinedRequests(app.server);
  refuseRequestsWithoutHost(app.server);
  return app;
}

/** A known route asked with another method answers 405 rather than 404. */
function registerMethodNotAllowed(app: FastifyInstance, routes: Record<string, string>): void {
  for (const [url, allowed] of Object.entries(routes)) {
    const others = ALL_METHODS.filter((m) => m !== allowed);
    app.route({
      method: allowed === 'GET' ? others.filter((m) => m !== 'GET') : [...others, 'HEAD'],
      url,
      handler: async (request, reply) => {
        reply.header('allow', allowed === 'GET' ? 'GET, HEAD' : allowed);
        return sendError(request, reply, new EngineError('METHOD_NOT_ALLOWED', `${url} accepts ${allowed} only`));
      },
    });
  }
}

interface ValidationIssue {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
}

function translateError(error: FastifyError | EngineError): EngineError {
  if (error instanceof EngineError) return error;
  if (error.validation) return new EngineError('INVALID_REQUEST', describeValidation(error.validation as ValidationIssue[]));
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new EngineError('PAYLOAD_TOO_LARGE', 'request body is larger than the limit');
  }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return new EngineError('INVALID_REQUEST', error.message);
  }
  return toEngineError(error);
}

/** Names the bad field, which ajv's own wording does not always do. */
function describeValidation(issues: ValidationIssue[]): string {
  const issue = issues[0];
  if (!issue) return 'invalid request body';
  const field = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
  switch (issue.keyword) {
    case 'required':
      return `missing field ${String(issue.params.missingProperty)}`;
    case 'additionalProperties':
      return `unknown field ${String(issue.params.additionalProperty)}`;
    case 'type':
      return field === '' ? 'request body must be a JSON object' : `field ${field} must be ${String(issue.params.type)}`;
    default:
      return field === '' ? `request body ${issue.message ?? 'is invalid'}` : `field ${field} ${issue.message ?? 'is invalid'}`;
  }
}
