import { afterEach, describe, expect, it, vi } from 'vitest';
import { analyzeModule, normalizeArgs, toSandboxCall } from '../../src/runtime/index.js';
import { HEAVY_GRACE, HEAVY_SKIP, HEAVY_WINDOW, InlineExecutor } from '../../src/runtime/inline/inline-executor.js';
import { InstanceRunner } from '../../src/runtime/instance-runner.js';
import { compileForPool } from '../../src/runtime/pool/compile.js';
import { engineRejection, LIMITS, watText } from './support.js';

// A loop long enough to reach its preemption checks (tens of thousands of iterations), short
// enough to end far within any budget; it traps when asked to, which discards its instance.
const LOOP = `(module
  (memory 1)
  (func (export "spin") (param $n i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 0)) (then unreachable))
    (block $out (loop $top
      (br_if $out (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $top)))
    (i32.const 7)))`;

/** Readying an instance made to take `ms` by the clock, as a large instantiation on a busy core does. */
function slowInstantiation(ms: number): void {
  let offset = 0;
  const now = performance.now.bind(performance);
  vi.spyOn(performance, 'now').mockImplementation(() => now() + offset);
  // `instantiate` is private: reached through the prototype to make it slow by the clock.
  const proto = InstanceRunner.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const instantiate = proto['instantiate']!;
  vi.spyOn(proto, 'instantiate').mockImplementation(function (this: unknown, ...args: unknown[]) {
    offset += ms;
    return instantiate.apply(this, args);
  });
}

async function loopModule() {
  const bytes = watText(LOOP);
  const compiled = await compileForPool(bytes, { memoryLimitMb: 16, maxTableEntries: 1000 });
  expect(compiled.notInline).toBeUndefined();
  const analysis = analyzeModule(bytes, { functionName: 'spin' });
  const loaded = { id: 1, module: compiled.module, state: compiled.state, noReuse: compiled.noReuse, notInline: undefined, unloaded: false };
  const call = (n: number) => toSandboxCall({ analysis, args: normalizeArgs({ n: String(n) }), limits: LIMITS });
  return { loaded, call };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('InlineExecutor budget', () => {
  it('starts when guest code does: a call whose instance was slow to make is not abandoned for it', async () => {
    const { loaded, call } = await loopModule();
    // A budget far longer than the loop takes even on a busy machine, and shorter than making an
    // instance takes by the (mocked) clock.
    const executor = new InlineExecutor({ budgetMs: 100, reuseInstances: true, heavyMs: 0 });
    slowInstantiation(1_000);
    for (let i = 0; i < 5; i++) {
      // A trap discards the instance: each call after it makes a new one, 1 s by the clock.
      await expect(executor.invoke(loaded, call(0), 5_000)).rejects.toMatchObject({ code: 'FUNCTION_FAILED' });
      const ran = executor.invoke(loaded, call(100_000), 5_000);
      expect(ran).toBeDefined();
      expect((await ran)?.output).toBe('7');
    }
    expect(executor.stats.abandoned).toBe(0);
    executor.dispose();
  });

  it('still counts the call\'s own time limit from its start, instantiation included, as a worker does', async () => {
    const { loaded, call } = await loopModule();
    const executor = new InlineExecutor({ budgetMs: 2_000, reuseInstances: true, heavyMs: 0 });
    slowInstantiation(1_000);
    await engineRejection(executor.invoke(loaded, call(100_000), 500) as Promise<unknown>, 'FUNCTION_TIMEOUT');
    expect(executor.stats.stopped).toBe(1);
    executor.dispose();
  });
});

/** Every `every`-th call made to take `ms` more by the clock, as when the OS runs another thread mid-call. */
function slowCalls(every: number, ms: number): void {
  let offset = 0;
  let calls = 0;
  const now = performance.now.bind(performance);
  vi.spyOn(performance, 'now').mockImplementation(() => now() + offset);
  const run = InstanceRunner.prototype.run;
  vi.spyOn(InstanceRunner.prototype, 'run').mockImplementation(function (this: InstanceRunner, call) {
    if (++calls % every === 0) offset += ms;
    return run.call(this, call);
  });
}

describe('InlineExecutor heavy rule', () => {
  it('keeps a light module here though some of its calls are slow by the clock', async () => {
    const { loaded, call } = await loopModule();
    const executor = new InlineExecutor({ budgetMs: 50, reuseInstances: true, heavyMs: 0.05 });
    slowCalls(2, 1);
    for (let i = 0; i < 200; i++) expect(executor.invoke(loaded, call(10), 5_000)).toBeDefined();
    executor.dispose();
  });

  it('sends a module whose every call is heavy to the pool, then tries a window of calls after every HEAVY_SKIP', async () => {
    const { loaded, call } = await loopModule();
    const executor = new InlineExecutor({ budgetMs: 50, reuseInstances: true, heavyMs: 0.05 });
    slowCalls(1, 1);
    const here: number[] = [];
    const judged = HEAVY_GRACE + 6 * HEAVY_WINDOW;
    const period = HEAVY_SKIP + HEAVY_WINDOW;
    for (let i = 0; i < judged + 2 * period; i++) if (executor.invoke(loaded, call(10), 5_000) !== undefined) here.push(i);
    // HEAVY_GRACE calls not counted, then six windows (the sixth made the average heavy); then a
    // window of calls in a row after every HEAVY_SKIP.
    const run = (from: number, length: number) => Array.from({ length }, (_, i) => from + i);
    expect(here).toEqual([...run(0, judged), ...run(judged + HEAVY_SKIP, HEAVY_WINDOW), ...run(judged + period + HEAVY_SKIP, HEAVY_WINDOW)]);
    executor.dispose();
  });
});
