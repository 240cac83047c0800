/**
 * Error answers of the faas-provider and operations routes: the status of SPEC §2 with the message
 * as plain text (what OpenFaaS's providers send and faas-cli prints), or the JSON error object of
 * §2 when the client accepts JSON.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EngineError } from '../errors.js';
import { ERROR_STATUS } from './error-status.js';
import { lingerAfterAnswer } from './linger.js';
import { JSON_TYPE, TEXT_TYPE, acceptsJson, errorObject } from './reply.js';

export type ErrorTranslator = (error: FastifyError | EngineError) => EngineError;

export function sendPlainError(request: FastifyRequest, reply: FastifyReply, err: EngineError): FastifyReply {
  const status = ERROR_STATUS[err.code];
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
  if (acceptsJson(request.headers.accept)) return reply.code(status).type(JSON_TYPE).send(JSON.stringify(errorObject(err)));
  return reply.code(status).type(TEXT_TYPE).send(`${err.message}\n`);
}

/** Makes the plain-text answer the error answer of every route of `context` (an encapsulated plugin). */
export function usePlainErrors(context: FastifyInstance, translate: ErrorTranslator): void {
  context.setErrorHandler((error: FastifyError | EngineError, request, reply) => {
    const engineError = translate(error);
    if (engineError.code === 'INTERNAL') request.log.error({ err: error }, 'unexpected error');
    if (engineError.code === 'PAYLOAD_TOO_LARGE') lingerAfterAnswer(request.raw, reply.raw, request.routeOptions.bodyLimit ?? 0);
    return sendPlainError(request, reply, engineError);
  });
}
