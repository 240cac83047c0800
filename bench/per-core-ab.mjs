// Two builds of the engine side by side, per core: each restricted to the same ONE CPU with taskset,
// wrk on another, the two measured one after the other, round after round, so both see the same
// moments of a shared, noisy machine. For each: requests per second, and the process's CPU per
// answered request (user and system, all its threads, from /proc). A change that only shows on real
// sockets (say, what earlier code left in V8's inline caches) shows here and not in the in-memory
// bench/hot-path.mjs. Nothing here asserts a timing.
//
// --together: both builds serve AT ONCE on the same CPU, each loaded by a wrk of its own (both on
// the other CPU, half the connections each), so every round sees exactly the same moment of the
// machine for both. Each then gets about half the CPU, so req/s mean little; CPU per request, and
// its ratio, are the figures (on this shared host they spread several times less than when the
// builds take turns).
//
// --auth-invoke: both engines with Basic auth on the invocation routes, every call carrying the
// credentials.
//
//   node bench/per-core-ab.mjs --base DIR [--fn gcd|authentication] [--rounds N (7)] [--seconds N (3)] [--conns N (32)] [--together] [--auth-invoke]
//
// DIR is another checkout, built (`npm run build`), with node_modules; this one must be built too.
// `--base bare` puts the bare Node server of the per-core table (bench/bare-node/server.mjs) in its
// place: with --together, the engine's CPU per request against the bare server's at the same moments.
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { wrk } from './lib/http.mjs';
import { allowedCpus } from './lib/per-core.mjs';
import { EXAMPLES_WASM, ROOT, deploy, kill, startBareNode, startEngine, tempDir } from './lib/processes.mjs';
import { median } from './lib/stats.mjs';

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    fn: { type: 'string', default: 'gcd' },
    rounds: { type: 'string', default: '7' },
    seconds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '32' },
    together: { type: 'boolean', default: false },
    'auth-invoke': { type: 'boolean', default: false },
  },
});
if (values.base === undefined) throw new Error('usage: node bench/per-core-ab.mjs --base DIR [--fn gcd|authentication] [--rounds N] [--seconds N] [--conns N]');
const cpus = allowedCpus();
if (cpus.length < 2) throw new Error('needs two CPUs: one for the engines, one for wrk');
const [engineCpu, loadCpu] = [String(cpus[0]), String(cpus[1])];
const { fn } = values;
const [rounds, seconds, connections] = [Number(values.rounds), Number(values.seconds), Number(values.conns)];

/** CPU seconds (user, system) process `pid` has used, from /proc/PID/stat (USER_HZ is 100 on Linux). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(fields[11]) / 100, Number(fields[12]) / 100];
}

const AUTH = ['--basic-auth-user', 'bench', '--basic-auth-password', 'bench-password', '--auth-invoke', 'true'];
const authorization = values['auth-invoke'] ? `Basic ${Buffer.from('bench:bench-password').toString('base64')}` : undefined;
const wrkAuth = authorization ? { script: 'post-auth.lua', authorization } : {};
const builds = [
  { label: 'this', root: ROOT },
  values.base === 'bare' ? { label: 'bare', root: 'bench/bare-node/server.mjs' } : { label: 'base', root: resolve(values.base) },
];
try {
  for (const build of builds) {
    build.runs = [];
    if (build.label === 'bare') {
      build.engine = await startBareNode({ cpus: engineCpu });
      continue;
    }
    build.dataDir = tempDir('we-bench-ab-');
    // --http-threads 1: the one-core configuration, one HTTP thread reading every request.
    build.engine = await startEngine(build.dataDir, ['--http-threads', '1', ...(authorization ? AUTH : [])], { cpus: engineCpu, root: build.root });
    await deploy(build.engine.url, fn, `file:${join(EXAMPLES_WASM, `${fn}.wasm`)}`, {}, authorization);
  }
  for (const build of builds) await wrk(build.engine.url, { fn, connections, seconds: 2, threads: 1, cpus: loadCpu, ...wrkAuth });
  /** One wrk run against `build` (or both at once when `together`), its CPU per request read from /proc around it. */
  const measure = async (measured) => {
    const before = measured.map((build) => cpuSeconds(build.engine.child.pid));
    const conns = values.together ? Math.max(1, Math.round(connections / 2)) : connections;
    const results = await Promise.all(measured.map((build) => wrk(build.engine.url, { fn, connections: conns, seconds, threads: 1, cpus: loadCpu, ...wrkAuth })));
    measured.forEach((build, i) => {
      if (results[i].non2xx + results[i].socketErrors > 0) process.stderr.write(`[per-core-ab] ${build.label}: ${results[i].non2xx} non-2xx answers, ${results[i].socketErrors} socket errors\n`);
      const [user1, system1] = cpuSeconds(build.engine.child.pid);
      const answered = results[i].rps * seconds;
      build.runs.push({ rps: results[i].rps, user: ((user1 - before[i][0]) * 1e6) / answered, system: ((system1 - before[i][1]) * 1e6) / answered });
    });
  };
  for (let round = 0; round < rounds; round++) {
    if (values.together) await measure(builds);
    else for (const build of builds) await measure([build]);
    process.stderr.write(`[per-core-ab] ${fn} round ${round + 1}/${rounds}: ${builds.map((b) => `${b.label} ${Math.round(b.runs.at(-1).rps)}/s`).join(', ')}\n`);
  }
  console.log(`${fn}, ${connections} conns, ${rounds} rounds × ${seconds} s ${values.together ? 'both at once (half the conns each)' : 'alternating'}, engines on CPU ${engineCpu}, wrk on ${loadCpu}; medians`);
  console.log('| build | req/s | CPU µs/request (user + system) | trials req/s |\n|---|---|---|---|');
  for (const b of builds) {
    const med = (key) => median(b.runs.map((r) => r[key]));
    console.log(`| ${b.label} (${b.root}) | ${Math.round(med('rps')).toLocaleString('en-US')} | ${med('user').toFixed(1)} + ${med('system').toFixed(1)} | ${b.runs.map((r) => Math.round(r.rps)).join(', ')} |`);
  }
  const [self, base] = builds;
  const cpu = (r) => r.user + r.system;
  console.log(`this/${base.label}: req/s ${median(self.runs.map((r, i) => r.rps / base.runs[i].rps)).toFixed(3)}×, CPU per request ${median(self.runs.map((r, i) => cpu(r) / cpu(base.runs[i]))).toFixed(3)}× (medians of the per-round ratios)`);
} finally {
  for (const build of builds) {
    if (build.engine) await kill(build.engine.child);
    if (build.dataDir) rmSync(build.dataDir, { recursive: true, force: true });
  }
}
