/** Probes and scraping: /healthz, /readyz, /metrics, and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';
import { EngineError } from '../../errors.js';
import type { EngineMetrics } from '../../metrics/engine-metrics.js';
import { usePlainErrors, type ErrorTranslator } from '../plain-reply.js';

export interface OpsOptions {
  metrics: EngineMetrics;
  /** Why the engine is not ready (restore running, no workers, stopping), or undefined when it is. */
  notReadyReason: () => string | undefined;
  translateError: ErrorTranslator;
}

const TAGS = ['Operations'];
const text = (description: string, type = 'text/plain') => ({ description, content: { [type]: { schema: { type: 'string' } } } }) as const;

export async function opsRoutes(app: FastifyInstance, options: OpsOptions): Promise<void> {
  usePlainErrors(app, options.translateError);

  app.get(
    '/healthz',
    { schema: { tags: TAGS, summary: 'Liveness: the process answers', response: { 200: text('OK') } } },
    async (_request, reply) => reply.type('text/plain; charset=utf-8').send('OK\n'),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: TAGS,
        summary: 'Readiness: restore finished, workers up, not shutting down',
        response: { 200: text('ready'), 503: text('why not') },
      },
    },
    async (_request, reply) => {
      const reason = options.notReadyReason();
      if (reason !== undefined) throw new EngineError('UNAVAILABLE', `not ready: ${reason}`);
      return reply.type('text/plain; charset=utf-8').send('ready\n');
    },
  );

  app.get(
    '/metrics',
    { schema: { tags: TAGS, summary: 'Prometheus metrics (text format)', response: { 200: text('Prometheus text format 0.0.4', 'text/plain; version=0.0.4') } } },
    async (_request, reply) => reply.type(options.metrics.contentType).send(await options.metrics.text()),
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        tags: ['Documentation'],
        summary: 'This OpenAPI 3.0 document',
        response: { 200: { description: 'The OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } } },
      },
    },
    async () => app.swagger(),
  );
}
