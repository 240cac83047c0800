// The cluster row: three engines sharing one PostgreSQL store (`serve --store postgresql://…`,
// one process per port, as a user scales out on one machine), measured for
//   - deploy answered by one node → the function invokable on all three (each trial deploys a new
//     name through the next node and polls /function/invoke on every node until all answer);
//   - invocation throughput with wrk through haproxy with one engine behind it, then three.
// On a 2-core machine three engines share the same two cores as one: the second figure says
// nothing about scaling there (on a machine with cores to spare, it does).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { startHaproxy } from './haproxy.mjs';
import { wrk } from './http.mjs';
import { startPostgres } from './postgres.mjs';
import { EXAMPLES_WASM, deploy, freePort, kill, startEngine, tempDir } from './processes.mjs';
import { median } from './stats.mjs';

/** Nearest-rank percentile (p99 of fewer than 100 trials is their maximum). */
export const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
};

/** Resolves with performance.now() at the first 200 from `url`'s invoke of `name` (bounded). */
async function firstAnswer(url, name) {
  const body = JSON.stringify({ function_name: name, args: { a: '12', b: '18' } });
  for (let i = 0; i < 20_000; i++) {
    const answer = await request(`${url}/function/invoke`, { method: 'POST', body });
    await answer.body.dump();
    if (answer.statusCode === 200) return performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`${name} never became invokable at ${url}`);
}

export async function clusterBench({ trials = 30, seconds = 10, connections = 64, log = () => {} } = {}) {
  const pg = await startPostgres();
  const engines = [];
  const dirs = [];
  const image = `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`;
  try {
    for (let i = 0; i < 3; i++) {
      const dir = tempDir('we-bench-node-');
      dirs.push(dir);
      engines.push(await startEngine(dir, ['--store', pg.url, '--node-name', `bench-${i}`, '--port', String(await freePort())]));
    }
    log(`  deploy → invokable on all 3 nodes, ${trials} trials`);
    const delays = [];
    for (let t = 0; t < trials; t++) {
      const name = `p-${t}`;
      await deploy(engines[t % 3].url, name, image);
      const answered = performance.now();
      const reached = await Promise.all(engines.map((e) => firstAnswer(e.url, name)));
      delays.push(Math.max(...reached) - answered);
    }

    await deploy(engines[0].url, 'gcd', image);
    await Promise.all(engines.map((e) => firstAnswer(e.url, 'gcd')));
    const through = async (behind) => {
      const lb = await startHaproxy(behind.map((e) => e.url));
      try {
        await wrk(lb.url, { fn: 'gcd', connections, seconds: 2 }); // warm-up: JIT, connections
        return await wrk(lb.url, { fn: 'gcd', connections, seconds });
      } finally {
        await lb.stop();
      }
    };
    log(`  throughput through haproxy, 1 engine then 3, ${connections} connections × ${seconds} s`);
    const one = await through(engines.slice(0, 1));
    const three = await through(engines);
    return { trials, delays, p50: median(delays), p99: percentile(delays, 99), one, three, connections, seconds };
  } finally {
    await Promise.all(engines.map((e) => kill(e.child)));
    await pg.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}
