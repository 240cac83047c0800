// Sections 3 and 4 of `npm run bench` on their own: per core (WasmEngine, workerd and a bare
// node:http server, each on one core with taskset, wrk on the others) and the engine's scaling
// over 1, 2, 4 … cores. bench/lib/per-core.mjs says how; nothing here asserts a timing.
//
//   node bench/per-core.mjs [--seconds N (10)] [--trials N (3)] [--conns N (32)] [--fn gcd|authentication]... [--no-workerd]
//
// Needs `npm run build` and `npm run examples`, wrk and taskset, and workerd (a devDependency).
import { cpus } from 'node:os';
import { perCore, perCoreTableRows } from './lib/per-core.mjs';
import { fmtMs, fmtRate, formatTable, times, yes } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1] : fallback;
};
const fnArgs = argv.flatMap((a, i) => (a === '--fn' && argv[i + 1] !== undefined ? [argv[i + 1]] : []));
const settings = {
  seconds: Number(option('seconds', '10')),
  trials: Number(option('trials', '3')),
  connections: Number(option('conns', '32')),
  fns: fnArgs.length > 0 ? fnArgs : ['gcd', 'authentication'],
  workerd: !argv.includes('--no-workerd'),
};
const log = (msg) => process.stderr.write(`[per-core] ${msg}\n`);

const result = await perCore({ ...settings, log });
const header = ['section', 'measure', 'WasmEngine', 'baseline / peer', 'ratio', 'target', 'met', 'notes'];
console.log(`WasmEngine per-core bench — ${new Date().toISOString()}`);
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node.js ${process.version}; CPUs used: ${result.cpus.join(',')}`);
console.log(`settings: ${settings.trials} trial${settings.trials === 1 ? '' : 's'} × ${settings.seconds} s per case, every case once per trial, one after the other; medians (ratios: medians of the per-trial ratios)`);
console.log('');
console.log(formatTable(header, perCoreTableRows(result, { fmtRate, fmtMs, times, yes })));
