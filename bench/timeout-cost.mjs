// The cost of timeouts to the rest of the engine, over HTTP: clients loop on a fast function (gcd)
// while others loop on a function that spins to its time limit (20 ms by default), every call on
// the workers (--inline-budget-ms 0). Prints, per trial and as medians, gcd's calls/s, the spinning
// function's answers/s (each a 504 at its limit) and the workers replaced. With --before DIR (a
// built checkout of another commit: `npm run build` there, node_modules linked) the engines of the
// two checkouts alternate, trial by trial, in one run.
//
//   npx node bench/timeout-cost.mjs [--before DIR] [--trials N (3)] [--seconds N (5)] [--workers N (2)]
//     [--fast-clients N (8)] [--spin-clients N (2)] [--timeout-ms N (20)]
//
// Needs `npm run build`, `npm run examples` and wat2wasm (the spinning module is built from
// test/fixtures/integration/spin.wat).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { EXAMPLES_WASM, ROOT, deploy, kill, startEngine, tempDir } from './lib/processes.mjs';
import { median } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1] : fallback;
};
const trials = Number(option('trials', 3));
const seconds = Number(option('seconds', 5));
const workers = Number(option('workers', 2));
const fastClients = Number(option('fast-clients', 8));
const spinClients = Number(option('spin-clients', 2));
const timeoutMs = Number(option('timeout-ms', 20));
const before = option('before', undefined);

const dir = tempDir('we-bench-timeout-');
const spinWasm = join(dir, 'spin.wasm');
execFileSync('wat2wasm', [join(ROOT, 'test', 'fixtures', 'integration', 'spin.wat'), '-o', spinWasm]);

async function trial(root) {
  const engine = await startEngine(join(dir, `data-${Math.random().toString(36).slice(2)}`), ['--workers', String(workers), '--inline-budget-ms', '0'], { root });
  const agent = new Agent({ connections: fastClients + spinClients + 2 });
  const invoke = async (name, args) => {
    const answer = await request(`${engine.url}/function/invoke`, { method: 'POST', body: JSON.stringify({ function_name: name, args }), dispatcher: agent });
    await answer.body.text();
    return answer.statusCode;
  };
  try {
    await deploy(engine.url, 'gcd', `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`);
    await deploy(engine.url, 'spin', `file:${spinWasm}`, { timeout_ms: timeoutMs });
    const loop = async (name, args, until, counts) => {
      while (performance.now() < until) {
        const status = await invoke(name, args);
        counts[status] = (counts[status] ?? 0) + 1;
      }
    };
    // Warm-up: both functions seen, the workers' call paths compiled.
    await loop('gcd', { a: '12', b: '18' }, performance.now() + 500, {});
    await invoke('spin');
    // The warm-up's log lines in (a worker it terminated is not the trial's).
    await new Promise((r) => setTimeout(r, 300));
    const replacedBefore = replaced(engine.output);
    const notStartedBefore = notStarted(engine.output);
    const fast = {};
    const spin = {};
    const until = performance.now() + seconds * 1000;
    await Promise.all([
      ...Array.from({ length: fastClients }, () => loop('gcd', { a: '12', b: '18' }, until, fast)),
      ...Array.from({ length: spinClients }, () => loop('spin', undefined, until, spin)),
    ]);
    // Let the last answers' log lines in.
    await new Promise((r) => setTimeout(r, 200));
    return { fast: (fast[200] ?? 0) / seconds, fastOther: total(fast) - (fast[200] ?? 0), spin: (spin[504] ?? 0) / seconds, spinOther: total(spin) - (spin[504] ?? 0), replaced: replaced(engine.output) - replacedBefore, notStarted: notStarted(engine.output) - notStartedBefore };
  } finally {
    await agent.close();
    await kill(engine.child);
  }
}

const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);
/** Workers terminated for a time limit, from the engine's log (both versions write such a line). */
const replaced = (lines) => lines.filter((line) => /sandbox worker was terminated/.test(line)).length;
/** Workers terminated because they had not started a call by its deadline (readying an instance, or starved of CPU). */
const notStarted = (lines) => lines.filter((line) => /did not start a call by its deadline/.test(line)).length;

const variants = before ? [['before', resolve(before)], ['after', ROOT]] : [['this checkout', ROOT]];
const results = new Map(variants.map(([name]) => [name, []]));
try {
  for (let t = 0; t < trials; t++) {
    for (const [name, root] of variants) {
      const r = await trial(root);
      results.get(name).push(r);
      console.log(`trial ${t + 1} ${name}: gcd ${Math.round(r.fast)}/s (${r.fastOther} not 200), spin ${r.spin.toFixed(1)} timeouts/s (${r.spinOther} not 504), workers terminated ${r.replaced} for a call past its limit, ${r.notStarted} for a call not started`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('');
console.log(`${workers} workers, --inline-budget-ms 0; ${fastClients} clients looping on gcd, ${spinClients} on a loop with timeout_ms ${timeoutMs}; ${seconds} s per trial, medians of ${trials}`);
console.log('| engine | gcd calls/s | spin timeouts/s | workers terminated per trial: call past its limit | not started by its deadline |');
console.log('|---|---|---|---|---|');
for (const [name, rs] of results) {
  console.log(`| ${name} | ${Math.round(median(rs.map((r) => r.fast))).toLocaleString('en-US')} | ${median(rs.map((r) => r.spin)).toFixed(1)} | ${median(rs.map((r) => r.replaced))} | ${median(rs.map((r) => r.notStarted))} |`);
}
