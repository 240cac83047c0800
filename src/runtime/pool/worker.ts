/**
 * A sandbox worker thread: keeps the compiled modules it was sent, and runs each invocation it is
 * given in a fresh instance (runInvocation). One invocation at a time; the pool preempts a call
 * past its deadline by terminating this whole thread.
 */
import { parentPort } from 'node:worker_threads';
import { toEngineError } from '../../errors.js';
import { runInvocation } from '../sandbox.js';
import type { WasmModule } from '../wasm-api.js';
import type { FromWorker, InvokeMessage, ToWorker } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('the sandbox worker must run as a worker thread');

const modules = new Map<number, WasmModule>();

function invoke(msg: InvokeMessage): FromWorker {
  const module = msg.module ?? modules.get(msg.moduleId);
  if (msg.module && msg.keep !== false) modules.set(msg.moduleId, msg.module);
  if (!module) return { type: 'failed', id: msg.id, code: 'INTERNAL', message: `module ${msg.moduleId} was never sent to this worker` };
  try {
    return { type: 'done', id: msg.id, result: runInvocation(module, msg.call) };
  } catch (err) {
    const e = toEngineError(err);
    return { type: 'failed', id: msg.id, code: e.code, message: e.message };
  }
}

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'evict') {
    for (const id of msg.moduleIds) modules.delete(id);
    return;
  }
  port.postMessage(invoke(msg));
});

port.postMessage({ type: 'ready' } satisfies FromWorker);
