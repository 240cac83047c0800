// `npm run bench`: WasmEngine measured against raw V8 and against Cloudflare's workerd, printed as
// ONE table at the end of one run. Never part of `npm test`; nothing here asserts a timing.
//
//   npm run bench                      full run (about six minutes)
//   npm run bench -- --quick           short durations and fewer trials (about two minutes)
//   options: --http-seconds N (10)  --http-trials N (3; quick 1)  --load-seconds N (30)
//            --load-connections N (1000)  --trials N (10, cold start)  --functions N (20, memory)
//            --no-workerd  --no-cluster  --cluster-trials N (30; quick 10)
//   --http-trials: each HTTP case runs N times, engine then workerd each time, and the table shows
//   the medians (req/s ratio = median of the per-trial ratios): one run moves 10–30% on a small VM.
//   The per-core and scaling cases (sections 3 and 4, bench/lib/per-core.mjs) use the same seconds
//   and trials, every case once per trial; --per-core-connections N (32) per core.
//
// Needs `npm run build` and `npm run examples` (the npm script runs both), wrk and taskset (Debian
// packages), and workerd (a devDependency). Progress goes to stderr, the table to stdout.
import { readFileSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { clusterBench } from './lib/cluster.mjs';
import { coldStart } from './lib/cold-start.mjs';
import { compareHttp, wrk, wrkErrors } from './lib/http.mjs';
import { AUTH_ARGS, inProcess } from './lib/in-process.mjs';
import { load } from './lib/load.mjs';
import { memory } from './lib/memory.mjs';
import { writePadded } from './lib/pad-module.mjs';
import { perCore, perCoreTableRows } from './lib/per-core.mjs';
import { EXAMPLES_WASM, deploy, kill, startEngine, startWorkerd, tempDir } from './lib/processes.mjs';
import { fmtMiB, fmtMs, fmtRate, fmtUs, formatTable, times, yes } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && argv[at + 1] !== undefined ? Number(argv[at + 1]) : fallback;
};
const quick = flag('quick');
const settings = {
  httpSeconds: option('http-seconds', quick ? 3 : 10),
  httpTrials: option('http-trials', quick ? 1 : 3),
  loadSeconds: option('load-seconds', quick ? 6 : 30),
  loadConnections: option('load-connections', 1000),
  perCoreConnections: option('per-core-connections', 32),
  trials: option('trials', quick ? 3 : 10),
  functions: option('functions', quick ? 5 : 20),
  workerd: !flag('no-workerd'),
  cluster: !flag('no-cluster'),
  clusterTrials: option('cluster-trials', quick ? 10 : 30),
};
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

const rows = [];
const row = (section, measure, engine, peer = '', ratio = '', target = '', met = '', notes = '') =>
  rows.push([section, measure, engine, peer, ratio, target, met, notes]);

// ---- 1. in-process -------------------------------------------------------------------------
log('1/7 in-process per-invocation cost');
for (const r of await inProcess({ examplesDir: EXAMPLES_WASM, quick, log })) {
  const speedup = r.raw / r.sandbox;
  const memoryBearing = r.name !== 'gcd';
  const target = memoryBearing ? '≥ 3× faster than raw' : 'within 1.5× of raw';
  const met = memoryBearing ? speedup >= 3 : r.sandbox <= 1.5 * r.raw;
  row(
    '1 in-process µs/call',
    r.name,
    fmtUs(r.sandbox),
    `raw V8 ${fmtUs(r.raw)}`,
    `${times(speedup)} faster`,
    target,
    yes(met),
    `${r.reused ? 'instance reused, restored after each call' : r.why}; reuse off ${fmtUs(r.fresh)}; ` +
      `through the pool: 1 in flight ${fmtUs(r.pool.latencyOn)}, 64 in flight ${fmtUs(r.pool.throughputOn)}/call ` +
      `(no pipelining ${fmtUs(r.pool.throughputOff)}); wasmtime published ${fmtUs(r.wasmtimeUs)} (other machine)`,
  );
}

// ---- 2. HTTP -------------------------------------------------------------------------------
log('2/7 HTTP: WasmEngine and workerd under wrk');
{
  const dataDir = tempDir('we-bench-http-');
  const engine = await startEngine(dataDir);
  let peer;
  let peerError;
  try {
    await deploy(engine.url, 'gcd', `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`);
    await deploy(engine.url, 'authentication', `file:${join(EXAMPLES_WASM, 'authentication.wasm')}`);
    if (settings.workerd) {
      try {
        peer = await startWorkerd();
      } catch (err) {
        peerError = err instanceof Error ? err.message : String(err);
        log(`workerd could not run: ${peerError}`);
      }
    } else {
      peerError = 'skipped (--no-workerd)';
    }
    for (const fn of ['gcd', 'authentication']) {
      // warm both up (JIT, connections) before measuring
      await wrk(engine.url, { fn, connections: 32, seconds: 2 });
      if (peer) await wrk(peer.url, { fn, connections: 32, seconds: 2 });
      for (const connections of [32, 256]) {
        log(`  ${fn}, ${connections} connections, ${settings.httpTrials} trial(s)`);
        const r = await compareHttp({
          engineUrl: engine.url,
          peerUrl: peer?.url,
          fn,
          connections,
          seconds: settings.httpSeconds,
          trials: settings.httpTrials,
          log: (msg) => log(`    ${msg}`),
        });
        httpRows(r, peerError);
      }
    }
  } finally {
    await kill(engine.child);
    if (peer) await kill(peer.child);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The two table rows of one HTTP case, from compareHttp's medians. */
function httpRows({ fn, connections, trials, engine: e, peer: w, rpsRatio }, peerError) {
  const measure = `${fn}, ${connections} conns`;
  const errors = (label, x) => (x.non2xx + x.socketErrors > 0 ? [`${label} errors: ${x.non2xx} non-2xx, ${x.socketErrors} socket`] : []);
  if (w) {
    // The per-trial ratios show how far one run alone could have moved the verdict.
    const notes = [`trials: ${trials.map((t) => times(t.rpsRatio)).join(', ')}`, ...errors('engine', e), ...errors('workerd', w)];
    row('2 HTTP req/s', measure, fmtRate(e.rps), `workerd ${fmtRate(w.rps)}`, times(rpsRatio), '≥ 2× workerd', yes(rpsRatio >= 2), notes.join('; '));
    row(
      '2 HTTP p50 / p99',
      measure,
      `${fmtMs(e.p50)} / ${fmtMs(e.p99)}`,
      `workerd ${fmtMs(w.p50)} / ${fmtMs(w.p99)}`,
      `p99 ${times(e.p99 / w.p99)}`,
      'p99 no worse',
      yes(e.p99 <= w.p99),
      trials.length > 1 ? `p99 ratio per trial: ${trials.map((t) => times(t.p99Ratio)).join(', ')}` : '',
    );
  } else {
    const notes = [`trials: ${trials.map((t) => fmtRate(t.engine.rps)).join(', ')}`, ...errors('engine', e)];
    row('2 HTTP req/s', measure, fmtRate(e.rps), `workerd: ${peerError}`, '', '≥ 2× workerd', 'n/a', notes.join('; '));
    row('2 HTTP p50 / p99', measure, `${fmtMs(e.p50)} / ${fmtMs(e.p99)}`, '', '', 'p99 no worse', 'n/a');
  }
}

// ---- 3, 4. per core, scaling ------------------------------------------------------------------
log('3/7 and 4/7 per core (engine, workerd, bare Node on one core each) and the engine on 1, 2, 4 … cores');
for (const r of perCoreTableRows(
  await perCore({ connections: settings.perCoreConnections, seconds: settings.httpSeconds, trials: settings.httpTrials, workerd: settings.workerd, log: (msg) => log(`    ${msg}`) }),
  { fmtRate, fmtMs, times, yes },
)) {
  row(...r);
}

// ---- 5. cold start -------------------------------------------------------------------------
log('5/7 cold start');
{
  const dir = tempDir('we-bench-2mb-');
  const big = join(dir, 'authentication-2mb.wasm');
  const bigSize = writePadded(join(EXAMPLES_WASM, 'authentication.wasm'), big);
  const small = join(EXAMPLES_WASM, 'gcd.wasm');
  const cases = [
    { label: `gcd (${readFileSync(small).length} B)`, name: 'gcd', image: `file:${small}`, args: { a: '12', b: '18' } },
    { label: `authentication, 2 MB (${(bigSize / 1048576).toFixed(2)} MiB)`, name: 'authentication', image: `file:${big}`, args: AUTH_ARGS, big: true },
  ];
  for (const c of cases) {
    log(`  ${c.label}, ${settings.trials} trials`);
    const r = await coldStart({ ...c, trials: settings.trials });
    row('5 cold start p50', `${c.label}: deploy answered → first invoke answered`, fmtMs(r.deploy), '', '', '', '', `${r.trials} trials`);
    row(
      '5 cold start p50',
      `${c.label}: restart (engine listening) → first invoke answered`,
      fmtMs(r.listen),
      '',
      '',
      c.big ? '≤ 5 ms' : '',
      c.big ? yes(r.listen <= 5) : '',
      `process spawn after kill -9 → first invoke ${fmtMs(r.spawn)} (Node.js start-up and imports)`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
}

// ---- 6. load -------------------------------------------------------------------------------
log(`6/7 load: ${settings.loadConnections} connections for ${settings.loadSeconds} s`);
{
  const r = await load({ connections: settings.loadConnections, seconds: settings.loadSeconds });
  const statuses = Object.entries(r.statuses)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  row(
    '6 load',
    `authentication, ${r.connections} conns × ${r.seconds} s: answers`,
    `${fmtRate(r.rps)}, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}`,
    '',
    '',
    'errors 0 or OVERLOADED only',
    yes(r.other === 0 && r.socketErrors === 0),
    `${statuses || 'no answers counted'}; socket errors ${r.socketErrors}`,
  );
  row(
    '6 load',
    'engine RSS: before / peak 1st half / peak 2nd half / end / 5 s later',
    `${fmtMiB(r.before)} / ${fmtMiB(r.firstHalf)} / ${fmtMiB(r.secondHalf)} / ${fmtMiB(r.end)} / ${fmtMiB(r.after)}`,
    '',
    '',
    'levels off',
    yes(r.secondHalf <= r.firstHalf * 1.1),
  );
}

// ---- 7. memory -----------------------------------------------------------------------------
log(`7/7 memory: idle engine, ${settings.functions} functions deployed`);
{
  const r = await memory({ functions: settings.functions });
  row('7 memory', 'idle engine RSS (no function)', fmtMiB(r.idle), '', '', 'reported', 'yes');
  row(
    '7 memory',
    'RSS per deployed-but-idle function',
    fmtMiB(r.perDeployed),
    '',
    '',
    'reported',
    'yes',
    `${r.functions} distinct ${(r.moduleBytes / 1024).toFixed(0)} KB modules, compiled, never invoked; ${fmtMiB(r.perInvoked)} each once invoked (an instance kept per worker, dropped after 60 s idle)`,
  );
  row(
    '7 memory',
    'compiled-module cache',
    'byte bound, LRU',
    '',
    '',
    'bounded, LRU',
    'yes',
    '--module-cache-mb (512 MiB default); evicted modules recompile from the store on their next call (test/runtime/pool.test.ts)',
  );
}

// ---- 6. cluster -----------------------------------------------------------------------------
if (settings.cluster) {
  log('6 cluster: 3 engines on one PostgreSQL store, haproxy in front');
  try {
    const r = await clusterBench({ trials: settings.clusterTrials, seconds: settings.httpSeconds, log });
    row(
      '6 cluster',
      'deploy answered → invokable on all 3 nodes, p50 / p99',
      `${fmtMs(r.p50)} / ${fmtMs(r.p99)}`,
      '',
      '',
      'within 1 s',
      yes(r.p99 <= 1000),
      `${r.trials} trials, each deploy through the next node (p99 of fewer than 100 trials is their maximum)`,
    );
    row(
      '6 cluster',
      `gcd through haproxy, ${r.connections} conns: 1 engine / 3 engines`,
      `${fmtRate(r.one.rps)} / ${fmtRate(r.three.rps)}`,
      '',
      times(r.three.rps / r.one.rps),
      'reported',
      'n/a',
      `${cpus().length} cores here, shared by the engines, haproxy and wrk: the 3-engine figure says nothing about scaling on this machine (on one with cores to spare, it does); ` +
        `p99 ${fmtMs(r.one.p99)} / ${fmtMs(r.three.p99)}${wrkErrors(r.one)}${wrkErrors(r.three)}`,
    );
  } catch (err) {
    row('6 cluster', 'deploy → invokable on 3 nodes; throughput through haproxy', 'not measured', '', '', 'within 1 s', 'n/a', err instanceof Error ? err.message.split('\n')[0] : String(err));
  }
}

// ---- the table ------------------------------------------------------------------------------
const cpu = cpus();
const machine = `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${fmtMiB(totalmem())} RAM, Node.js ${process.version}, ${readFileSync('/proc/version', 'utf8').split(' ').slice(0, 3).join(' ')}`;
const header = ['section', 'measure', 'WasmEngine', 'baseline / peer', 'ratio', 'target', 'met', 'notes'];
const out = [
  `WasmEngine bench — ${new Date().toISOString()}${quick ? ' (quick)' : ''}`,
  `machine: ${machine}`,
  `settings: HTTP: wrk 2 threads, ${settings.httpTrials} trial${settings.httpTrials === 1 ? '' : 's'} × ${settings.httpSeconds} s per HTTP case, engine and workerd alternating (req/s ratio = median of the per-trial ratios); load ${settings.loadConnections} connections × ${settings.loadSeconds} s; cold start ${settings.trials} trials; medians throughout; engine with default settings (workers = cores)`,
  'in-process: engine = InstanceRunner run + settle on one thread (all the CPU a worker spends per call); raw = new WebAssembly.Instance(module) + the call',
  `per core: each server restricted to one CPU with taskset, wrk (1 thread per CPU) on the others, ${settings.perCoreConnections} connections per core; bare Node = node:http, one instance per module, no isolation (bench/bare-node); in the notes, the same work served straight from the socket without node:http (raw-server.mjs, a floor, not a peer); scaling: the engine on N CPUs, wrk on the rest, on all CPUs when none are left (not clean)`,
  '',
  formatTable(header, rows),
];
process.stdout.write(`${out.join('\n')}\n`);
