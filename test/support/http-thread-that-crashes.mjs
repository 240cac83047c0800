// The real HTTP thread (the compiled dist/api/threads/http-thread.js) and one thing more, for
// test/api/http-threads-respawn.test.ts: a message on which it throws where nothing catches it, as
// a bug in the thread would. The engine itself has no such message.
import { parentPort } from 'node:worker_threads';

await import('../../dist/api/threads/http-thread.js');

parentPort.on('message', (message) => {
  if (message?.type === 'test: crash') throw new Error('the HTTP thread crashed (as the test asked)');
});
