/**
 * `POST /function/invoke`, the hot route: its one implementation, on Node's request and response.
 * An HTTP thread (threads/http-thread.ts) hands it every such request straight from Node's
 * `request` event, so that an invocation skips Fastify's per-request machinery (routing, hooks,
 * request and reply objects, content-type parser, ajv); Fastify's route (server.ts) hands it those
 * of a server built alone (tests). Everything a client observes is what SPEC §2 and the
 * historical Fastify route give: the body read as JSON whatever its Content-Type, the body limit
 * (413 PAYLOAD_TOO_LARGE, then lingering, linger.ts), invalid JSON (400 INVALID_REQUEST and
 * `connection: close`, as Fastify after a body it could not parse), the body's shape checked with
 * ajv's first message, both answer formats, the OVERLOADED Retry-After, a client that goes away
 * dropping its queued call, and the HTTP metrics. Like server.ts, this only translates HTTP to
 * Engine calls.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InvokeRequest } from '../core/engine.js';
import { EngineError, toEngineError } from '../errors.js';
import type { CancelSignal, InvocationResult } from '../runtime/index.js';
import { ERROR_STATUS } from './error-status.js';
import { lingerAfterAnswer } from './linger.js';
import { INVOKE_ROUTE, JSON_TYPE, TEXT_TYPE, acceptsJson, errorObject, errorText, textLine } from './reply.js';
import { whenClosed } from './response-close.js';

const QUERY = 0x3f; // '?'

/** The fields of an invoke body, checked. */
export interface InvokeFields {
  name: string;
  /** As sent; its shape is the engine's business (INVALID_ARGS vs INVALID_REQUEST, args.ts). */
  args: unknown;
}

/**
 * The invoke body's shape, checked by hand with exactly the message the route's schema (schemas.ts
 * InvokeBody, through ajv and server.ts describeValidation) gives for the first problem, in ajv's
 * order: the body's type, then the required field, then unknown fields, then the field's type.
 */
export function checkInvokeBody(body: unknown): InvokeFields {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new EngineError('INVALID_REQUEST', 'request body must be a JSON object');
  }
  const fields = body as Record<string, unknown>;
  if (!Object.prototype.hasOwnProperty.call(fields, 'function_name') || fields.function_name === undefined) {
    throw new EngineError('INVALID_REQUEST', 'missing field function_name');
  }
  for (const key in fields) {
    if (key !== 'function_name' && key !== 'args' && Object.prototype.hasOwnProperty.call(fields, key)) {
      throw new EngineError('INVALID_REQUEST', `unknown field ${key}`);
    }
  }
  const name = fields.function_name;
  if (typeof name !== 'string') throw new EngineError('INVALID_REQUEST', 'field function_name must be string');
  return { name, args: fields.args };
}

/**
 * Fires when the client goes away before its answer is written. One per request, and cheap to
 * make: the engine and the pool each attach a listener only while the call waits.
 */
export class ClientGone implements CancelSignal {
  aborted = false;
  private listeners: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const at = this.listeners?.indexOf(listener) ?? -1;
    if (at >= 0) this.listeners!.splice(at, 1);
  }

  /** Every listener once (they are all `once` listeners), then none. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }
}

/** What runs a call: the Engine, or on an HTTP thread its invoker, which may answer at once (threads/thread-invoker.ts). */
export interface Invoker {
  invoke(request: InvokeRequest): InvocationResult | Promise<InvocationResult>;
}

export interface InvokeRouteOptions {
  engine: Invoker;
  bodyLimitBytes: number;
  /** An answer was written: its status and the seconds since the request arrived (the HTTP metrics). */
  observe?: (status: number, seconds: number) => void;
  /** An unexpected error (the INTERNAL answers), as Fastify's error handler logs it. */
  logError: (err: unknown) => void;
  /**
   * True once the server is closing: answers then end their connection, so that close() waits for
   * the calls in flight rather than for keep-alive clients to leave.
   */
  closing?: () => boolean;
}

/**
 * Outputs longer than this (in characters) are answered in pieces, each made when the one before
 * has gone out: building and writing a 16 MiB answer at once — up to 200 MB of JSON for NUL bytes,
 * which escape to six characters, twice (`message` and `output`) — held the HTTP thread for
 * seconds and its memory whatever the client read. Shorter ones keep the one-string answer.
 */
export const STREAM_OUTPUT_CHARS = 256 * 1024;
/** Characters of output escaped and written per piece. */
const SLICE_CHARS = 64 * 1024;

/** The body of a success answer in pieces: the same bytes as the one-string answer. */
export function* answerChunks(json: boolean, output: string): Generator<string, void, undefined> {
  if (!json) {
    yield textLine(200, '', true);
    yield* slices(output, false);
    return;
  }
  yield '{"status":200,"message":"';
  yield* slices(output, true);
  yield '","output":"';
  yield* slices(output, true);
  yield '"}';
}

/** `text` in slices that never split a surrogate pair, JSON-escaped (without quotes) when `escape`. */
function* slices(text: string, escape: boolean): Generator<string, void, undefined> {
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + SLICE_CHARS);
    if (end < text.length && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end -= 1;
    const slice = text.slice(at, end);
    yield escape ? JSON.stringify(slice).slice(1, -1) : slice;
    at = end;
  }
}

/** Whether a request is the invocation route (with or without a query string). */
export function isInvokeRequest(req: IncomingMessage): boolean {
  const url = req.url;
  if (req.method !== 'POST' || url === undefined || !url.startsWith(INVOKE_ROUTE)) return false;
  return url.length === INVOKE_ROUTE.length || url.charCodeAt(INVOKE_ROUTE.length) === QUERY;
}

/** Answers one POST /function/invoke request. */
export type InvokeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function invokeRoute(options: InvokeRouteOptions): InvokeHandler {
  const route = new InvokeRoute(options);
  return (req, res) => route.handle(req, res);
}

/** One invocation: the body read within the limit, checked, run by the engine, answered. */
class InvokeRoute {
  constructor(private readonly options: InvokeRouteOptions) {}

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const limit = this.options.bodyLimitBytes;
    const headers = req.headers;
    const declared = headers['content-length'];
    // As Fastify: a request without Content-Type, length or chunked encoding has no body to read.
    if (headers['content-type'] === undefined && (declared === undefined || declared === '0') && headers['transfer-encoding'] === undefined) {
      this.invoke(req, res, started, undefined);
      return;
    }
    const length = Number(declared);
    if (length > limit) {
      this.refuse(req, res, started, tooLarge());
      return;
    }
    // Raw buffers decoded once at the end: a multi-byte character split across chunks stays whole.
    const chunks: Buffer[] = [];
    let received = 0;
    // Set once answered: later events are ignored (a flag costs less than removing three listeners).
    let done = false;
    const onData = (chunk: Buffer): void => {
      if (done) return;
      received += chunk.length;
      if (received > limit) {
        done = true;
        this.refuse(req, res, started, tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (error?: Error): void => {
      if (done) return;
      done = true;
      if (error) {
        this.refuse(req, res, started, new EngineError('INVALID_REQUEST', error.message));
        return;
      }
      if (!Number.isNaN(length) && received !== length) {
        this.refuse(req, res, started, new EngineError('INVALID_REQUEST', 'Request body size did not match Content-Length'));
        return;
      }
      const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, received).toString('utf8');
      this.invoke(req, res, started, text);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onEnd);
  }

  /** Runs the invocation a whole body (`undefined`: none was sent) asks for. */
  private invoke(req: IncomingMessage, res: ServerResponse, started: number, text: string | undefined): void {
    let fields: InvokeFields;
    try {
      fields = checkInvokeBody(parseBody(text));
    } catch (err) {
      // A body that is not JSON ends the connection, a well-formed one of the wrong shape does not.
      const close = err instanceof EngineError && err.message.startsWith(NOT_JSON);
      this.answer(req, res, started, toEngineError(err), '', close);
      return;
    }
    const gone = new ClientGone();
    let ran: InvocationResult | Promise<InvocationResult>;
    try {
      ran = this.options.engine.invoke({ name: fields.name, args: fields.args, signal: gone });
    } catch (err) {
      ran = Promise.reject(err);
    }
    // Answered at once (a call that ran inline): there was no time for the client to go.
    if (!(ran instanceof Promise)) {
      this.answer(req, res, started, undefined, ran.output, false);
      return;
    }
    // A shared hook (rather than a closure and `once`'s wrapper per request) finds the signal
    // on the response: 'close' comes once.
    (res as GoneAware)[GONE] = gone;
    whenClosed(res, onResponseClose);
    ran.then(
      (result) => this.answer(req, res, started, undefined, result.output, false),
      (error: unknown) => {
        const err = toEngineError(error);
        if (err.code === 'INTERNAL') this.options.logError(error);
        this.answer(req, res, started, err, '', false);
      },
    );
  }

  /** A request refused before its body was read or parsed: the connection then ends. */
  private refuse(req: IncomingMessage, res: ServerResponse, started: number, err: EngineError): void {
    this.answer(req, res, started, err, '', true);
    if (err.code === 'PAYLOAD_TOO_LARGE') lingerAfterAnswer(req, res, this.options.bodyLimitBytes);
  }

  /**
   * Writes the answer for `err`, or for a success with `output`. Called from promise callbacks,
   * where a throw would be an unhandled rejection (which ends the process): an answer that cannot
   * be built (a string past V8's length limit, say) becomes 500 INTERNAL, and one that cannot be
   * written leaves nothing to tell this client: the socket goes.
   */
  private answer(req: IncomingMessage, res: ServerResponse, started: number, err: EngineError | undefined, output: string, close: boolean): void {
    const { logError, observe, closing } = this.options;
    const json = acceptsJson(req.headers.accept);
    if (closing?.() === true) res.shouldKeepAlive = false;
    let status: number;
    try {
      status = writeAnswer(res, json, err, output, close, logError);
    } catch (buildError) {
      logError(buildError);
      try {
        status = writeAnswer(res, json, new EngineError('INTERNAL', 'the answer could not be built'), '', close, logError);
      } catch (writeError) {
        logError(writeError);
        res.destroy();
        return;
      }
    }
    observe?.(status, (performance.now() - started) / 1000);
  }
}

/** Writes one answer in the format asked for; returns its status. */
function writeAnswer(res: ServerResponse, json: boolean, err: EngineError | undefined, output: string, close: boolean, logError: (err: unknown) => void): number {
  const headers: string[] = [];
  if (close) headers.push('connection', 'close');
  if (err === undefined && output.length > STREAM_OUTPUT_CHARS) {
    headers.push('content-type', json ? JSON_TYPE : TEXT_TYPE, 'transfer-encoding', 'chunked');
    res.writeHead(200, headers);
    pipeChunks(res, answerChunks(json, output), logError);
    return 200;
  }
  let status = 200;
  let body: string;
  if (err === undefined) body = json ? JSON.stringify({ status, message: output, output }) : textLine(status, output, true);
  else {
    status = ERROR_STATUS[err.code];
    if (err.retryAfterSeconds !== undefined) headers.push('retry-after', String(err.retryAfterSeconds));
    body = json ? JSON.stringify(errorObject(err)) : textLine(status, errorText(err), true);
  }
  headers.push('content-type', json ? JSON_TYPE : TEXT_TYPE, 'content-length', String(Buffer.byteLength(body)));
  res.writeHead(status, headers);
  res.end(body);
  return status;
}

/**
 * Writes pieces on Node's response as the client takes them: the next is made only once the one
 * before has drained, so an answer costs the HTTP thread one piece per turn and its memory a piece
 * or two, whether the client reads or not.
 */
function pipeChunks(res: ServerResponse, chunks: Iterator<string>, logError: (err: unknown) => void): void {
  const next = (): void => {
    try {
      for (;;) {
        if (res.destroyed) return;
        const piece = chunks.next();
        if (piece.done === true) {
          res.end();
          return;
        }
        if (piece.value !== '' && !res.write(piece.value)) {
          res.once('drain', next);
          return;
        }
      }
    } catch (err) {
      logError(err);
      res.destroy();
    }
  };
  next();
}

const NOT_JSON = 'request body is not valid JSON: ';

const GONE = Symbol('client gone');

/** A response that carries its request's ClientGone, for onResponseClose. */
interface GoneAware extends ServerResponse {
  [GONE]?: ClientGone;
}

/** The client went away if the connection closed before the answer was fully written. */
function onResponseClose(this: GoneAware): void {
  if (!this.writableFinished) this[GONE]?.abort();
}

/** The body as Fastify's content-type parser in server.ts reads it: blank is no body, else JSON. */
export function parseBody(text: string | undefined): unknown {
  if (text === undefined || text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EngineError('INVALID_REQUEST', `${NOT_JSON}${(err as Error).message}`);
  }
}

function tooLarge(): EngineError {
  return new EngineError('PAYLOAD_TOO_LARGE', 'request body is larger than the limit');
}
