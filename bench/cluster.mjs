#!/usr/bin/env node
// The cluster row of `npm run bench` on its own: three engines on one PostgreSQL store, deploy →
// invokable on all three (p50/p99 over trials), and throughput through haproxy with 1 and 3 engines.
// Needs `npm run build`, `npm run examples`, PostgreSQL, haproxy and wrk (scripts/ensure-tools.sh).
//
//   node bench/cluster.mjs [--trials N (30)] [--seconds N (10)] [--connections N (64)]
import { cpus } from 'node:os';
import { clusterBench } from './lib/cluster.mjs';
import { wrkErrors } from './lib/http.mjs';
import { fmtMs, fmtRate } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && argv[at + 1] !== undefined ? Number(argv[at + 1]) : fallback;
};
const r = await clusterBench({
  trials: option('trials', 30),
  seconds: option('seconds', 10),
  connections: option('connections', 64),
  log: (msg) => process.stderr.write(`[bench] ${msg}\n`),
});
process.stdout.write(
  [
    `machine: ${cpus().length} cores`,
    `deploy answered → invokable on all 3 nodes: p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)} over ${r.trials} trials`,
    `gcd through haproxy, ${r.connections} connections × ${r.seconds} s: 1 engine ${fmtRate(r.one.rps)} (p99 ${fmtMs(r.one.p99)})${wrkErrors(r.one)}, ` +
      `3 engines ${fmtRate(r.three.rps)} (p99 ${fmtMs(r.three.p99)})${wrkErrors(r.three)}`,
    '',
  ].join('\n'),
);
