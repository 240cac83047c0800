// Part 2: HTTP throughput and latency of POST /function/invoke with wrk, WasmEngine against
// workerd, both measured in the same run, one after the other, with the same wrk settings.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './processes.mjs';

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

/** Runs wrk against url's /function/invoke. */
export async function wrk(url, { fn, connections, seconds, threads = 2, script = 'post.lua' }) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '10s', '--latency', '-s', join(ROOT, 'bench', 'lib', script), `${url}/function/invoke`];
  const { stdout } = await run('wrk', args, { env: { ...process.env, BODY: BODIES[fn] }, maxBuffer: 1 << 24 });
  return { ...parseWrk(stdout), raw: stdout };
}
