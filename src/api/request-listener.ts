/**
 * A server's request listeners folded into one: Node's EventEmitter copies the listener array on
 * every emit when there are two or more, and calls each, so a bookkeeping listener beside the one
 * that answers costs every request an allocation. Here it runs inside that one listener instead,
 * in the order the two listeners would have run.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Has `also` run on every request `server` emits, `before` or after its request listener, within
 * that listener when it has exactly one (else as a listener of its own, prepended or appended).
 */
export function alsoOnRequest(server: Server, also: (req: IncomingMessage) => void, order: 'before' | 'after'): void {
  const listeners = server.listeners('request') as Listener[];
  const inner = listeners[0];
  if (listeners.length !== 1 || inner === undefined) {
    if (order === 'before') server.prependListener('request', also);
    else server.on('request', also);
    return;
  }
  server.removeListener('request', inner);
  server.on(
    'request',
    order === 'before'
      ? (req: IncomingMessage, res: ServerResponse) => {
          also(req);
          inner.call(server, req, res);
        }
      : (req: IncomingMessage, res: ServerResponse) => {
          inner.call(server, req, res);
          also(req);
        },
  );
}
