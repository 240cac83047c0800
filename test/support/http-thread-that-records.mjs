// The real HTTP thread (the compiled dist/api/threads/http-thread.js) and one thing more, for
// tests that look inside it: it notes every request its HTTP server is handed, as it is handed
// it, counts the connections open on it (test/api/warm-up-http.test.ts) and the times any of its
// connections stopped reading, a 'pause' of the socket (test/api/invoke-conversations.test.ts);
// it posts all three when asked ('test: served?'). The engine itself has no such message.
import { EventEmitter } from 'node:events';
import { Server } from 'node:http';
import { parentPort } from 'node:worker_threads';

const served = [];
let open = 0;
let pauses = 0;
const countPause = () => (pauses += 1);
const emit = EventEmitter.prototype.emit;
EventEmitter.prototype.emit = function (event, ...args) {
  if (this instanceof Server && args[0] !== undefined) {
    if (event === 'request') served.push(`${args[0].method} ${args[0].url}`);
    if (event === 'connection') {
      open += 1;
      args[0].once('close', () => (open -= 1));
      args[0].on('pause', countPause);
    }
  }
  return emit.call(this, event, ...args);
};

await import('../../dist/api/threads/http-thread.js');

parentPort.on('message', (message) => {
  if (message?.type === 'test: served?') parentPort.postMessage({ type: 'test: served', served, open, pauses });
});
