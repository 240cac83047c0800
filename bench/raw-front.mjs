// How much of the per-core gap to a bare Node server is node:http's: ONE engine process pinned to
// one CPU serves the same calls through its own HTTP layer and behind a reader that skips
// node:http (bench/raw-front/server.mjs), wrk on the other CPU, the two alternating, three trials
// by default; medians and the median of the per-trial ratios. Nothing here asserts a timing.
//
//   node bench/raw-front.mjs [--seconds N (5)] [--trials N (3)] [--conns N (32)]
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { wrk } from './lib/http.mjs';
import { allowedCpus } from './lib/per-core.mjs';
import { EXAMPLES_WASM, ROOT, freePort, kill, pinned, tempDir } from './lib/processes.mjs';
import { median } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const option = (name, fallback) => Number(argv[argv.indexOf(`--${name}`) + 1] ?? fallback) || fallback;
const seconds = option('seconds', 5);
const trials = option('trials', 3);
const connections = option('conns', 32);
const cpus = allowedCpus();
if (cpus.length < 2) throw new Error('needs two CPUs: one for the engine, one for wrk');

const dataDir = tempDir('we-bench-raw-front-');
const [port, rawPort] = [await freePort(), await freePort()];
const [command, args] = pinned(String(cpus[0]), process.execPath, [
  '--max-semi-space-size=8', '--no-wasm-lazy-compilation', join(ROOT, 'bench', 'raw-front', 'server.mjs'),
  '--port', String(port), '--raw-port', String(rawPort), '--data-dir', dataDir, '--wasm-dir', EXAMPLES_WASM,
]);
const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve, reject) => {
  child.stdout.on('data', (chunk) => String(chunk).includes('ready') && resolve());
  child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
});
try {
  const load = cpus.slice(1).join(',');
  const fronts = { 'node:http (the engine as it is)': `http://127.0.0.1:${port}`, 'no node:http': `http://127.0.0.1:${rawPort}` };
  console.log(`one engine on CPU ${cpus[0]}, wrk on ${load}, ${connections} conns, ${trials} trials × ${seconds} s, alternating; medians`);
  console.log('| function | engine via node:http | same engine, no node:http | ratio |\n|---|---|---|---|');
  for (const fn of ['gcd', 'authentication']) {
    for (const url of Object.values(fronts)) await wrk(url, { fn, connections, seconds: 2, threads: 1, cpus: load });
    const runs = [];
    for (let t = 0; t < trials; t++) {
      const [viaHttp, raw] = [await wrk(fronts['node:http (the engine as it is)'], { fn, connections, seconds, threads: 1, cpus: load }), await wrk(fronts['no node:http'], { fn, connections, seconds, threads: 1, cpus: load })];
      runs.push({ viaHttp: viaHttp.rps, raw: raw.rps });
    }
    const fmt = (x) => `${Math.round(x).toLocaleString('en-US')}/s`;
    console.log(`| ${fn} | ${fmt(median(runs.map((r) => r.viaHttp)))} | ${fmt(median(runs.map((r) => r.raw)))} | ${median(runs.map((r) => r.raw / r.viaHttp)).toFixed(2)}× |`);
  }
} finally {
  await kill(child);
  rmSync(dataDir, { recursive: true, force: true });
}
