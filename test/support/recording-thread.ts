/**
 * The real HTTP thread wrapped to tell what happened inside it (http-thread-that-records.mjs):
 * how to start one in its place, and how to ask it.
 */
import type { MessagePort } from 'node:worker_threads';
import { Worker } from 'node:worker_threads';
import type { ThreadData } from '../../src/api/threads/protocol.js';

/** What the thread tells: the requests its Node server was handed, its open connections, and the times one stopped reading. */
export interface ThreadRecord {
  served: string[];
  open: number;
  pauses: number;
}

/** A `startWorker` (or `startHttpThread`) that starts the recording thread and hands it to `started`. */
export function recordingThread(started: (thread: Worker) => void): (data: ThreadData, transferList: MessagePort[]) => Worker {
  return (data, transferList) => {
    const thread = new Worker(new URL('./http-thread-that-records.mjs', import.meta.url), { workerData: data, transferList });
    started(thread);
    return thread;
  };
}

/** Asks a recording thread what it has seen so far. */
export function askThread(thread: Worker): Promise<ThreadRecord> {
  return new Promise((resolve) => {
    const onMessage = (message: { type?: string } & Partial<ThreadRecord>): void => {
      if (message.type !== 'test: served') return;
      thread.off('message', onMessage);
      resolve({ served: message.served ?? [], open: message.open ?? -1, pauses: message.pauses ?? -1 });
    };
    thread.on('message', onMessage);
    thread.postMessage({ type: 'test: served?' });
  });
}
