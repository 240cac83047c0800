/**
 * Runs module cases (module-worker.mjs) one at a time with a deadline each, and writes every
 * failure's reproduction: the module, and a JSON file with how it was made and the calls that
 * showed the problem. A case that does not end in time is a failure too (the thread is
 * terminated and a new one takes the next case).
 */
import { Worker } from 'node:worker_threads';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateModule } from './modules.mjs';

const WORKER = new URL('./module-worker.mjs', import.meta.url);

/**
 * @param {{ seeds: Iterable<number>, outDir: string, caseTimeoutMs?: number, until?: number,
 *           skip?: Set<number>, log?: (line: string) => void }} options
 */
export async function runModuleFuzz(options) {
  const { outDir, caseTimeoutMs = 30_000, until = Infinity, skip = new Set(), log = () => {} } = options;
  const workDir = join(outDir, 'work');
  mkdirSync(workDir, { recursive: true });
  const stats = {
    modules: 0, skipped: 0, exports: 0, refusedAtDeploy: 0, calls: 0, reusedInstances: 0, freshInstances: 0,
    reusable: 0, virtualSize: 0, preemptChecks: 0, answers: {}, failures: [],
  };
  let worker;
  let pending;
  const start = () => {
    worker = new Worker(WORKER, { workerData: { workDir } });
    worker.on('message', (msg) => pending?.resolve(msg));
    worker.on('error', (err) => pending?.resolve({ crashed: err instanceof Error ? err.stack : String(err) }));
    worker.on('exit', (code) => pending?.resolve({ crashed: `the worker exited with ${code}` }));
  };
  start();
  try {
    for (const seed of options.seeds) {
      if (Date.now() >= until) break;
      if (skip.has(seed)) continue;
      const reply = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ hung: true }), caseTimeoutMs);
        pending = { resolve: (msg) => { clearTimeout(timer); pending = undefined; resolve(msg); } };
        worker.postMessage(seed);
      });
      if (reply.hung || reply.crashed) {
        await worker.terminate();
        start();
        const mod = generateModule(seed, workDir);
        const failure = { seed, kind: reply.hung ? `no answer within ${caseTimeoutMs} ms` : `worker crashed: ${reply.crashed}` };
        stats.failures.push(writeReproduction(outDir, failure, 'bytes' in mod ? mod : undefined));
        log(`module case ${seed}: ${failure.kind}`);
        continue;
      }
      if (reply.skipped) {
        stats.skipped++;
        continue;
      }
      const r = reply.result;
      stats.modules++;
      stats.exports += r.targets ?? 0;
      stats.refusedAtDeploy += r.refused ?? 0;
      stats.calls += r.calls ?? 0;
      stats.reusedInstances += r.reused ?? 0;
      stats.freshInstances += r.instantiated ?? 0;
      if (r.targets > 0 && r.reuseRefused === undefined) stats.reusable++;
      if (r.virtualSize) stats.virtualSize++;
      if (r.preemptChecks) stats.preemptChecks++;
      for (const [k, v] of Object.entries(r.answers ?? {})) stats.answers[k] = (stats.answers[k] ?? 0) + v;
      if (r.problems.length > 0) {
        const failure = { seed, kind: r.problems.map((p) => p.kind).join(', '), about: reply.about, problems: r.problems };
        stats.failures.push(writeReproduction(outDir, failure, { ...reply.about, bytes: reply.bytes }));
        log(`module case ${seed}: ${failure.kind} (reproduction in ${outDir})`);
      }
    }
  } finally {
    await worker.terminate();
  }
  return stats;
}

function writeReproduction(outDir, failure, mod) {
  const base = join(outDir, `module-${failure.seed}`);
  if (mod) writeFileSync(`${base}.wasm`, mod.bytes);
  const { bytes: _bytes, ...about } = mod ?? {};
  writeFileSync(`${base}.json`, JSON.stringify({ ...failure, about, replay: `npm run fuzz -- --only modules --case ${failure.seed}` }, null, 2));
  return { ...failure, files: mod ? [`${base}.wasm`, `${base}.json`] : [`${base}.json`] };
}
