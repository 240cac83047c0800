/**
 * The two answer formats of SPEC §2: the historical text line `status code: CODE, message: TEXT`
 * by default, and a JSON object when the client accepts application/json.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EngineError } from '../errors.js';
import { ERROR_STATUS } from './error-status.js';

export const INVOKE_ROUTE = '/function/invoke';

function wantsJson(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').toLowerCase().includes('application/json');
}

/** Historically the management answers end with a newline and the invoke answer does not. */
function textLine(request: FastifyRequest, status: number, message: string): string {
  const newline = request.routeOptions.url === INVOKE_ROUTE ? '' : '\n';
  return `status code: ${status}, message: ${message}${newline}`;
}

export function sendSuccess(
  request: FastifyRequest,
  reply: FastifyReply,
  message: string,
  extra: Record<string, unknown> = {},
): FastifyReply {
  if (wantsJson(request)) return reply.code(200).send({ status: 200, message, ...extra });
  return reply.code(200).type('text/plain; charset=utf-8').send(textLine(request, 200, message));
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: EngineError): FastifyReply {
  const status = ERROR_STATUS[err.code];
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
  if (wantsJson(request)) {
    return reply.code(status).send({ status, error: { code: err.code, message: err.message } });
  }
  return reply
    .code(status)
    .type('text/plain; charset=utf-8')
    .send(textLine(request, status, `${err.message} (${err.code})`));
}
