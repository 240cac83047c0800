// One slow function against a trivial one, over HTTP: the trivial function's latency alone, then
// while clients loop on a function that spins to its time limit.
//
//   node bench/fairness.mjs [--workers N (2)] [--spinners N (3)] [--spin-timeout-ms N (2000)] [--seconds N (5)]
//
// Needs `npm run build` and `npm run examples`, and wat2wasm (the spinning module is built from
// test/fixtures/integration/spin.wat). Prints the trivial function's p50 / p99 / max and how many
// of its calls answered within the time, with and without the slow load.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { request } from 'undici';
import { EXAMPLES_WASM, ROOT, deploy, kill, startEngine, tempDir } from './lib/processes.mjs';
import { fmtMs } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return Number(at >= 0 && argv[at + 1] !== undefined ? argv[at + 1] : fallback);
};
const workers = option('workers', 2);
const spinners = option('spinners', 3);
const spinTimeoutMs = option('spin-timeout-ms', 2000);
const seconds = option('seconds', 5);

const dataDir = tempDir('we-bench-fair-');
const spinWasm = join(dataDir, 'spin.wasm');
execFileSync('wat2wasm', [join(ROOT, 'test', 'fixtures', 'integration', 'spin.wat'), '-o', spinWasm]);
const engine = await startEngine(join(dataDir, 'data'), ['--workers', String(workers)]);

async function invoke(name, args) {
  const answer = await request(`${engine.url}/function/invoke`, { method: 'POST', body: JSON.stringify({ function_name: name, args }) });
  await answer.body.text();
  return answer.statusCode;
}

/** Sequential gcd calls for `seconds`: latencies of those that answered, and the statuses. */
async function trivialFor(ms) {
  const latencies = [];
  const statuses = {};
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    const status = await invoke('gcd', { a: '12', b: '18' });
    latencies.push(performance.now() - t0);
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  return { calls: latencies.length, p50: at(0.5), p99: at(0.99), max: latencies.at(-1), statuses };
}

const row = (label, r) => console.log(`| ${label} | ${r.calls} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ${JSON.stringify(r.statuses)} |`);

try {
  await deploy(engine.url, 'gcd', `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`);
  await deploy(engine.url, 'spin', `file:${spinWasm}`, { timeout_ms: spinTimeoutMs });
  await trivialFor(1000); // warm-up
  const alone = await trivialFor(seconds * 1000);
  let looping = true;
  const spinStatuses = {};
  const loops = Array.from({ length: spinners }, async () => {
    while (looping) {
      const status = await invoke('spin');
      spinStatuses[status] = (spinStatuses[status] ?? 0) + 1;
    }
  });
  await new Promise((r) => setTimeout(r, 200));
  const loaded = await trivialFor(seconds * 1000);
  looping = false;
  await Promise.all(loops);
  console.log(`${workers} workers; ${spinners} clients looping on spin (timeout_ms ${spinTimeoutMs}); sequential gcd calls for ${seconds} s`);
  console.log('| gcd | calls | p50 | p99 | max | statuses |');
  console.log('|---|---|---|---|---|---|');
  row('alone', alone);
  row('with the spinning clients', loaded);
  console.log(`spin answers meanwhile: ${JSON.stringify(spinStatuses)}`);
} finally {
  await kill(engine.child);
}
