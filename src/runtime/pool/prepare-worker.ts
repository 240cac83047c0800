/**
 * A preparation worker thread (preparer.ts): analyses, caps, rewrites and compiles modules off the
 * thread that answers requests, and for a deploy makes a trial instance of the module. One job at
 * a time; the preparer terminates this thread when a trial runs past its time limit.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { toEngineError } from '../../errors.js';
import { analyzeModule } from '../analyze.js';
import { compileForPool } from './compile.js';
import type { PrepareJob, PrepareReply } from './prepare-protocol.js';
import { tryInstance } from './trial.js';
import { WARM_UP_NUMERIC } from './warm-up.js';

const port = parentPort;
if (!port) throw new Error('the preparation worker must run as a worker thread');

const post = (reply: PrepareReply, transfer: ArrayBuffer[] = []): void => port.postMessage(reply, transfer);

async function run(job: PrepareJob): Promise<void> {
  try {
    if (!job.admit) {
      post({ id: job.id, type: 'compiled', compiled: await compileForPool(job.bytes, job) });
      return;
    }
    const analysis = analyzeModule(job.bytes, job.admit);
    const digest = `sha256:${createHash('sha256').update(job.bytes).digest('hex')}`;
    const compiled = await compileForPool(job.bytes, job);
    // The bytes came here transferred: they go back the same way.
    post({ id: job.id, type: 'compiled', compiled, analysis, digest, bytes: job.bytes }, [job.bytes.buffer as ArrayBuffer]);
    tryInstance(compiled.module, analysis.abi);
    post({ id: job.id, type: 'tried' });
  } catch (err) {
    const engineError = toEngineError(err);
    post({ id: job.id, type: 'failed', code: engineError.code, message: engineError.message });
  }
}

// The rewrites and the compile on a tiny module first, so that their code is compiled before the
// first real module needs it (it would otherwise be interpreted through its first seconds).
void compileForPool(new Uint8Array(Buffer.from(WARM_UP_NUMERIC, 'base64')), { memoryLimitMb: 1, maxTableEntries: 16 }).catch(() => {});

port.on('message', (job: PrepareJob) => {
  void run(job);
});
