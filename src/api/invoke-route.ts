/**
 * `POST /function/invoke`, the hot route. Its one implementation is InvokeCalls: the body checked,
 * the call run, the answer built, written and observed. Two transports read requests into it. On
 * an HTTP thread, most invocations are read by the connection reader (invoke-connection.ts); the
 * rest, on connections it has handed to Node's server, come from Node's `request` event to the
 * route below on Node's request and response (skipping Fastify's per-request machinery: routing,
 * hooks, request and reply objects, content-type parser, ajv), as do those of a Fastify server
 * built alone (server.ts's route; tests). Everything a client observes is what SPEC §2 and the
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
import { invokeAnswer, type AnswerWriter, type InvokeAnswer } from './invoke-answer.js';
import { lingerAfterAnswer } from './linger.js';
import { INVOKE_ROUTE, acceptsJson } from './reply.js';
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

/** Whether a request target is the invocation route (with or without a query string). */
export function isInvokeTarget(url: string): boolean {
  if (!url.startsWith(INVOKE_ROUTE)) return false;
  return url.length === INVOKE_ROUTE.length || url.charCodeAt(INVOKE_ROUTE.length) === QUERY;
}

/** Whether a request is the invocation route. */
export function isInvokeRequest(req: IncomingMessage): boolean {
  const url = req.url;
  return req.method === 'POST' && url !== undefined && isInvokeTarget(url);
}

/**
 * What both transports share once a request's whole body is read: the body checked, the call run
 * by the engine, its answer built (answers that cannot be built become 500 INTERNAL), written
 * through the transport's writer and observed in the metrics.
 */
export class InvokeCalls {
  constructor(private readonly options: Pick<InvokeRouteOptions, 'engine' | 'observe' | 'logError'>) {}

  /**
   * Runs the invocation a whole body (`undefined`: none was sent) asks for; true when it was
   * answered at once (a check that failed, or a call that ran inline), before any client could go.
   */
  run(text: string | undefined, json: boolean, started: number, gone: ClientGone, write: AnswerWriter): boolean {
    let fields: InvokeFields;
    try {
      fields = checkInvokeBody(parseBody(text));
    } catch (err) {
      // A body that is not JSON ends the connection, a well-formed one of the wrong shape does not.
      const close = err instanceof EngineError && err.message.startsWith(NOT_JSON);
      this.send(write, json, toEngineError(err), '', close, started);
      return true;
    }
    let ran: InvocationResult | Promise<InvocationResult>;
    try {
      ran = this.options.engine.invoke({ name: fields.name, args: fields.args, signal: gone });
    } catch (err) {
      ran = Promise.reject(err);
    }
    if (!(ran instanceof Promise)) {
      this.send(write, json, undefined, ran.output, false, started);
      return true;
    }
    ran.then(
      (result) => this.send(write, json, undefined, result.output, false, started),
      (error: unknown) => {
        const err = toEngineError(error);
        if (err.code === 'INTERNAL') this.options.logError(error);
        this.send(write, json, err, '', false, started);
      },
    );
    return false;
  }

  /** Answers a request refused before its body was read or parsed; the connection then ends. */
  refuse(json: boolean, started: number, err: EngineError, write: AnswerWriter): void {
    this.send(write, json, err, '', true, started);
  }

  /**
   * Builds and writes one answer. Called from promise callbacks, where a throw would be an
   * unhandled rejection (which ends the process): an answer that cannot be built (a string past
   * V8's length limit, say) becomes 500 INTERNAL, and one that cannot be written is the writer's
   * to drop with its socket.
   */
  private send(write: AnswerWriter, json: boolean, err: EngineError | undefined, output: string, close: boolean, started: number): void {
    let answer: InvokeAnswer;
    try {
      answer = invokeAnswer(json, err, output, close);
    } catch (buildError) {
      this.options.logError(buildError);
      answer = invokeAnswer(json, new EngineError('INTERNAL', 'the answer could not be built'), '', close);
    }
    if (write(answer)) this.options.observe?.(answer.status, (performance.now() - started) / 1000);
  }
}

/** Answers one POST /function/invoke request. */
export type InvokeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The route on Node's request and response; `calls`: the part shared with the connection reader. */
export function invokeRoute(options: InvokeRouteOptions, calls = new InvokeCalls(options)): InvokeHandler {
  const route = new InvokeRoute(options, calls);
  return (req, res) => route.handle(req, res);
}

/** One invocation on Node's request and response: the body read within the limit, then the shared part. */
class InvokeRoute {
  constructor(
    private readonly options: InvokeRouteOptions,
    private readonly calls: InvokeCalls,
  ) {}

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

  private invoke(req: IncomingMessage, res: ServerResponse, started: number, text: string | undefined): void {
    const gone = new ClientGone();
    if (this.calls.run(text, acceptsJson(req.headers.accept), started, gone, this.writer(res))) return;
    // A shared hook (rather than a closure and `once`'s wrapper per request) finds the signal on
    // the response: 'close' comes once. Set after run: its promise settles in a later turn.
    (res as GoneAware)[GONE] = gone;
    whenClosed(res, onResponseClose);
  }

  /** A request refused before its body was read or parsed: the connection then ends. */
  private refuse(req: IncomingMessage, res: ServerResponse, started: number, err: EngineError): void {
    this.calls.refuse(acceptsJson(req.headers.accept), started, err, this.writer(res));
    if (err.code === 'PAYLOAD_TOO_LARGE') lingerAfterAnswer(req, res, this.options.bodyLimitBytes);
  }

  /** Writes an answer on Node's response (false when that threw: the socket then goes). */
  private writer(res: ServerResponse): AnswerWriter {
    const { logError, closing } = this.options;
    return (answer) => {
      if (closing?.() === true) res.shouldKeepAlive = false;
      try {
        res.writeHead(answer.status, answer.headers);
        if (answer.chunks !== undefined) pipeChunks(res, answer.chunks, logError);
        else res.end(answer.body);
        return true;
      } catch (writeError) {
        logError(writeError);
        res.destroy();
        return false;
      }
    };
  }
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
