/**
 * Requests refused before any route runs — by Node's HTTP parser (two Content-Lengths, Content-
 * Length with Transfer-Encoding, a bare LF, a head past the size limit, a request that never
 * arrives whole) or by Fastify's router (a URL it cannot decode, a path parameter past its length
 * limit) — answered in the error shape of SPEC §2 like every other error: the historical text line
 * by default, the JSON object when the request's Accept header asks for it and can be read.
 */
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { EngineError } from '../errors.js';
import { ERROR_STATUS } from './error-status.js';
import { isLingering, lingerOnSocket } from './linger.js';
import { JSON_TYPE, TEXT_TYPE, acceptsJson, errorObject, errorText, textLine } from './reply.js';

/** What Node's `clientError` event carries besides the error. */
interface ClientError extends Error {
  code?: string;
  /** llhttp's wording of what it refused ("Duplicate Content-Length", …). */
  reason?: string;
  /** The bytes the parser was reading when it failed. */
  rawPacket?: Buffer;
  /** Where in rawPacket it failed. */
  bytesParsed?: number;
}

/** The §2 error for a request Node's parser (or its request timer) refused. */
export function clientErrorOf(err: ClientError): EngineError {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new EngineError('REQUEST_TIMEOUT', 'the request did not arrive whole in time');
    case 'HPE_HEADER_OVERFLOW':
      return new EngineError('HEADERS_TOO_LARGE', 'the request head is larger than the limit');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new EngineError('PAYLOAD_TOO_LARGE', 'the chunk extensions are larger than the limit');
    default: {
      const reason = typeof err.reason === 'string' && err.reason !== '' ? err.reason : err.message;
      return new EngineError('INVALID_REQUEST', `malformed HTTP request: ${reason}${err.code ? ` (${err.code})` : ''}`);
    }
  }
}

const HEAD_END = '\r\n\r\n';
/** How much of a packet is looked through for the failed request's head. */
const HEAD_SCAN_CHARS = 64 * 1024;
/** Failures llhttp reports in a request's body or after it, rather than in a head. */
const BODY_FAILURES = new Set(['HPE_INVALID_CHUNK_SIZE', 'HPE_CHUNK_EXTENSIONS_OVERFLOW', 'HPE_CLOSED_CONNECTION']);

/**
 * An Accept header asking for JSON in the head of the request the parser failed on, when its bytes
 * were kept. A read may hold requests before that one (already answered, with their own Accept),
 * and the same request may come to the parser with or without them (the invocation reader hands
 * Node only what it did not answer), so only the failed request's head counts: the last head
 * before the failure when it is in that request's body (a bad chunk, bytes after `Connection:
 * close`), else the head the failure is in; a failure at the first byte after a whole request is a
 * new request without a readable head.
 */
function askedJson(err: ClientError): boolean {
  const raw = err.rawPacket;
  if (!Buffer.isBuffer(raw)) return false;
  const at = Math.min(Math.max(typeof err.bytesParsed === 'number' ? err.bytesParsed : 0, 0), raw.length);
  const from = Math.max(0, at - HEAD_SCAN_CHARS);
  const before = raw.toString('latin1', from, at);
  const lastEnd = before.lastIndexOf(HEAD_END);
  let head: string;
  if (BODY_FAILURES.has(err.code ?? '')) {
    if (lastEnd < 0) return false;
    const previous = before.lastIndexOf(HEAD_END, lastEnd - 1);
    head = before.slice(previous < 0 ? 0 : previous + HEAD_END.length, lastEnd);
  } else if (lastEnd >= 0 && lastEnd + HEAD_END.length === before.length) {
    return false;
  } else {
    const start = lastEnd < 0 ? 0 : lastEnd + HEAD_END.length;
    const after = raw.toString('latin1', at, Math.min(raw.length, at + HEAD_SCAN_CHARS));
    const end = after.indexOf(HEAD_END);
    head = before.slice(start) + (end < 0 ? after : after.slice(0, end));
  }
  const accept = /\r?\naccept[ \t]*:([^\r\n]*)/i.exec(head);
  return accept !== null && acceptsJson(accept[1]);
}

/** The whole HTTP answer for `err`, closing the connection (the parser's state is lost). */
export function rawErrorAnswer(err: EngineError, json: boolean): string {
  const status = ERROR_STATUS[err.code];
  const body = errorBody(err, json);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n` +
    `Content-Type: ${json ? JSON_TYPE : TEXT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `Connection: close\r\n\r\n${body}`
  );
}

/**
 * Fastify's clientErrorHandler: as its default (and Node's), a reset connection is left alone and
 * the answer closes the connection; only the body differs. Sent with end() rather than destroy():
 * the answer then goes out before the connection closes.
 */
export function onClientError(error: Error, socket: Socket): void {
  const err = error as ClientError;
  if (err.code === 'ECONNRESET' || socket.destroyed || isLingering(socket)) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // Node's server may give an answer at once (a 404, a 400 for a bad body, a 413) to a request
  // before failing on the bytes after it in the same read: that answer may still be on the socket
  // here. Nothing is written into an answer being written (it is cut, as Node's own handler cuts
  // it) nor after one that said `Connection: close` (Node's `_last`; it is written, then the
  // connection closes). After a whole answer that keeps the connection, the error answer follows.
  const held = socket as HeldSocket;
  if (held[WAITING] === true) return;
  const answering = held._httpMessage;
  // An answer on its way to a whole request before the failed bytes (one passed on to the main
  // thread, or a route that answers later), not yet begun or still being written, that keeps the
  // connection goes out first, as it would have had it come at once; then this is decided again.
  // The socket is not read meanwhile. (After a request that asked to close, Node's 400 for the
  // bytes that follow takes its answer's place; a request whose own body failed gets the 400 now:
  // the rest of its body will never come.)
  if (answering && !answering.writableEnded && !answering.destroyed && answering.shouldKeepAlive && answering.req?.complete === true) {
    held[WAITING] = true;
    socket.pause();
    const decide = (): void => {
      held[WAITING] = false;
      onClientError(error, socket);
    };
    answering.once('finish', decide);
    answering.once('close', () => {
      if (!answering.writableFinished) socket.destroy();
    });
    return;
  }
  if (answering?.headersSent) {
    if (!answering.writableEnded) {
      socket.destroy();
      return;
    }
    if (answering._last === true) {
      endSocket(socket);
      return;
    }
  }
  endSocket(socket, rawErrorAnswer(clientErrorOf(err), askedJson(err)));
}

const WAITING = Symbol('parse error waits for an answer');

interface HeldSocket extends Socket {
  /** Node's server's response being written on this connection, if any. */
  _httpMessage?: (ServerResponse & { _last?: boolean }) | null;
  [WAITING]?: boolean;
}

/**
 * Ends the connection after `last` and what is already written, then lingers (linger.ts): the
 * client may still be sending the bytes the parser refused, and a close with them unread would
 * reset the connection under the answer.
 */
function endSocket(socket: Socket, last?: string): void {
  try {
    if (last === undefined) socket.end();
    else socket.end(last);
  } catch {
    socket.destroy();
    return;
  }
  lingerOnSocket(socket);
}

/**
 * Node's server answers an HTTP/1.1 request without Host itself, before any listener sees it, with
 * an empty 400 (RFC 9112 §3.2 asks for the 400): with `requireHostHeader` off on the server, this
 * request listener in front of `server`'s own gives the same 400 in the §2 shape, and closes.
 * False (nothing changed) when the server has not exactly one request listener.
 */
export function refuseRequestsWithoutHost(server: Server): boolean {
  const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  const inner = listeners[0];
  if (listeners.length !== 1 || inner === undefined) return false;
  server.removeListener('request', inner);
  (server as { requireHostHeader?: boolean }).requireHostHeader = false;
  const hostless = (req: IncomingMessage): boolean => req.headers.host === undefined && req.httpVersion === '1.1';
  // Node's own handling of `Expect: 100-continue`, but for a request refused here: Node checked
  // the Host before inviting the body, and so does this.
  if (server.listenerCount('checkContinue') === 0) {
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (!hostless(req)) res.writeContinue();
      server.emit('request', req, res);
    });
  }
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!hostless(req)) {
      inner.call(server, req, res);
      return;
    }
    writeError(res, new EngineError('INVALID_REQUEST', 'an HTTP/1.1 request must have a Host header'), req.headers.accept, true);
  });
  return true;
}

/** What onFrameworkError uses of Fastify's request and reply (whose types depend on the server's). */
interface BareRequest {
  headers: { accept?: string | undefined };
}
interface BareReply {
  raw: ServerResponse;
}

/** Fastify's frameworkErrors: a URL it cannot decode, a path parameter too long, a failed constraint. */
export function onFrameworkError(error: Error & { code?: string }, request: BareRequest, reply: BareReply): void {
  const err =
    error.code === 'FST_ERR_ASYNC_CONSTRAINT'
      ? new EngineError('INTERNAL', error.message)
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new EngineError('INVALID_REQUEST', 'a path segment of the URL is longer than the limit')
        : new EngineError('INVALID_REQUEST', `the URL is not valid: ${error.message}`);
  // No route context here: the answer is written as Fastify's own default writes it, in the management form.
  writeError(reply.raw, err, request.headers.accept, false);
}

/** The §2 error body in the management form (these answers come before any route). */
function errorBody(err: EngineError, json: boolean): string {
  return json ? JSON.stringify(errorObject(err)) : textLine(ERROR_STATUS[err.code], errorText(err), false);
}

/** Writes `err` on `res` in the format `accept` asks for; `close`: the connection ends after it. */
function writeError(res: ServerResponse, err: EngineError, accept: string | undefined, close: boolean): void {
  const json = acceptsJson(accept);
  const body = errorBody(err, json);
  const headers: Record<string, string | number> = { 'content-type': json ? JSON_TYPE : TEXT_TYPE, 'content-length': Buffer.byteLength(body) };
  if (close) headers.connection = 'close';
  res.writeHead(ERROR_STATUS[err.code], headers);
  res.end(body);
}
