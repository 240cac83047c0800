/**
 * A last answer a client can read while it is still sending: a 413 while the body it was refused
 * for still comes (README, "Oversized bodies"), on every route, and the answer to bytes Node's
 * parser refused while more of them come. Closed at once with unread bytes, a socket sends a
 * reset, and the client's system may throw away the answer before the client reads it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** How much more of a refused body is read and dropped after the 413 answer (README, "Oversized bodies"). */
export const LINGER_BYTES = 8 * 1024 * 1024;
/** How long the rest of a refused body is waited for after the 413 answer. */
export const LINGER_MS = 5_000;

/**
 * After a 413 answered while the client may still be sending its body: the answer goes out and
 * the connection is half-closed at once, as Node would, but the rest of the body is read and
 * dropped — up to LINGER_BYTES more (a body declared larger still is not waited for), for up to
 * LINGER_MS — before the socket closes. Closed at once with unread bytes, the client gets a
 * reset, often before it reads the answer (EPIPE while it is still writing).
 */
export function lingerAfterAnswer(req: IncomingMessage, res: ServerResponse, bodyLimitBytes: number): void {
  const socket = res.socket;
  const declared = Number(req.headers['content-length'] ?? 0);
  const excess = Number.isNaN(declared) ? 0 : declared - bodyLimitBytes;
  if (socket === null || excess > LINGER_BYTES) return;
  const cut = dropWithin(socket, req);
  // The whole body came: closed once the answer is out (it may wait behind pipelined ones).
  const close = (): void => {
    if (!res.writableFinished) {
      res.once('finish', close);
      return;
    }
    cut.disarm();
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  };
  // Node's server ends a `connection: close` exchange with destroySoon(), which closes the
  // socket once the answer is written: on this one socket, only the half-close.
  (socket as { destroySoon?: () => void }).destroySoon = () => socket.end();
  req.once('end', close);
}

const LINGERING = Symbol('lingering');

/**
 * After a last answer on a socket already ended (half-closed): what the client still sends is read
 * and dropped, up to LINGER_BYTES for up to LINGER_MS, and the socket closes once the client ends
 * its side too, or past either bound.
 */
export function lingerOnSocket(socket: Socket): void {
  (socket as { [LINGERING]?: boolean })[LINGERING] = true;
  socket.once('end', dropWithin(socket, socket));
}

/**
 * Reads and drops what `from` (the socket, or its request) still brings, and closes `socket` past
 * LINGER_BYTES or LINGER_MS, whatever is left unsent or unread; the function returned closes it
 * now, and its `disarm` lets it be closed otherwise.
 */
function dropWithin(socket: Socket, from: NodeJS.ReadableStream): (() => void) & { disarm: () => void } {
  let left = LINGER_BYTES;
  const disarm = (): void => clearTimeout(timer);
  const cut = Object.assign((): void => {
    disarm();
    socket.destroy();
  }, { disarm });
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  from.on('data', (chunk: Buffer) => {
    left -= chunk.length;
    if (left < 0) cut();
  });
  socket.once('close', disarm);
  from.resume();
  return cut;
}

/** Whether a socket is lingering after its last answer (what its parser still says of it is moot). */
export function isLingering(socket: Socket): boolean {
  return (socket as { [LINGERING]?: boolean })[LINGERING] === true;
}
