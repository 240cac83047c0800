/**
 * Node's server parses every request in what it has read from a connection and emits them all at
 * once; it stops reading only after that, once answers back up. A client that pipelines small
 * requests and never reads thus gets a whole read's worth (a thousand and more) of calls started,
 * each answer then held in memory until the client reads. Here each connection starts at most
 * MAX_STARTED requests whose answers are not yet written, and none while what it has written and
 * the client has not taken is past MAX_UNSENT_BYTES; the others wait, as bare request objects,
 * until the answers before them go out, and the connection is not read meanwhile (Node's own
 * pause, which nothing would trigger while the started calls write nothing yet: a client that
 * pipelines calls to a slow function would have its every request parsed and held). A client that
 * reads one answer at a time never waits here.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenClose, runCloseHook } from './response-close.js';

const MAX_STARTED = 16;
const MAX_UNSENT_BYTES = 64 * 1024;

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

interface Gate {
  started: number;
  waiting: [IncomingMessage, ServerResponse][];
  /** A 'drain' listener is set. */
  drainSet: boolean;
  listener: Listener;
  server: Server;
}

const GATE = Symbol('pipeline gate');
const SOCKET = Symbol('gated socket');

interface GatedSocket extends Socket {
  [GATE]?: Gate;
  /** Node's server's mark of a connection it paused, which its parser and 'drain' handler honour. */
  _paused?: boolean;
  parser?: { pause(): void; resume(): void } | null;
}

interface GatedResponse extends ServerResponse {
  [SOCKET]?: GatedSocket;
}

/** Puts the gate in front of the server's request listener; false (nothing changed) when there is not exactly one. */
export function gatePipelinedRequests(server: Server): boolean {
  const listeners = server.listeners('request') as Listener[];
  const inner = listeners[0];
  if (listeners.length !== 1 || inner === undefined) return false;
  server.removeListener('request', inner);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as GatedSocket;
    const gate = (socket[GATE] ??= { started: 0, waiting: [], drainSet: false, listener: inner, server });
    if (gate.waiting.length === 0 && gate.started < MAX_STARTED && socket.writableLength <= MAX_UNSENT_BYTES) start(gate, socket, req, res);
    else {
      gate.waiting.push([req, res]);
      // As Node pauses when answers back up: its parser stops after this request, and its 'drain'
      // handler or pump below reads on.
      if (socket._paused !== true) {
        socket._paused = true;
        socket.pause();
      }
      waitForDrain(gate, socket);
    }
  });
  return true;
}

function start(gate: Gate, socket: GatedSocket, req: IncomingMessage, res: ServerResponse): void {
  gate.started += 1;
  (res as GatedResponse)[SOCKET] = socket;
  // One shared listener, not a closure per request: the response knows its socket. It also runs
  // the invocation route's close hook (response-close.ts), so that a response has one listener.
  listenClose(res, onResponseClose);
  gate.listener.call(gate.server, req, res);
}

function onResponseClose(this: GatedResponse): void {
  const socket = this[SOCKET];
  const gate = socket?.[GATE];
  if (socket !== undefined && gate !== undefined) {
    gate.started -= 1;
    pump(gate, socket);
  }
  runCloseHook(this);
}

function pump(gate: Gate, socket: GatedSocket): void {
  if (socket.destroyed) {
    gate.waiting.length = 0;
    return;
  }
  while (gate.waiting.length > 0 && gate.started < MAX_STARTED) {
    if (socket.writableLength > MAX_UNSENT_BYTES) {
      waitForDrain(gate, socket);
      return;
    }
    const [req, res] = gate.waiting.shift()!;
    start(gate, socket, req, res);
  }
  // Everything parsed has started: read on, as Node's 'drain' handler does.
  if (gate.waiting.length === 0 && socket._paused === true && socket.writableLength <= MAX_UNSENT_BYTES) {
    socket._paused = false;
    socket.parser?.resume();
    socket.resume();
  }
}

function waitForDrain(gate: Gate, socket: GatedSocket): void {
  if (gate.drainSet || socket.writableLength <= MAX_UNSENT_BYTES) return;
  gate.drainSet = true;
  socket.once('drain', () => {
    gate.drainSet = false;
    pump(gate, socket);
  });
}
