// Part 2: HTTP throughput and latency of POST /function/invoke with wrk, WasmEngine against
// workerd, both measured in the same run, one after the other, with the same wrk settings.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, pinned } from './processes.mjs';
import { fmtMs, fmtRate, median } from './stats.mjs';

const run = promisify(execFile);

export const BODIES = {
  gcd: JSON.stringify({ function_name: 'gcd', args: { a: '12', b: '18' } }),
  authentication: JSON.stringify({ function_name: 'authentication', args: { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' } }),
};

const UNITS = { us: 1e-3, ms: 1, s: 1000 };
const toMs = (text) => {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  return m ? Number(m[1]) * UNITS[m[2]] : NaN;
};

/** Parses wrk's report (run with --latency). */
export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const statuses = /^STATUSES(.*)$/m.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    p50: pct(50),
    p99: pct(99),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    socketErrors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    statuses: statuses
      ? Object.fromEntries(
          statuses[1]
            .trim()
            .split(/\s+/)
            .filter(Boolean)
            .map((kv) => kv.split('='))
            .map(([k, v]) => [k, Number(v)]),
        )
      : undefined,
  };
}

/** Runs wrk against url's /function/invoke; `cpus`: a taskset CPU list wrk is restricted to. */
export async function wrk(url, { fn, connections, seconds, threads = 2, script = 'post.lua', cpus, authorization }) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '10s', '--latency', '-s', join(ROOT, 'bench', 'lib', script), `${url}/function/invoke`];
  const [command, commandArgs] = pinned(cpus, 'wrk', args);
  const { stdout } = await run(command, commandArgs, { env: { ...process.env, BODY: BODIES[fn], ...(authorization ? { AUTHORIZATION: authorization } : {}) }, maxBuffer: 1 << 24 });
  return { ...parseWrk(stdout), raw: stdout };
}

/**
 * Runs one (function, connections) case `trials` times, each trial the engine's wrk run then the
 * peer's (workerd) right after, so both see the same moment of a shared, noisy machine. One run
 * moves 10–30% on a small VM; the medians, and above all the median of the per-trial ratios, are
 * what a "met" decision can rest on. Without peerUrl only the engine is measured.
 *
 * Returns the per-trial results, the engine's and the peer's medians (rps, p50, p99) with their
 * error totals over all trials, the median of the per-trial rps ratios (engine / peer) and the
 * median of the per-trial p99 ratios; peer and the ratios are undefined without a peer.
 */
export async function compareHttp({ engineUrl, peerUrl, fn, connections, seconds, trials = 3, log = () => {} }) {
  if (!Number.isInteger(trials) || trials < 1) throw new Error(`trials must be a positive integer, got ${trials}`);
  const runs = [];
  for (let t = 0; t < trials; t++) {
    const engine = await wrk(engineUrl, { fn, connections, seconds });
    const peer = peerUrl ? await wrk(peerUrl, { fn, connections, seconds }) : undefined;
    const trial = { engine, peer, rpsRatio: peer && engine.rps / peer.rps, p99Ratio: peer && engine.p99 / peer.p99 };
    runs.push(trial);
    log(`${fn} c=${connections} #${t + 1}/${trials}: ${describeTrial(trial)}`);
  }
  const peerRuns = runs.map((r) => r.peer).filter(Boolean);
  return {
    fn,
    connections,
    trials: runs,
    engine: summarize(runs.map((r) => r.engine)),
    peer: peerRuns.length > 0 ? summarize(peerRuns) : undefined,
    rpsRatio: peerRuns.length > 0 ? median(runs.map((r) => r.rpsRatio)) : undefined,
    p99Ratio: peerRuns.length > 0 ? median(runs.map((r) => r.p99Ratio)) : undefined,
  };
}

/** Medians of one side's runs, and its error counts summed (any error matters, not a typical one). */
function summarize(list) {
  const med = (key) => median(list.map((r) => r[key]));
  const sum = (key) => list.reduce((total, r) => total + r[key], 0);
  return { rps: med('rps'), p50: med('p50'), p99: med('p99'), non2xx: sum('non2xx'), socketErrors: sum('socketErrors') };
}

function describeTrial({ engine, peer, rpsRatio }) {
  const side = (r) => `${fmtRate(r.rps)} p50 ${fmtMs(r.p50)} p99 ${fmtMs(r.p99)}${wrkErrors(r)}`;
  return peer ? `engine ${side(engine)} | workerd ${side(peer)} | ratio ${rpsRatio.toFixed(2)}×` : `engine ${side(engine)}`;
}

/** " [errors: …]" when a wrk run saw any non-2xx answer or socket error, else "". */
export function wrkErrors(r) {
  return r.non2xx + r.socketErrors > 0 ? ` [errors: ${r.non2xx} non-2xx, ${r.socketErrors} socket]` : '';
}
