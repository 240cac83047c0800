/**
 * The reuse differential for one generated module, in the calling thread: every call is run twice,
 *
 * - as a pool worker runs it: the module capped at its memory limit, given preemption checks
 *   (injectPreemption, answered by a clock that asks for a check at nearly every loop iteration
 *   and function entry and never stops a call), rewritten by prepareForReuse (memory size made
 *   virtual, state exported), one InstanceRunner per ABI that restores and
 *   reuses its instance from call to call (run, then settle, as worker.ts does), calls to the
 *   module's several exports interleaved on it (a worker keeps one runner per module and ABI,
 *   whatever the function's entrypoint);
 * - in a fresh instance of the ORIGINAL module (capped at the same limit, not rewritten).
 *
 * The two answers (output, or error code and message) must be equal, call after call, and no
 * answer may be INTERNAL; no difference is tolerated, not even an access within pages an earlier
 * call grew past the size the guest sees (it traps as in a fresh instance). Guest code runs
 * synchronously here: the caller runs this in a worker thread it can terminate (module-worker.mjs).
 */
import { InstanceRunner, PreemptClock, analyzeModule, injectPreemption, normalizeArgs, prepareForReuse, toSandboxCall, wasm, withMemoryMaximum } from './dist.mjs';

/** Fuel per check: the checks' slow path runs nearly every time, so that it is what is tested. */
const clock = new PreemptClock(3);

const I32 = ['0', '1', '-1', '2', '7', '255', '65536', '2147483647', '-2147483648', '4294967295'];
const I64 = ['0', '1', '-1', '9223372036854775807', '-9223372036854775808', '18446744073709551615', '4294967296'];
const FLOAT = ['0', '-0', '1', '-1.5', '0.1', 'NaN', 'Infinity', '-Infinity', '3.4e38', '1e-45', '1.7976931348623157e308'];

/** One argument text for a parameter of `type`; now and then a value the ABI must refuse. */
function argumentText(type, rng, edges) {
  if (rng.chance(0.02)) return rng.pick(['x', '', '1.5', '99999999999999999999999']);
  switch (type) {
    case 'i32':
      if (rng.chance(0.4)) return String(rng.pick(edges));
      return rng.chance(0.5) ? rng.pick(I32) : String(rng.u32() | 0);
    case 'i64':
      return rng.chance(0.5) ? rng.pick(I64) : String(BigInt.asIntN(64, (BigInt(rng.u32()) << 32n) | BigInt(rng.u32())));
    default:
      return rng.chance(0.5) ? rng.pick(FLOAT) : String((rng.float() - 0.5) * 10 ** rng.int(-5, 40));
  }
}

/**
 * i32 values worth trying for a module whose memory starts at `pages` pages: small page counts to
 * grow by, and addresses just around the ends of the memory as it starts and as calls grow it.
 */
function edgeValues(pages) {
  const out = [0, 1, 2, 3];
  for (let p = Math.max(pages, 1); p <= pages + 3; p++) for (const d of [-8, -4, -1, 0, 4]) out.push(p * 65536 + d);
  return out;
}

function randomArgs(analysis, rng, edges) {
  if (analysis.abi === 'numeric') {
    const params = analysis.params ?? [];
    let count = params.length;
    if (rng.chance(0.04)) count += rng.pick([-1, 1]);
    return Array.from({ length: Math.max(0, count) }, (_, i) => argumentText(params[i] ?? 'i32', rng, edges));
  }
  const length = rng.chance(0.05) ? rng.int(60_000, 300_000) : rng.int(0, 64);
  const value = String.fromCharCode(...Array.from({ length: Math.min(length, 64) }, () => rng.int(0x20, 0x7e))).repeat(Math.ceil(length / 64) || 0).slice(0, length);
  return rng.chance(0.3) ? [value] : { k: value, n: String(rng.int(0, 9)) };
}

/** Exports whose answer shows the instance's state: memory, globals, table entries. */
const OBSERVERS = new Set(['fuzz_state', 'fuzz_state', 'hashMemory', 'fuzz_globals_digest', 'fuzz_table_state', 'fuzz_grow_load', 'fuzz_size']);

/** A call's answer in a comparable form. */
function outcome(run) {
  try {
    return { output: run().output };
  } catch (err) {
    const code = err && typeof err === 'object' && 'code' in err ? err.code : 'THROWN';
    return { code, message: err instanceof Error ? err.message : String(err) };
  }
}

const same = (a, b) => a.output === b.output && a.code === b.code && a.message === b.message;

/**
 * Runs the differential of `mod` (from generateModule) with arguments drawn from `rng`.
 * Returns counts and, for each problem, what reproduces it (the calls in order).
 */
export function differential(mod, rng) {
  const result = { preemptChecks: false, targets: 0, refused: 0, calls: 0, reused: 0, instantiated: 0, reuseRefused: undefined, virtualSize: false, answers: {}, problems: [] };
  const limits = { timeoutMs: 5_000, memoryLimitMb: mod.memoryLimitMb, maxOutputBytes: rng.pick([16, 1024, 1 << 20]) };
  const capped = withMemoryMaximum(mod.bytes, mod.memoryLimitMb * 16);
  const original = new wasm.Module(capped);
  // As compile.ts does: checks first, validated, else the module runs without them.
  const checked = injectPreemption(capped);
  const base = 'bytes' in checked && wasm.validate(checked.bytes) ? checked.bytes : capped;
  result.preemptChecks = base !== capped;
  let exposed;
  try {
    exposed = prepareForReuse(base);
  } catch (err) {
    // module-cache.ts does the same: a module the rewrite cannot read is run as it came.
    exposed = { reason: `its binary could not be read for reuse: ${err instanceof Error ? err.message : String(err)}` };
  }
  const prepared = new wasm.Module('bytes' in exposed ? exposed.bytes : base);
  const state = 'state' in exposed ? exposed.state : undefined;
  const noReuse = 'reason' in exposed ? exposed.reason : undefined;
  result.virtualSize = state?.virtualSize !== undefined;

  const usable = [];
  for (const target of mod.targets) {
    try {
      const analysis = analyzeModule(mod.bytes, {
        functionName: 'fuzz',
        wasiCap: target.abi === 'wasi',
        ...(target.entrypoint === undefined ? {} : { entrypoint: target.entrypoint }),
      });
      usable.push({ target, analysis });
    } catch (err) {
      if (err?.code !== 'INVALID_FUNCTION_IMAGE') result.problems.push({ kind: 'deploy', target: target.name, code: err?.code, message: String(err?.message ?? err) });
      result.refused++;
    }
  }
  result.targets = usable.length;
  if (usable.length === 0) return result;

  const runners = new Map();
  const runnerFor = (abi) => {
    let runner = runners.get(abi);
    if (!runner) {
      runner = new InstanceRunner(prepared, abi, state, noReuse, clock);
      // As a preload does: an instance readied (and its snapshot taken) before the first call.
      if (rng.chance(0.5)) runner.settle();
      runners.set(abi, runner);
    }
    return runner;
  };

  const edges = edgeValues(mod.memoryPages ?? 0);
  // Calls that read state (to see what an earlier call on the same instance left) and calls that
  // change it are drawn more often than the generator's own functions.
  // fuzz_state sees everything: it is drawn half the time an observer is.
  const observers = usable.filter(({ target }) => OBSERVERS.has(target.name));
  const stateProbe = usable.find(({ target }) => target.name === 'fuzz_state');
  if (stateProbe) observers.push(...observers.map(() => stateProbe));
  const probes = usable.filter(({ target }) => target.name.startsWith('fuzz_') && !OBSERVERS.has(target.name) && target.abi === 'numeric');
  const calls = rng.int(8, 30);
  const history = [];
  const queue = [];
  for (let i = 0; i < calls; i++) {
    if (queue.length === 0) {
      const roll = rng.float();
      // A change then a look at the state, on the instance the change ran in (once restored).
      if (roll < 0.3 && probes.length > 0 && observers.length > 0) queue.push(rng.pick(probes), rng.pick(observers));
      else queue.push(rng.pick(roll < 0.5 && observers.length > 0 ? observers : roll < 0.7 && probes.length > 0 ? probes : usable));
    }
    const { target, analysis } = queue.shift();
    const args = randomArgs(analysis, rng, edges);
    const req = { analysis, args: normalizeArgs(args), limits };
    let call;
    const parsed = outcome(() => {
      call = toSandboxCall(req);
      return { output: '' };
    });
    history.push({ target: target.name, abi: analysis.abi, args: summarize(args) });
    result.calls++;
    if (!call) {
      if (parsed.code !== 'INVALID_ARGS') result.problems.push({ kind: 'args', history: [...history], reused: parsed });
      continue;
    }
    const runner = runnerFor(analysis.abi);
    const reused = outcome(() => {
      try {
        return runner.run(call);
      } finally {
        runner.settle();
      }
    });
    const fresh = outcome(() => new InstanceRunner(original, analysis.abi, undefined).run(call));
    history[history.length - 1].answer = reused;
    const kind = reused.code ?? 'ok';
    result.answers[kind] = (result.answers[kind] ?? 0) + 1;
    if (!same(reused, fresh)) result.problems.push({ kind: 'mismatch', history: [...history], reused, fresh });
    else if (reused.code === 'INTERNAL' || reused.code === 'THROWN') result.problems.push({ kind: 'internal', history: [...history], reused });
    if (result.problems.length >= 3) break;
  }
  for (const runner of runners.values()) {
    result.reused += runner.stats.reused;
    result.instantiated += runner.stats.instantiated;
    result.reuseRefused ??= runner.reuseRefused;
    runner.dispose();
  }
  return result;
}

/** Arguments as a reproduction file keeps them: long strings by length and content. */
function summarize(args) {
  const short = (v) => (typeof v === 'string' && v.length > 200 ? { repeat: v.slice(0, 64), length: v.length } : v);
  if (Array.isArray(args)) return args.map(short);
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k, short(v)]));
}
