// Per core and every core: what one core of the machine serves, and how that grows with cores.
//
// Per core: WasmEngine, workerd and a bare Node.js server (bench/bare-node: node:http, one instance
// of each module, no isolation) each restricted to the same ONE core with taskset — and, as a floor
// that shows what node:http itself costs, the same bare work served straight from the socket
// (bench/bare-node/raw-server.mjs) — wrk restricted
// to the other cores, the same request as everywhere in the bench. Scaling: the engine restricted to
// 1, 2, 4 … of the cores this process may use (its workers and HTTP threads default to that many), wrk on the cores
// left over — or, when none are left, on all of them, sharing the engine's cores (the row says so:
// such a row is not clean). Each trial runs every case once, one after the other (engine on one
// core, workerd, bare Node, bare Node on the socket, the engine on 2, 4 … cores), so all of a trial sees the same moment of a
// shared machine; medians over the trials, ratios as medians of the per-trial ratios.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { wrk } from './http.mjs';
import { EXAMPLES_WASM, deploy, kill, startBareNode, startEngine, startWorkerd, tempDir } from './processes.mjs';
import { median } from './stats.mjs';

/** The CPUs this process may run on (its affinity), from /proc/self/status. */
export function allowedCpus() {
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return list.split(',').flatMap((range) => {
    const [from, to = from] = range.split('-').map(Number);
    return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  });
}

/** 1, 2, 4 … up to n, and n itself when it is not a power of two. */
export function coreCounts(n) {
  const counts = [];
  for (let c = 1; c < n; c *= 2) counts.push(c);
  counts.push(n);
  return counts;
}

/**
 * Measures both tables. `connections`: per core (the scaling rows use N × connections on N cores).
 * Returns { cpus, perCore: [{ fn, engine, workerd?, bare, raw, workerdRatio?, bareRatio?, trials, cpuTogether: { ratio, trials } }],
 * scaling: [{ fn, cores, connections, engineCpus, loadCpus, shared, engine, scale, trials }] };
 * engine/workerd/bare/raw: medians { rps, p50, p99, non2xx, socketErrors }.
 */
export async function perCore({ fns = ['gcd', 'authentication'], connections = 32, seconds, trials, workerd = true, log = () => {} }) {
  const cpus = allowedCpus();
  if (cpus.length < 2) throw new Error(`the per-core bench needs two CPUs (one for the server, one for wrk); this process may use ${cpus.join(',')}`);
  const split = (n) => {
    const own = cpus.slice(0, n);
    const rest = cpus.slice(n);
    return { engineCpus: own.join(','), loadCpus: (rest.length > 0 ? rest : cpus).join(','), loadThreads: Math.max(1, rest.length > 0 ? rest.length : cpus.length), shared: rest.length === 0 };
  };
  const counts = coreCounts(cpus.length);
  const one = split(1);
  const dirs = [];
  const engines = new Map();
  let peer;
  let bare;
  let raw;
  try {
    for (const cores of counts) {
      const dataDir = tempDir(`we-bench-core${cores}-`);
      dirs.push(dataDir);
      const engine = await startEngine(dataDir, [], { cpus: split(cores).engineCpus });
      engines.set(cores, engine);
      for (const fn of fns) await deploy(engine.url, fn, `file:${join(EXAMPLES_WASM, `${fn}.wasm`)}`);
    }
    if (workerd) peer = await startWorkerd({ cpus: one.engineCpus });
    bare = await startBareNode({ cpus: one.engineCpus });
    raw = await startBareNode({ cpus: one.engineCpus, raw: true });

    // Each case: a name, its server, its cores and how wrk runs against it.
    const cases = [
      { key: 'engine1', url: engines.get(1).url, pid: engines.get(1).child.pid, ...one, connections },
      ...(peer ? [{ key: 'workerd', url: peer.url, pid: peer.child.pid, ...one, connections }] : []),
      { key: 'bare', url: bare.url, pid: bare.child.pid, ...one, connections },
      { key: 'raw', url: raw.url, pid: raw.child.pid, ...one, connections },
      ...counts.slice(1).map((cores) => ({ key: `engine${cores}`, url: engines.get(cores).url, pid: engines.get(cores).child.pid, ...split(cores), connections: cores * connections })),
    ];
    // Each run also gives the server's CPU per answered request (user + system, all its threads,
    // from /proc): the same work compared without wrk's own ceiling or a noisy neighbour's share.
    const measure = async (c, fn, secs) => {
      const before = processCpuSeconds(c.pid);
      const result = await wrk(c.url, { fn, connections: c.connections, seconds: secs, threads: Math.min(c.loadThreads, c.connections), cpus: c.loadCpus });
      const answered = result.rps * secs;
      return { ...result, cpuUs: answered > 0 ? ((processCpuSeconds(c.pid) - before) * 1e6) / answered : NaN };
    };

    // The engine and the bare server served AT ONCE on the same core, each by a wrk of its own
    // (half the connections each): both see the same moments of the machine, so the ratio of their
    // CPU per request spreads far less than that of their turns' req/s on a shared host.
    const together = async (a, b, fn, secs) => {
      const before = [a, b].map((c) => processCpuSeconds(c.pid));
      const half = Math.max(1, Math.round(connections / 2));
      const results = await Promise.all([a, b].map((c) => wrk(c.url, { fn, connections: half, seconds: secs, threads: 1, cpus: c.loadCpus })));
      const [cpuA, cpuB] = [a, b].map((c, i) => ((processCpuSeconds(c.pid) - before[i]) * 1e6) / (results[i].rps * secs));
      return cpuA / cpuB;
    };

    const perCoreRows = [];
    const scalingRows = [];
    for (const fn of fns) {
      // warm every server up (JIT, connections) before measuring
      for (const c of cases) await measure(c, fn, 2);
      const runs = [];
      for (let t = 0; t < trials; t++) {
        const trial = {};
        for (const c of cases) trial[c.key] = await measure(c, fn, seconds);
        runs.push(trial);
        log(`${fn} #${t + 1}/${trials}: ${cases.map((c) => `${c.key} ${Math.round(trial[c.key].rps)}/s`).join(', ')}`);
      }
      const engineCase = cases.find((c) => c.key === 'engine1');
      const bareCase = cases.find((c) => c.key === 'bare');
      const cpuRatios = [];
      for (let t = 0; t < trials; t++) cpuRatios.push(await together(engineCase, bareCase, fn, seconds));
      log(`${fn} together: engine/bare CPU per request ${cpuRatios.map((x) => x.toFixed(3)).join(', ')}`);
      const side = (key) => summarize(runs.map((r) => r[key]));
      const ratio = (a, b) => median(runs.map((r) => r[a].rps / r[b].rps));
      perCoreRows.push({
        fn,
        connections,
        engine: side('engine1'),
        workerd: peer ? side('workerd') : undefined,
        bare: side('bare'),
        raw: side('raw'),
        workerdRatio: peer ? ratio('engine1', 'workerd') : undefined,
        bareRatio: ratio('engine1', 'bare'),
        trials: runs.map((r) => ({ workerd: peer ? r.engine1.rps / r.workerd.rps : undefined, bare: r.engine1.rps / r.bare.rps })),
        cpuTogether: { ratio: median(cpuRatios), trials: cpuRatios },
      });
      for (const cores of counts) {
        const c = cases.find((x) => x.key === `engine${cores}`);
        const scales = runs.map((r) => r[c.key].rps / (cores * r.engine1.rps));
        scalingRows.push({ fn, cores, connections: c.connections, engineCpus: c.engineCpus, loadCpus: c.loadCpus, shared: c.shared, engine: side(c.key), scale: median(scales), trials: scales });
      }
    }
    return { cpus, perCore: perCoreRows, scaling: scalingRows };
  } finally {
    for (const engine of engines.values()) await kill(engine.child);
    if (peer) await kill(peer.child);
    if (bare) await kill(bare.child);
    if (raw) await kill(raw.child);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

function summarize(list) {
  const med = (key) => median(list.map((r) => r[key]));
  const sum = (key) => list.reduce((total, r) => total + r[key], 0);
  return { rps: med('rps'), p50: med('p50'), p99: med('p99'), cpuUs: med('cpuUs'), non2xx: sum('non2xx'), socketErrors: sum('socketErrors') };
}

/** CPU seconds (user + system, every thread) process `pid` has used: /proc/PID/stat's utime and stime. */
function processCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux this bench runs on (the kernel's ABI fixes it for /proc). */
const CLOCK_TICKS = 100;

const TARGET_VS_WORKERD = { gcd: 1.3, authentication: 3 };
const fmtUs = (us) => (Number.isFinite(us) ? `${us.toFixed(1)}` : 'n/a');

/** perCore()'s result as rows of the bench table: [section, measure, engine, peer, ratio, target, met, notes]. */
export function perCoreTableRows({ perCore: perCoreRows, scaling }, { fmtRate, fmtMs, times, yes }) {
  const rows = [];
  const errors = (label, x) => (x && x.non2xx + x.socketErrors > 0 ? [`${label} errors: ${x.non2xx} non-2xx, ${x.socketErrors} socket`] : []);
  const latency = (x) => `p50 ${fmtMs(x.p50)} p99 ${fmtMs(x.p99)}`;
  for (const r of perCoreRows) {
    const want = TARGET_VS_WORKERD[r.fn];
    const peers = [...(r.workerd ? [`workerd ${fmtRate(r.workerd.rps)}`] : ['workerd: not run']), `bare Node ${fmtRate(r.bare.rps)}`];
    const ratios = [...(r.workerd ? [`${times(r.workerdRatio)} workerd`] : []), `${times(r.bareRatio)} bare`];
    const target = `≥ 1× bare${want ? `, ≥ ${want}× workerd` : ''}`;
    const met = r.bareRatio >= 1 && (!want || (r.workerd ? r.workerdRatio >= want : false));
    const notes = [
      `trials (vs workerd / vs bare): ${r.trials.map((t) => `${t.workerd === undefined ? '-' : times(t.workerd)} / ${times(t.bare)}`).join(', ')}`,
      `engine ${latency(r.engine)}${r.workerd ? `, workerd ${latency(r.workerd)}` : ''}, bare ${latency(r.bare)}`,
      `CPU µs per request (the server process, user + system): engine ${fmtUs(r.engine.cpuUs)}${r.workerd ? `, workerd ${fmtUs(r.workerd.cpuUs)}` : ''}, bare ${fmtUs(r.bare.cpuUs)}, bare without node:http ${fmtUs(r.raw.cpuUs)}`,
      `served together on the one core (same moments; wrk split), engine/bare CPU per request ${r.cpuTogether.ratio.toFixed(3)}× (trials ${r.cpuTogether.trials.map((x) => x.toFixed(3)).join(', ')}): per core about ${times(1 / r.cpuTogether.ratio)} bare`,
      `bare Node on the socket, without node:http (a floor, not a peer): ${fmtRate(r.raw.rps)}; of that, bare on node:http serves ${times(r.bare.rps / r.raw.rps)}, the engine ${times(r.engine.rps / r.raw.rps)}`,
      ...errors('engine', r.engine),
      ...errors('workerd', r.workerd),
      ...errors('bare', r.bare),
      ...errors('raw', r.raw),
    ];
    rows.push(['3 per core req/s', `${r.fn}, ${r.connections} conns, 1 core each`, fmtRate(r.engine.rps), peers.join(', '), ratios.join(', '), target, r.workerd || !want ? yes(met) : 'n/a', notes.join('; ')]);
  }
  for (const r of scaling) {
    const where = `engine on CPU ${r.engineCpus}, wrk on ${r.loadCpus}${r.shared ? ' (shared with the engine: not clean)' : ''}`;
    const reference = r.cores === 1;
    rows.push([
      '4 scaling req/s',
      `${r.fn}, engine on ${r.cores} core${r.cores === 1 ? '' : 's'}, ${r.connections} conns`,
      fmtRate(r.engine.rps),
      '',
      reference ? '(one-core reference)' : `${times(r.scale)} of ${r.cores} × one core`,
      reference ? '' : '≥ 0.85×',
      reference ? '' : r.shared ? `${yes(r.scale >= 0.85)} (not clean)` : yes(r.scale >= 0.85),
      [where, `p50 ${fmtMs(r.engine.p50)} p99 ${fmtMs(r.engine.p99)}`, ...(reference ? [] : [`trials: ${r.trials.map(times).join(', ')}`]), ...errors('engine', r.engine)].join('; '),
    ]);
  }
  return rows;
}
