/**
 * `POST /function/invoke` read on the connection itself, on an HTTP thread, before Node's HTTP
 * server sees it. Node's server builds an IncomingMessage and a ServerResponse, with their streams
 * and events, for every request; per core that was most of what set an invocation apart from a
 * bare Node server answering the same call (docs/runtime.md has the figures). So each new
 * connection is first read here, by a deliberately narrow reader of HTTP/1.1. A request it takes
 * is whole in what has arrived, is `POST /function/invoke` over HTTP/1.1 with one Host, at most
 * one Authorization (which must carry the credentials when invocations need them) and one plain
 * Content-Length within the body limit, and has no header that asks for more (Transfer-Encoding,
 * Expect, Upgrade, a Connection other than keep-alive or close, an obsolete line folding, a
 * control character). Pipelined requests run at once, as on Node's server, and are answered in
 * order; a connection holds at most MAX_PIPELINED calls, MAX_PENDING_BYTES unread and
 * MAX_UNSENT_BYTES of answers its client has not taken before it stops reading. Anything else —
 * another route, a request still on its way while no call runs, a request this reader is unsure
 * of, a closing server — hands the connection, with every byte read so far, to Node's server for
 * good, at a request boundary (once the answers before it are written), where Node parses it from
 * the start as if it had been there all along: its strict parser, its limits and timeouts, the
 * thread's guards and the same route (invoke-route.ts) judge every request this reader does not
 * take. Both write the answer InvokeCalls builds, this one byte for byte as Node's ServerResponse
 * writes it (test/api/invoke-route.test.ts and invoke-conversations.test.ts hold both to answers
 * recorded from Node's server, and test/api/invoke-connection.test.ts the reader to its bounds).
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AnswerWriter, InvokeAnswer } from './invoke-answer.js';
import { ClientGone, isInvokeTarget, type InvokeCalls } from './invoke-route.js';
import { acceptsJson } from './reply.js';

/** Node's own bound on a request head (http.maxHeaderSize's default). */
const MAX_HEAD_BYTES = 16 * 1024;
/** Unread pipelined bytes, and requests taken and not yet answered, past which reading pauses. */
const MAX_PENDING_BYTES = 64 * 1024;
const MAX_PIPELINED = 16;
/**
 * Answers written and not yet taken by the client past which no new request is started (and
 * reading pauses) until the socket drains: a client that pipelines and never reads holds at most
 * this, plus the answers of the requests already running.
 */
const MAX_UNSENT_BYTES = 64 * 1024;
/** How long past keepAliveTimeout Node's server keeps an idle connection (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER). */
const KEEP_ALIVE_GRACE_MS = 1000;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const REQUEST_START = 'POST ';
const REQUEST_END = ' HTTP/1.1';
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What Node's parser refuses in a header value, or what this reader leaves to it. */
const UNSAFE_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const VISIBLE = /^[\x21-\x7e]*$/;

/** A request this reader takes: where its body lies in the buffer, and what the answer depends on. */
interface InvokeRequest {
  bodyStart: number;
  bodyEnd: number;
  accept: string | undefined;
  /** The Authorization header, when the request has exactly one. */
  authorization: string | undefined;
  close: boolean;
}

/** What readInvokeRequest says of a request that may be one to take but has not arrived whole. */
export const INCOMPLETE = 'incomplete';

/**
 * Reads the request at the start of `buf`: the invoke request it is; INCOMPLETE when its head, or
 * the body of an invoke request, has not all arrived; undefined when it is not one this reader
 * takes (see the file comment).
 */
export function readInvokeRequest(buf: Buffer, bodyLimitBytes: number): InvokeRequest | typeof INCOMPLETE | undefined {
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd < 0) return buf.length <= MAX_HEAD_BYTES ? INCOMPLETE : undefined;
  if (headEnd > MAX_HEAD_BYTES) return undefined;
  const lines = buf.toString('latin1', 0, headEnd).split('\r\n');
  const requestLine = lines[0]!;
  if (!requestLine.startsWith(REQUEST_START) || !requestLine.endsWith(REQUEST_END)) return undefined;
  const target = requestLine.slice(REQUEST_START.length, requestLine.length - REQUEST_END.length);
  if (!isInvokeTarget(target) || !VISIBLE.test(target)) return undefined;
  let length = -1;
  let hosts = 0;
  let accept: string | undefined;
  let authorization: string | undefined;
  let authorizations = 0;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (UNSAFE_VALUE.test(value)) return undefined;
    switch (name.toLowerCase()) {
      case 'content-length':
        if (length >= 0 || !/^\d{1,15}$/.test(value)) return undefined;
        length = Number(value);
        break;
      case 'host':
        hosts++;
        break;
      case 'accept':
        // Node joins repeated Accept headers with ", ".
        accept = accept === undefined ? value : `${accept}, ${value}`;
        break;
      case 'authorization':
        authorizations++;
        authorization = value;
        break;
      case 'connection': {
        const token = value.toLowerCase();
        if (token === 'close') close = true;
        else if (token !== 'keep-alive') return undefined;
        break;
      }
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
        return undefined;
    }
  }
  // Node keeps the first of several Authorization headers: left to it, and to the main thread's check.
  if (hosts !== 1 || authorizations > 1 || length < 0 || length > bodyLimitBytes) return undefined;
  const bodyStart = headEnd + HEAD_END.length;
  const bodyEnd = bodyStart + length;
  if (buf.length < bodyEnd) return INCOMPLETE;
  return { bodyStart, bodyEnd, accept, authorization, close };
}

export interface InvokeConnectionsOptions {
  /** Node's server: its connections are read here first, and handed to it. */
  server: Server;
  /** The invocation route's part both transports share (invoke-route.ts). */
  calls: InvokeCalls;
  bodyLimitBytes: number;
  /** False once the server is closing: every connection then goes to Node's server. */
  active: () => boolean;
  /**
   * With Basic auth on invocations: whether a request's Authorization header carries the
   * credentials. One that does not goes to Node's server, whose route passes it on to the
   * main thread's refusal.
   */
  allowed?: (authorization: string | undefined) => boolean;
  /** A request was taken here (the requests Node's server counts are its own). */
  onRequest?: () => void;
  logError: (err: unknown) => void;
}

/** The connections this reader holds; installed on `server` in place of its connection listener. */
export class InvokeConnections {
  private readonly server: Server;
  private readonly open = new Set<InvokeConnection>();
  private nodeListener: ((socket: Socket) => void) | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private dateSecond = -1;
  private dateText = '';

  constructor(private readonly options: InvokeConnectionsOptions) {
    this.server = options.server;
  }

  /**
   * Takes the server's connections from now on. False (and nothing changed) when the server is
   * not as expected: one connection listener (Node's) and no per-socket request cap.
   */
  install(): boolean {
    const listeners = this.server.listeners('connection') as ((socket: Socket) => void)[];
    if (listeners.length !== 1 || this.server.maxRequestsPerSocket) return false;
    this.nodeListener = listeners[0];
    this.server.removeListener('connection', this.nodeListener!);
    this.server.on('connection', this.accept);
    // Idle keep-alive connections end after the server's keepAliveTimeout and a second, as Node's own do.
    this.sweeper = setInterval(() => this.sweep(), 1_000);
    this.sweeper.unref();
    this.server.once('close', () => clearInterval(this.sweeper));
    return true;
  }

  /** The server is closing: idle connections end now, busy ones after their answer. */
  closeIdle(): void {
    for (const connection of this.open) connection.closeWhenIdle();
  }

  private readonly accept = (socket: Socket): void => {
    if (!this.options.active()) {
      this.nodeListener!.call(this.server, socket);
      return;
    }
    this.open.add(new InvokeConnection(this, socket));
  };

  /** @internal A connection leaves this reader: to Node's server, or closed. */
  release(connection: InvokeConnection, handOver: boolean): void {
    this.open.delete(connection);
    if (handOver) this.nodeListener!.call(this.server, connection.socket);
  }

  /** @internal */
  read(buf: Buffer): InvokeRequest | typeof INCOMPLETE | undefined {
    const { active, bodyLimitBytes, allowed } = this.options;
    if (!active()) return undefined;
    const request = readInvokeRequest(buf, bodyLimitBytes);
    if (request === undefined || request === INCOMPLETE || allowed === undefined || allowed(request.authorization)) return request;
    return undefined;
  }

  /** @internal */
  run(text: string | undefined, accept: string | undefined, started: number, gone: ClientGone, write: AnswerWriter): void {
    this.options.onRequest?.();
    this.options.calls.run(text, acceptsJson(accept), started, gone, write);
  }

  /**
   * @internal The answer as Node's ServerResponse writes it after writeHead(status, headers);
   * `last`: the connection ends after it.
   */
  serialize(answer: InvokeAnswer, last: boolean): string {
    let text = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'unknown'}\r\n`;
    const headers = answer.headers;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    text += `Date: ${this.date()}\r\n`;
    // An answer that carries its own `connection: close` gets no second Connection header.
    if (last && !answer.close) text += 'Connection: close\r\n';
    else if (!last) {
      text += 'Connection: keep-alive\r\n';
      // As Node: any timeout is announced, in whole seconds, so one under a second as 0.
      const timeout = this.server.keepAliveTimeout;
      if (timeout) text += `Keep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n`;
    }
    return `${text}\r\n${answer.body}`;
  }

  /** @internal */
  reportError(err: unknown): void {
    this.options.logError(err);
  }

  /** Node's Date header: the time to the second, formatted once a second. */
  private date(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateText = new Date(now).toUTCString();
    }
    return this.dateText;
  }

  private sweep(): void {
    const timeout = this.server.keepAliveTimeout;
    if (!timeout) return;
    // Not before Node would: a client may keep a connection up to the announced timeout.
    const before = performance.now() - timeout - KEEP_ALIVE_GRACE_MS;
    for (const connection of this.open) connection.endIfIdleSince(before);
  }
}

/** One request taken on a connection: its call, and once answered, the answer's bytes. */
interface Exchange {
  gone: ClientGone;
  /** The request asked to close the connection after it. */
  close: boolean;
  /** The answer as written, once there is one; answers leave in request order. */
  bytes: string | undefined;
  /** The connection ends after this answer. */
  last: boolean;
  /** A long answer's body, written in chunked pieces after `bytes` (its head). */
  chunks: Iterator<string> | undefined;
}

/**
 * One connection while this reader holds it. Pipelined requests run at once, as Node's server
 * runs them, and their answers are written in request order.
 */
class InvokeConnection {
  /** Bytes read and not yet consumed. */
  private pending: Buffer | undefined;
  /** Requests taken and not yet answered on the wire, oldest first. */
  private readonly exchanges: Exchange[] = [];
  /** A request this reader does not take waits at the head of `pending` for the answers before it. */
  private handOverWhenDone = false;
  /** A request asked to close: nothing after it is read. */
  private lastTaken = false;
  private idleSince = performance.now();
  private closing = false;
  private paused = false;
  private released = false;
  /** The answer whose pieces are being written; the answers behind it wait. */
  private streaming: Exchange | undefined;

  constructor(
    private readonly owner: InvokeConnections,
    readonly socket: Socket,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
    socket.on('drain', this.onDrain);
  }

  closeWhenIdle(): void {
    this.closing = true;
    if (this.idle()) this.socket.destroy();
  }

  endIfIdleSince(before: number): void {
    if (this.idle() && this.idleSince < before) this.socket.destroy();
  }

  private idle(): boolean {
    return this.exchanges.length === 0 && this.streaming === undefined;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.pending = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.take();
  };

  /** Takes the whole invocation requests at the head of `pending`; the first other one waits for a hand-over. */
  private take(): void {
    // Waiting for the answers before anything more is read: the connection is not read meanwhile.
    // Were it read, each byte a client dribbles in would cost a copy and a scan of all it sent
    // before (up to MAX_PENDING_BYTES each: quadratic), on the thread that serves every client.
    let waiting = this.handOverWhenDone || this.lastTaken;
    while (this.pending !== undefined && !waiting) {
      if (this.exchanges.length >= MAX_PIPELINED || this.socket.writableLength > MAX_UNSENT_BYTES) break;
      const buf = this.pending;
      const request = this.owner.read(buf);
      // The rest of a pipelined request is on its way while earlier ones run: read on once they
      // are answered. With none running, Node's server takes the connection, with its timeouts
      // for slow requests.
      if (request === INCOMPLETE && this.exchanges.length > 0) {
        waiting = true;
        break;
      }
      // Bytes after a request with `Connection: close` are an error to Node's parser (llhttp's
      // "Data after `Connection: close`"; line ends aside), which Fastify answers 400 in place of
      // the answer: such a request goes to Node's server with them, to be answered as it answers.
      if (request === undefined || request === INCOMPLETE || (request.close && request.bodyEnd < buf.length)) {
        this.handOverWhenDone = true;
        waiting = true;
        break;
      }
      const started = performance.now();
      this.pending = request.bodyEnd === buf.length ? undefined : buf.subarray(request.bodyEnd);
      const exchange: Exchange = { gone: new ClientGone(), close: request.close, bytes: undefined, last: false, chunks: undefined };
      this.exchanges.push(exchange);
      if (request.close) {
        this.lastTaken = true;
        waiting = true;
      }
      const text = request.bodyEnd === request.bodyStart ? undefined : buf.toString('utf8', request.bodyStart, request.bodyEnd);
      this.owner.run(text, request.accept, started, exchange.gone, (answer) => this.answer(exchange, answer));
    }
    if (this.handOverWhenDone && this.idle()) {
      this.handOver();
      return;
    }
    // Reading pauses while many requests or many bytes wait, as Node's server stops reading when
    // its answers back up.
    const full =
      waiting ||
      this.exchanges.length >= MAX_PIPELINED ||
      (this.pending?.length ?? 0) > MAX_PENDING_BYTES ||
      this.socket.writableLength > MAX_UNSENT_BYTES;
    if (full !== this.paused) {
      this.paused = full;
      if (full) this.socket.pause();
      else this.socket.resume();
    }
  }

  private answer(exchange: Exchange, answer: InvokeAnswer): boolean {
    // An exchange leaves the line unanswered only through abortAll or after a last answer, both of
    // which abort it.
    if (exchange.gone.aborted || this.socket.destroyed) return false;
    exchange.last = exchange.close || answer.close || this.closing;
    try {
      exchange.bytes = this.owner.serialize(answer, exchange.last);
      exchange.chunks = answer.chunks;
    } catch (err) {
      // Called from promise callbacks: nothing may throw out of here. The answers before this one
      // are written; this client gets no more.
      this.owner.reportError(err);
      exchange.bytes = '';
      exchange.last = true;
    }
    this.flush();
    return true;
  }

  /** Writes the answers at the head of the line; after a last one the connection ends. */
  private flush(): void {
    const exchanges = this.exchanges;
    while (this.streaming === undefined && exchanges.length > 0 && exchanges[0]!.bytes !== undefined) {
      const exchange = exchanges.shift()!;
      try {
        this.socket.write(exchange.bytes!);
      } catch (err) {
        this.owner.reportError(err);
        this.socket.destroy();
        return;
      }
      if (exchange.chunks !== undefined) {
        this.streaming = exchange;
        this.stream();
        return;
      }
      if (exchange.last) {
        this.endAfterLast();
        return;
      }
    }
    if (this.idle()) this.idleSince = performance.now();
    this.take();
  }

  /**
   * Writes the pieces of the answer being streamed, in HTTP chunks, while the socket takes them;
   * 'drain' brings it back. Then the answers behind it.
   */
  private stream(): void {
    const exchange = this.streaming!;
    const chunks = exchange.chunks!;
    try {
      for (;;) {
        if (this.socket.destroyed) {
          this.streaming = undefined;
          return;
        }
        const piece = chunks.next();
        if (piece.done === true) break;
        if (piece.value === '') continue;
        if (!this.socket.write(`${Buffer.byteLength(piece.value).toString(16)}\r\n${piece.value}\r\n`)) return;
      }
      this.socket.write('0\r\n\r\n');
    } catch (err) {
      this.owner.reportError(err);
      this.streaming = undefined;
      this.socket.destroy();
      return;
    }
    this.streaming = undefined;
    if (exchange.last) {
      this.endAfterLast();
      return;
    }
    this.flush();
  }

  /** As Node after a last answer: the calls behind it are dropped; end, and close once written. */
  private endAfterLast(): void {
    for (const dropped of this.exchanges.splice(0)) dropped.gone.abort();
    this.pending = undefined;
    this.socket.end();
    this.socket.once('finish', () => this.socket.destroy());
  }

  /** The connection goes to Node's server with every byte not yet consumed; this reader lets go. */
  private handOver(): void {
    if (this.released) return;
    this.released = true;
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('close', this.onClose);
    socket.removeListener('error', this.onError);
    socket.removeListener('drain', this.onDrain);
    // Buffered rather than emitted: nothing listens for 'data' until Node's server does.
    if (this.pending !== undefined) socket.unshift(this.pending);
    this.pending = undefined;
    if (this.paused) socket.resume();
    this.owner.release(this, true);
  }

  /** Every call not yet answered on the wire is dropped (its client is gone). */
  private abortAll(): void {
    for (const exchange of this.exchanges.splice(0)) exchange.gone.abort();
  }

  /** What the client did not read has gone out: requests waiting for that can start. */
  private readonly onDrain = (): void => {
    if (this.released || this.socket.destroyed) return;
    if (this.streaming !== undefined) this.stream();
    else this.take();
  };

  /** The client ended its side: as Node's server, which ends the connection and drops the calls in flight. */
  private readonly onEnd = (): void => {
    this.abortAll();
    this.socket.end();
  };

  private readonly onClose = (): void => {
    this.streaming = undefined;
    this.abortAll();
    if (!this.released) {
      this.released = true;
      this.owner.release(this, false);
    }
  };

  // 'close' follows; Node's server likewise only lets such a socket go.
  private readonly onError = (): void => {};
}
