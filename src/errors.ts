/**
 * The one error class of the engine. Every failure a caller can see carries one of the code names
 * of SPEC §2; the HTTP layer maps codes to statuses in one place (src/api/error-status.ts).
 */
export const ERROR_CODES = [
  // user errors: the request or the image is at fault
  'INVALID_REQUEST', // body not JSON, missing/mistyped field, bad name, bad image reference
  'FUNCTION_NOT_FOUND', // no function of that name
  'FUNCTION_EXISTS', // deploy of a name already deployed (or being deployed)
  'PAYLOAD_TOO_LARGE', // request body over the limit
  'HEADERS_TOO_LARGE', // request head over Node's header size limit (431)
  'REQUEST_TIMEOUT', // the request did not arrive whole within the server's request timeout (408)
  'INVALID_FUNCTION_IMAGE', // no/several .wasm files, invalid module, missing export, unknown import
  'IMAGE_NOT_FOUND', // registry has no such repository/tag/digest
  'INVALID_ARGS', // args do not fit the function's ABI
  'NOT_FOUND', // unknown route
  'METHOD_NOT_ALLOWED', // known route, wrong method
  'NOT_IMPLEMENTED', // an OpenFaaS route the engine deliberately does not offer (asynchronous invocation)
  'UNAUTHORIZED', // Basic auth is on and the request's credentials are missing or wrong
  // upstream errors: the registry failed us
  'REGISTRY_AUTH_FAILED', // registry answered 401/403
  'REGISTRY_ERROR', // unreachable, TLS, bad answer, digest mismatch
  // guest errors: the function failed
  'FUNCTION_FAILED', // trap or non-zero WASI exit
  'FUNCTION_TIMEOUT', // ran past its time limit
  'OVERLOADED', // too many invocations queued
  'UNAVAILABLE', // the function is scaled to zero replicas, or the engine is shutting down
  // engine errors
  'INTERNAL', // anything unexpected: a bug
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface EngineErrorOptions {
  cause?: unknown;
  /** For OVERLOADED: how long a client should wait before retrying. */
  retryAfterSeconds?: number;
}

export class EngineError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: EngineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isEngineError(err: unknown): err is EngineError {
  return err instanceof EngineError;
}

/** Wraps anything thrown into an EngineError; an unknown failure is INTERNAL. */
export function toEngineError(err: unknown): EngineError {
  if (err instanceof EngineError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EngineError('INTERNAL', message, { cause: err });
}
