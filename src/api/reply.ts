/**
 * The two answer formats of SPEC §2: the historical text line `status code: CODE, message: TEXT`
 * by default, and a JSON object when the client accepts application/json. The formatters are
 * shared with the invocation route that bypasses Fastify (invoke-route.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EngineError } from '../errors.js';
import { ERROR_STATUS } from './error-status.js';

export const INVOKE_ROUTE = '/function/invoke';
export const TEXT_TYPE = 'text/plain; charset=utf-8';
export const JSON_TYPE = 'application/json; charset=utf-8';

/** Whether an Accept header asks for the JSON format. */
export function acceptsJson(accept: string | undefined): boolean {
  return accept !== undefined && accept.toLowerCase().includes('application/json');
}

/** The text line; historically the management answers end with a newline and the invoke answer does not. */
export function textLine(status: number, message: string, invokeRoute: boolean): string {
  return `status code: ${status}, message: ${message}${invokeRoute ? '' : '\n'}`;
}

/** The JSON error object of §2. */
export function errorObject(err: EngineError): { status: number; error: { code: string; message: string } } {
  return { status: ERROR_STATUS[err.code], error: { code: err.code, message: err.message } };
}

/** The error's message in the text format. */
export function errorText(err: EngineError): string {
  return `${err.message} (${err.code})`;
}

function wantsJson(request: FastifyRequest): boolean {
  return acceptsJson(request.headers.accept);
}

const onInvokeRoute = (request: FastifyRequest): boolean => request.routeOptions.url === INVOKE_ROUTE;

export function sendSuccess(
  request: FastifyRequest,
  reply: FastifyReply,
  message: string,
  extra: Record<string, unknown> = {},
): FastifyReply {
  if (wantsJson(request)) return reply.code(200).send({ status: 200, message, ...extra });
  return reply.code(200).type(TEXT_TYPE).send(textLine(200, message, onInvokeRoute(request)));
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: EngineError): FastifyReply {
  const status = ERROR_STATUS[err.code];
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
  if (wantsJson(request)) return reply.code(status).send(errorObject(err));
  return reply.code(status).type(TEXT_TYPE).send(textLine(status, errorText(err), onInvokeRoute(request)));
}
