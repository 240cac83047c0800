/**
 * On an HTTP thread, every request but a direct invocation goes to the main thread's own Fastify
 * server (over a unix socket it listens on for this alone, http-threads.ts), so that management,
 * OpenFaaS, metrics and authenticated routes have one implementation and one owner. The request
 * goes as it came (method, URL, headers in their order and case, body as it streams), the answer
 * comes back as it was given; only the hop-by-hop headers are left to each side's own connection.
 * An answer that ends its connection there ends the client's here, a 413 lingers as it does there
 * (linger.ts), and a client that goes away aborts the request upstream.
 */
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { EngineError } from '../../errors.js';
import { ERROR_STATUS } from '../error-status.js';
import { lingerAfterAnswer } from '../linger.js';
import { JSON_TYPE, TEXT_TYPE, acceptsJson, errorObject, errorText, textLine } from '../reply.js';

/** Headers about one connection rather than the message (RFC 9110 §7.6.1), and Expect, which this side already answered. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

export interface ProxyOptions {
  agent: Agent;
  socketPath: string;
  bodyLimitBytes: number;
  /** True once the thread stops: answers then end their connection. */
  closing: () => boolean;
  logError: (err: unknown) => void;
}

export type ProxyHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function proxyToMain(options: ProxyOptions): ProxyHandler {
  return (req, res) => {
    const headers = withoutHopByHop(req.rawHeaders);
    // No length and not chunked: no body, which a POST sent on without a length would not say.
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) headers.push('content-length', '0');
    // A chunked body goes on chunked: without a framing header Node's client writes the body of a
    // HEAD or GET bare, and the main thread would read it as the next request.
    else if (req.headers['transfer-encoding'] !== undefined) headers.push('transfer-encoding', 'chunked');
    // An HTTP/1.0 request may come without Host (a health check, say); it goes on as HTTP/1.1,
    // which must have one, or the main thread would refuse it as it refuses a 1.1 request without.
    if (req.headers.host === undefined) {
      const address = req.socket.localAddress ?? 'localhost';
      headers.push('host', `${address.includes(':') ? `[${address}]` : address}:${req.socket.localPort ?? 0}`);
    }
    // A body declared past the limit is refused by the main thread from the head alone, and its
    // connection closed under a body still being written there; so the head goes alone, on a
    // connection of its own, and this side drops the body (the answer lingers on a 413, and Node
    // drops the rest of a request whose answer keeps the connection).
    const headOnly = Number(req.headers['content-length']) > options.bodyLimitBytes;
    let upstream: ReturnType<typeof httpRequest>;
    try {
      upstream = httpRequest({
        ...(headOnly ? { agent: false } : { agent: options.agent }),
        socketPath: options.socketPath,
        method: req.method,
        path: req.url,
        headers,
        setHost: false,
      });
    } catch (err) {
      answerError(req, res, new EngineError('INVALID_REQUEST', `malformed HTTP request: ${(err as Error).message}`));
      return;
    }
    let relayed = false;
    upstream.on('response', (answer) => {
      answer.on('end', () => {
        relayed = true;
      });
      relay(req, res, answer, options);
    });
    upstream.on('error', (err) => {
      // After the whole answer (a 413's upstream closing on the body it refused, say), nothing to do.
      if (relayed) return;
      if (res.headersSent) res.destroy();
      else {
        options.logError(err);
        answerError(req, res, new EngineError('UNAVAILABLE', 'the engine did not answer'));
      }
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (!headOnly) sendBody(req, upstream, options.bodyLimitBytes);
    else {
      upstream.flushHeaders();
      upstream.on('response', (answer) => answer.on('end', () => upstream.destroy()));
    }
  };
}

/**
 * The body within the limit goes with the head in one write, once whole: the main thread answers
 * only after reading all of it, and may close its end at once (a body that is not JSON); a write
 * of ours after that failed with EPIPE before Node read the answer already there, and the client
 * got 503 rather than its 400. A body past the limit (sent chunked, so not refused from its head)
 * streams on from there; the main thread refuses it as it reads.
 */
function sendBody(req: IncomingMessage, upstream: ClientRequest, limit: number): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size <= limit) {
      chunks.push(chunk);
      return;
    }
    req.off('data', onData);
    req.off('end', onEnd);
    for (const held of chunks) upstream.write(held);
    upstream.write(chunk);
    req.pipe(upstream);
  };
  const onEnd = (): void => {
    upstream.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  };
  req.on('data', onData);
  req.on('end', onEnd);
  // A client that goes away mid-body: its answer's 'close' destroys the request upstream.
  req.on('error', () => upstream.destroy());
}

function relay(req: IncomingMessage, res: ServerResponse, answer: IncomingMessage, options: ProxyOptions): void {
  // `Connection: close` stays where it was: the client sees the main thread's answer byte for byte.
  const headers = withoutHopByHop(answer.rawHeaders, true);
  const ends = /(^|,)\s*close\s*(,|$)/i.test(answer.headers.connection ?? '');
  if (!ends && options.closing()) headers.push('connection', 'close');
  const status = answer.statusCode ?? 502;
  res.writeHead(status, answer.statusMessage, headers);
  answer.pipe(res);
  answer.on('error', () => res.destroy());
  // The rest of the body still goes upstream, where the main thread drops it; this side lingers
  // on the client's connection as the main thread does on its own.
  if (status === 413) lingerAfterAnswer(req, res, options.bodyLimitBytes);
}

function withoutHopByHop(raw: string[], keepClose = false): string[] {
  const kept: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) || (keepClose && name === 'connection' && /(^|,)\s*close\s*(,|$)/i.test(raw[i + 1]!))) kept.push(raw[i]!, raw[i + 1]!);
  }
  return kept;
}

/** An answer of the main thread's shape when it could not be asked. */
function answerError(req: IncomingMessage, res: ServerResponse, err: EngineError): void {
  const json = acceptsJson(req.headers.accept);
  const status = ERROR_STATUS[err.code];
  const body = json ? JSON.stringify(errorObject(err)) : textLine(status, errorText(err), false);
  res.writeHead(status, { 'content-type': json ? JSON_TYPE : TEXT_TYPE, 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}
