#!/usr/bin/env node
/**
 * The long fuzz run: `npm run fuzz -- --minutes N` (the npm script builds first). The bounded run
 * of the same fuzzers is part of `npm test` (test/fuzz/). Options:
 *
 *   --minutes N     how long in all (default 5), shared out among the fuzzers
 *   --seed S        the run's seed (default: from the clock; printed, so that a run can be repeated)
 *   --only LIST     some of: modules, http-modules, http, crash (comma-separated)
 *   --case SEED     run one case of the fuzzer(s) named by --only, by its own seed (from a failure)
 *   --out DIR       where reproduction files go (default fuzz-out/<seed>)
 *
 * Prints what it tried (counts) and every failure with its reproduction files; exits 1 on any.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { assertPinnedNode } from './pinned-node.mjs';
import { REPO_ROOT } from '../test/fuzz/harness/dist.mjs';
import { runModuleFuzz } from '../test/fuzz/harness/module-fuzz.mjs';
import { runHttpModuleFuzz } from '../test/fuzz/harness/http-modules.mjs';
import { runHttpParserFuzz } from '../test/fuzz/harness/http-parser.mjs';
import { runCrashStorm } from '../test/fuzz/harness/crash-storm.mjs';
import { caseSeed } from '../test/fuzz/harness/prng.mjs';

assertPinnedNode('the fuzz run');

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    seed: { type: 'string' },
    only: { type: 'string', default: 'modules,http-modules,http,crash' },
    case: { type: 'string' },
    out: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  console.error('--minutes must be a positive number');
  process.exit(2);
}
const runSeed = values.seed === undefined ? Date.now() % 2 ** 32 : Number(values.seed) >>> 0;
const only = values.only.split(',').map((s) => s.trim());
const known = ['modules', 'http-modules', 'http', 'crash'];
for (const name of only) {
  if (!known.includes(name)) {
    console.error(`--only takes ${known.join(', ')}, not ${name}`);
    process.exit(2);
  }
}
const outDir = resolve(values.out ?? join(REPO_ROOT, 'fuzz-out', String(runSeed)));
mkdirSync(outDir, { recursive: true });
const oneCase = values.case === undefined ? undefined : Number(values.case) >>> 0;

/** Shares of the time: the reuse differential is what matters most. */
const SHARE = { modules: 0.5, 'http-modules': 0.15, http: 0.2, crash: 0.15 };
const totalShare = only.reduce((n, name) => n + SHARE[name], 0);

function* seeds(salt) {
  if (oneCase !== undefined) {
    yield oneCase;
    return;
  }
  for (let i = 0; ; i++) yield caseSeed(runSeed ^ salt, i);
}

console.log(`fuzz run seed ${runSeed}, ${minutes} min, ${only.join(', ')}; reproduction files in ${outDir}`);
const log = (line) => console.log(`  ${line}`);
const failures = [];
for (const name of only) {
  const until = Date.now() + (minutes * 60_000 * SHARE[name]) / totalShare;
  const started = Date.now();
  let summary;
  switch (name) {
    case 'modules': {
      const s = await runModuleFuzz({ seeds: seeds(0x6d6f64), outDir, until, log });
      summary = `${s.modules} modules (${s.skipped} skipped), ${s.exports} exports (${s.refusedAtDeploy} refused), ${s.calls} calls; instances ${s.reusedInstances} reused, ${s.freshInstances} made; ${s.reusable} modules reusable, ${s.virtualSize} with virtual memory size; answers ${JSON.stringify(s.answers)}`;
      failures.push(...s.failures.map((f) => ({ fuzzer: name, ...f })));
      break;
    }
    case 'http-modules': {
      const s = await runHttpModuleFuzz({ seeds: seeds(0x68746d), outDir, until, log });
      summary = `${s.modules} modules (${s.skipped} skipped), ${s.deploys} deploys (${s.deployRefused} refused), ${s.invocations} invocations; answers ${JSON.stringify(s.answers)}`;
      failures.push(...s.failures.map((f) => ({ fuzzer: name, ...f })));
      break;
    }
    case 'http': {
      const s = await runHttpParserFuzz({ seeds: seeds(0x687470), outDir, until, log });
      summary = `${s.conversations} conversations (${s.pipelined} pipelined), ${s.requests} answers, ${s.bytes} bytes sent; ${s.droppedBeforeParseError.length} with answers Node's parser dropped before a parse error, ${s.droppedAtClientEnd.length} with answers dropped when the client ended its side (the documented differences); ${s.parseErrorFormat.length} with the parse-error answer in the other format; ${s.timingDependent.length} where Node's own path also wrote what the reader's thread wrote, on the Fastify server or held again; ${s.passedOnDiffers.length} where the thread's passing on to the main thread answered otherwise than Fastify alone (counted, not failed)`;
      failures.push(...s.failures.map((f) => ({ fuzzer: name, ...f })));
      break;
    }
    case 'crash': {
      let kills = 0;
      let operations = 0;
      let acknowledged = 0;
      let storms = 0;
      for (const seed of seeds(0x637273)) {
        if (Date.now() >= until && storms > 0) break;
        const s = await runCrashStorm({ seed, kills: 3, log });
        storms++;
        kills += s.kills;
        operations += s.operations;
        acknowledged += s.acknowledged;
        for (const p of [...s.problems, ...s.strayTemp]) {
          failures.push({ fuzzer: name, seed, problems: [p], files: [s.dataDir] });
          log(p);
        }
        // The data directory is the reproduction: kept only when something was wrong in it.
        if (s.problems.length + s.strayTemp.length === 0) rmSync(s.dataDir, { recursive: true, force: true });
        if (oneCase !== undefined) break;
      }
      summary = `${storms} storms, ${kills} kills, ${operations} operations (${acknowledged} acknowledged)`;
      break;
    }
  }
  console.log(`${name}: ${summary} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
if (failures.length === 0) {
  console.log('no failures');
} else {
  console.log(`${failures.length} failures:`);
  for (const f of failures) console.log(`  ${f.fuzzer} case ${f.seed ?? '-'}: ${(f.problems ?? [f.kind]).join('; ').slice(0, 300)}\n    ${(f.files ?? []).join('\n    ')}`);
  process.exitCode = 1;
}
