/**
 * Worker thread of the module fuzzer: generates one module per seed it is sent and runs the reuse
 * differential on it. Guest code runs synchronously here, so the parent (module-fuzz.mjs) can
 * terminate this thread when a case does not end in time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { generateModule } from './modules.mjs';
import { differential } from './differential.mjs';
import { Rng } from './prng.mjs';

const { workDir } = workerData;

parentPort.on('message', (seed) => {
  const mod = generateModule(seed, workDir);
  if ('skipped' in mod) {
    parentPort.postMessage({ seed, skipped: mod.skipped });
    return;
  }
  let result;
  try {
    result = differential(mod, new Rng(seed ^ 0x5eed));
  } catch (err) {
    result = { problems: [{ kind: 'harness', message: err instanceof Error ? err.stack : String(err) }] };
  }
  const { bytes, ...about } = mod;
  parentPort.postMessage({ seed, about, result, ...(result.problems.length > 0 ? { bytes } : {}) });
});
