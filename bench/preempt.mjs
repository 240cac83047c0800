// The cost of the preemption checks (src/runtime/preempt/): each example run in one thread, as a
// worker runs it (InstanceRunner run + settle, instance reuse on), compiled without and with the
// checks, alternating batches; and a tight counting loop (the worst case: a check per iteration of
// a loop of three instructions) with the fuel the host gives per check varied, which is how
// CHECK_INTERVAL was chosen. Needs `npm run build`, `npm run examples`, and wat2wasm.
//
//   node bench/preempt.mjs [--quick]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CHECK_INTERVAL,
  InstanceRunner,
  PreemptClock,
  analyzeModule,
  injectPreemption,
  normalizeArgs,
  prepareForReuse,
  toSandboxCall,
  withMemoryMaximum,
} from '../dist/runtime/index.js';
import { EXAMPLES_WASM } from './lib/processes.mjs';
import { fmtUs, median, microsPerCall } from './lib/stats.mjs';

const quick = process.argv.includes('--quick');
const LIMITS = { timeoutMs: 10_000, memoryLimitMb: 128, maxOutputBytes: 4 * 1024 * 1024 };
const AUTH = { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' };
const CASES = [
  { name: 'gcd', args: { a: '1134903170', b: '1836311903' } },
  { name: 'fibonacci', args: ['90'] },
  { name: 'authentication', args: AUTH },
];

/** A module compiled as the pool compiles it, with or without the checks. */
function compiled(bytes, checks) {
  const capped = withMemoryMaximum(bytes, LIMITS.memoryLimitMb * 16);
  let base = capped;
  if (checks) {
    const out = injectPreemption(capped);
    if (!('bytes' in out) || !WebAssembly.validate(out.bytes)) throw new Error(`no checks: ${out.reason ?? 'invalid'}`);
    base = out.bytes;
  }
  const exposed = prepareForReuse(base);
  return { module: new WebAssembly.Module('bytes' in exposed ? exposed.bytes : base), state: exposed.state, noReuse: exposed.reason };
}

function runner(bytes, analysis, checks, clock) {
  const c = compiled(bytes, checks);
  return new InstanceRunner(c.module, analysis.abi, c.state, c.noReuse, clock);
}

const rows = [];
const batches = quick ? 3 : 9;
for (const { name, args } of CASES) {
  const bytes = new Uint8Array(readFileSync(join(EXAMPLES_WASM, `${name}.wasm`)));
  const analysis = analyzeModule(bytes, { functionName: name });
  const call = toSandboxCall({ analysis, args: normalizeArgs(args), limits: LIMITS });
  const clock = new PreemptClock();
  const plain = runner(bytes, analysis, false);
  const checked = runner(bytes, analysis, true, clock);
  const once = (r) => () => {
    r.run(call);
    r.settle();
  };
  // The thread that serves HTTP arms its clock for each call: that is measured too.
  const armedOnce = (r) => () => {
    clock.arm(performance.now() + 1000, 256);
    r.run(call);
    clock.disarm();
    r.settle();
  };
  const n = quick ? 2_000 : 20_000;
  const a = [];
  const b = [];
  for (let i = 0; i < batches; i++) {
    a.push(microsPerCall(once(plain), n, 1));
    b.push(microsPerCall(armedOnce(checked), n, 1));
  }
  rows.push([name, median(a), median(b)]);
}

// The worst case: `loop: i -= 1; br_if loop (i != 0)`, a check's tick per three instructions.
const dir = mkdtempSync(join(tmpdir(), 'we-bench-preempt-'));
let loop;
try {
  writeFileSync(
    join(dir, 'm.wat'),
    '(module (func (export "count") (param $n i32) (result i32) (loop $l (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n))) (local.get $n)))',
  );
  execFileSync('wat2wasm', [join(dir, 'm.wat'), '-o', join(dir, 'm.wasm')]);
  loop = new Uint8Array(readFileSync(join(dir, 'm.wasm')));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const iterations = quick ? 10_000_000 : 100_000_000;
const analysis = analyzeModule(loop, { functionName: 'count' });
const call = toSandboxCall({ analysis, args: normalizeArgs([String(iterations)]), limits: LIMITS });
const loopRows = [];
const nsPerIteration = (r, clock) => {
  const runs = [];
  for (let i = 0; i < (quick ? 3 : 7); i++) {
    clock?.arm(performance.now() + 60_000, 256);
    const t = performance.now();
    r.run(call);
    runs.push(((performance.now() - t) * 1e6) / iterations);
    clock?.disarm();
    r.settle();
  }
  return median(runs);
};
loopRows.push(['no checks', nsPerIteration(runner(loop, analysis, false))]);
for (const interval of [100, 1_000, 10_000, 100_000]) {
  const clock = new PreemptClock(interval);
  loopRows.push([`checks, ${interval} fuel per host check${interval === CHECK_INTERVAL ? ' (CHECK_INTERVAL)' : ''}`, nsPerIteration(runner(loop, analysis, true, clock), clock)]);
}

console.log(`per call, run + settle in one thread (instance reuse on), median of ${batches} alternating batches`);
console.log('| example | without checks | with checks (clock armed per call) | overhead |');
console.log('|---|---|---|---|');
for (const [name, a, b] of rows) console.log(`| ${name} | ${fmtUs(a)} | ${fmtUs(b)} | ${(((b - a) / a) * 100).toFixed(1)}% |`);
console.log('');
console.log(`tight loop of ${iterations.toLocaleString('en-US')} iterations (one tick per iteration), ns per iteration, median`);
console.log('| module | ns / iteration |');
console.log('|---|---|');
for (const [what, ns] of loopRows) console.log(`| ${what} | ${ns.toFixed(3)} |`);
