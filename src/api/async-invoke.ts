/**
 * `/async-function/{name}`: OpenFaaS's asynchronous invocation, which this engine does not offer.
 * In OpenFaaS it is the gateway's, not the provider's: the gateway queues the request (NATS) and
 * its queue-worker calls the provider's `/function/{name}` and posts the answer to
 * `X-Callback-Url`. faas-cli prints an "Async URL" for every function whatever the provider says
 * (it is the gateway address + `/async-function/NAME`), so a client pointed at the engine itself is
 * told plainly that the route exists and is not offered, with what to use instead (README,
 * "Asynchronous invocation").
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { EngineError } from '../errors.js';
import { routeAnyMethod } from './openapi.js';

const AsyncParams = Type.Object({ name: Type.String(), '*': Type.Optional(Type.String()) });

const NOT_OFFERED = {
  description:
    'Not offered: 501 NOT_IMPLEMENTED. Call /function/{name} synchronously, or run the engine behind the OpenFaaS gateway, whose queue-worker serves asynchronous invocations',
  content: { 'text/plain': { schema: { type: 'string' } }, 'application/json': { schema: { type: 'object' } } },
} as const;

export async function asyncInvokeRoutes(app: FastifyInstance): Promise<void> {
  // Whatever the body is, the answer is the same: it is not parsed (nor refused for its type).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) => done(null, undefined));

  const handler = async (request: FastifyRequest<{ Params: { name: string } }>, _reply: FastifyReply): Promise<never> => {
    const { name } = request.params;
    throw new EngineError(
      'NOT_IMPLEMENTED',
      `asynchronous invocation is not offered by this engine: call /function/${name} synchronously, ` +
        `or run the engine behind the OpenFaaS gateway, whose queue-worker serves /async-function/${name} and calls /function/${name} here`,
    );
  };
  const schema = {
    tags: ['Invocation'],
    summary: "OpenFaaS's asynchronous invocation: not offered by the engine (the OpenFaaS gateway's queue-worker provides it)",
    params: AsyncParams,
    response: { 501: NOT_OFFERED },
  } as const;
  routeAnyMethod(app, '/async-function/:name', schema, handler);
  routeAnyMethod(app, '/async-function/:name/*', schema, handler);
}
