// Section 2 of `npm run bench` on its own: HTTP throughput and latency of POST /function/invoke
// under wrk, WasmEngine against workerd, in the same run, one after the other per trial.
//
//   node bench/http.mjs [--seconds N (5)] [--trials N (3)] [--fn gcd|authentication]...
//                       [--conns N]... [--no-workerd] [--engine-args "--workers 2 ..."]
//
// Each (function, connections) case runs `trials` times, engine then workerd each time
// (compareHttp in lib/http.mjs, shared with `npm run bench`), and the medians are printed (the
// machine is shared: ratios from the same run are what to compare).
// Needs `npm run build` and `npm run examples`, wrk, and workerd (a devDependency).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { compareHttp, wrk } from './lib/http.mjs';
import { EXAMPLES_WASM, deploy, kill, startEngine, startWorkerd, tempDir } from './lib/processes.mjs';
import { fmtMs, fmtRate } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1] : fallback;
};
const options = (name) => argv.flatMap((a, i) => (a === `--${name}` && argv[i + 1] !== undefined ? [argv[i + 1]] : []));

const seconds = Number(option('seconds', '5'));
const trials = Number(option('trials', '3'));
const fns = options('fn').length > 0 ? options('fn') : ['gcd', 'authentication'];
const conns = options('conns').length > 0 ? options('conns').map(Number) : [32, 256];
const useWorkerd = !flag('no-workerd');
const engineArgs = option('engine-args', '').split(/\s+/).filter(Boolean);
const log = (msg) => process.stderr.write(`[http] ${msg}\n`);

const dataDir = tempDir('we-bench-http-');
const engine = await startEngine(dataDir, engineArgs);
let peer;
const results = [];
try {
  for (const fn of fns) await deploy(engine.url, fn, `file:${join(EXAMPLES_WASM, `${fn}.wasm`)}`);
  if (useWorkerd) peer = await startWorkerd();
  for (const fn of fns) {
    // Warm both up (JIT, connections) before measuring.
    await wrk(engine.url, { fn, connections: 32, seconds: 2 });
    if (peer) await wrk(peer.url, { fn, connections: 32, seconds: 2 });
    for (const connections of conns) {
      results.push(await compareHttp({ engineUrl: engine.url, peerUrl: peer?.url, fn, connections, seconds, trials, log }));
    }
  }
} finally {
  await kill(engine.child);
  if (peer) await kill(peer.child);
  rmSync(dataDir, { recursive: true, force: true });
}

console.log(`wrk 2 threads, ${trials} trials × ${seconds} s per case, engine and workerd alternating; medians`);
console.log('| case | engine req/s | engine p50 / p99 | workerd req/s | workerd p50 / p99 | req/s ratio (median of per-trial) | p99 ratio (median of per-trial) |');
console.log('|---|---|---|---|---|---|---|');
for (const { fn, connections, engine: e, peer: w, rpsRatio, p99Ratio } of results) {
  const cells = [`${fn}, ${connections} conns`, fmtRate(e.rps), `${fmtMs(e.p50)} / ${fmtMs(e.p99)}`];
  if (w) cells.push(fmtRate(w.rps), `${fmtMs(w.p50)} / ${fmtMs(w.p99)}`, `${rpsRatio.toFixed(2)}×`, `${p99Ratio.toFixed(2)}×`);
  else cells.push('', '', '', '');
  console.log(`| ${cells.join(' | ')} |`);
}
