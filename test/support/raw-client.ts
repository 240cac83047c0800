/**
 * A raw HTTP/1.1 client connection for tests that hold whole conversations byte by byte: what the
 * server wrote (latin1 text, one character a byte), split into answers, and whether it closed.
 */
import { connect, type Socket } from 'node:net';

/** A raw client connection; everything is kept as latin1 text, one character a byte. */
export class Client {
  readonly socket: Socket;
  closed = false;
  private received = '';
  private waiters: (() => void)[] = [];

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.received += chunk.toString('latin1');
      this.wake();
    });
    // A server that answers before reading a body may reset the connection.
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** What the server wrote, Date headers left out. */
  text(): string {
    return withoutDate(this.received);
  }

  /** The whole answers received so far. */
  answers(): string[] {
    return splitAnswers(this.received, this.closed).map(withoutDate);
  }

  /** Resolves once `count` whole answers (interim 1xx included) have come, or the connection closed. */
  async waitAnswers(count: number, timeoutMs = 5_000): Promise<string[]> {
    await this.until(() => this.answers().length >= count || this.closed, timeoutMs);
    return this.answers();
  }

  /** Resolves once the server closed the connection, or after `ms`: whether it is closed. */
  async closedWithin(ms: number): Promise<boolean> {
    await this.until(() => this.closed, ms);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  private until(done: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      const check = (): void => {
        if (done()) finish();
        else this.waiters.push(check);
      };
      function finish(): void {
        clearTimeout(timer);
        resolve();
      }
      check();
    });
  }
}

/**
 * Splits what a server wrote into its answers: 1xx without a body, then by Content-Length, by
 * chunks, or to the close.
 */
export function splitAnswers(text: string, closed: boolean): string[] {
  const answers: string[] = [];
  let at = 0;
  while (at < text.length) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const head = text.slice(at, headEnd);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    let end: number;
    if (status >= 100 && status < 200) end = headEnd + 4;
    else if (length) end = headEnd + 4 + Number(length[1]);
    else if (/\r\ntransfer-encoding: *chunked/i.test(head)) end = chunksEnd(text, headEnd + 4);
    else if (closed) end = text.length;
    else break;
    if (end < 0 || end > text.length) break;
    answers.push(text.slice(at, end));
    at = end;
  }
  return answers;
}

/** Where the chunked body starting at `at` ends (trailers left out), or -1 when it has not all come. */
function chunksEnd(text: string, at: number): number {
  for (;;) {
    const lineEnd = text.indexOf('\r\n', at);
    if (lineEnd < 0) return -1;
    const size = parseInt(text.slice(at, lineEnd), 16);
    if (size === 0) return text.startsWith('\r\n', lineEnd + 2) ? lineEnd + 4 : -1;
    at = lineEnd + 2 + size + 2;
  }
}

export const withoutDate = (answer: string): string => answer.replace(/^date: .*\r\n/gim, '');

