/**
 * Calls run first on the thread that read them (--inline-budget-ms), end to end over HTTP against
 * `wasm-engine serve`: an infinite loop is stopped by its own preemption checks (inline, when its
 * time limit is within the budget: no worker is terminated) or abandoned to the pool (504 at its
 * limit) while other calls are served; a call longer than the budget answers once, with its stderr
 * lines once; calls answered inline see the module's initial state every time; and the limits hold
 * there. The engine's inline counters (/metrics) show where calls ran. No test asserts a duration.
 */
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call, type Answer } from '../support/http.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';
import { eventually } from '../support/eventually.js';

async function deploy(engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra });
  expect(answer.status, answer.text).toBe(200);
}

const invoke = (engine: EngineProcess, name: string, args?: unknown): Promise<Answer> =>
  call(engine.url, 'POST', '/function/invoke', { function_name: name, ...(args === undefined ? {} : { args }) }, { json: true });

async function inlineCalls(engine: EngineProcess, outcome: 'ran' | 'abandoned'): Promise<number> {
  const answer = await request(`${engine.url}/metrics`);
  const name = 'wasm_engine_inline_calls_total';
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith(`${name}{`));
  return sampleValue(parsePrometheus(lines.join('\n')), name, { outcome }) ?? 0;
}

async function preemptions(engine: EngineProcess, where: 'worker' | 'inline'): Promise<number> {
  const answer = await request(`${engine.url}/metrics`);
  const name = 'wasm_engine_preemptions_total';
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith(`${name}{`));
  return sampleValue(parsePrometheus(lines.join('\n')), name, { where }) ?? 0;
}

const fixture = (dir: string, name: string): string => `file:${watFixture(dir, name)}`;
const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;

describe('calls run inline first, within the budget', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    // A budget longer than the default, and no bound on the average time of a function's inline
    // calls, so that a machine busy with other work does not stall the short calls here past them
    // (they would then be answered by the pool, rightly, but not inline).
    engine = await startEngineProcess({ args: ['--workers', '2', '--inline-budget-ms', '50', '--inline-heavy-us', '0'] });
    await deploy(engine, 'gcd', gcdImage);
    await deploy(engine, 'spin', fixture('integration', 'spin'), { timeout_ms: 1_000 });
    await deploy(engine, 'spin-short', fixture('integration', 'spin'), { timeout_ms: 3, memory_limit_mb: 64 });
    await deploy(engine, 'slow', fixture('integration', 'inline-slow'), { timeout_ms: 60_000 });
    await deploy(engine, 'state', fixture('integration', 'inline-state'));
    await deploy(engine, 'counter', fixture('integration', 'counter'));
    await deploy(engine, 'grow', fixture('wat', 'memory-bomb'), { entrypoint: 'grow_by', memory_limit_mb: 8 });
    await deploy(engine, 'flood', fixture('wat', 'wasi-flood'), { max_output_bytes: 65_536 });
    await deploy(engine, 'big', fixture('wat', 'string'), { entrypoint: 'big', max_output_bytes: 1000 });
  });
  afterAll(() => engine?.kill());

  it('answers small calls on the HTTP thread', async () => {
    const before = await inlineCalls(engine, 'ran');
    const answers = await Promise.all(Array.from({ length: 20 }, () => invoke(engine, 'gcd', { a: '12', b: '18' })));
    expect(answers.map((a) => `${a.status} ${a.json.output}`)).toEqual(Array(20).fill('200 6'));
    expect(await inlineCalls(engine, 'ran')).toBeGreaterThanOrEqual(before + 20);
  });

  it('an infinite loop is abandoned inline, answered 504 at its limit by the pool, and other calls are served meanwhile', async () => {
    const abandoned = await inlineCalls(engine, 'abandoned');
    const spinning = invoke(engine, 'spin');
    await eventually(async () => (await inlineCalls(engine, 'abandoned')) > abandoned, 'the spinning call abandoned inline');
    const others = await Promise.all(Array.from({ length: 20 }, () => invoke(engine, 'gcd', { a: '12', b: '18' })));
    expect(others.map((a) => `${a.status} ${a.json.output}`)).toEqual(Array(20).fill('200 6'));
    const spin = await spinning;
    expect(spin.status).toBe(504);
    expect(spin.json.error).toMatchObject({ code: 'FUNCTION_TIMEOUT', message: expect.stringMatching(/time limit of 1000 ms/) });
  });

  it('a loop whose time limit is within the budget traps itself at its limit: 504, and no worker is terminated', async () => {
    const spin = await invoke(engine, 'spin-short');
    expect(spin.status, spin.text).toBe(504);
    expect(spin.json.error).toMatchObject({ code: 'FUNCTION_TIMEOUT', message: expect.stringMatching(/time limit of 3 ms/) });
    const gcd = await invoke(engine, 'gcd', { a: '12', b: '18' });
    expect(gcd.json.output).toBe('6');
    // Stopped here by its checks; the 1000 ms spin of the test before stopped itself on its worker.
    expect(await preemptions(engine, 'inline')).toBe(1);
    await eventually(async () => (await preemptions(engine, 'worker')) === 1, 'the 1000 ms spin stopped on its worker');
    expect(engine.output.filter((line) => /its sandbox worker was terminated/.test(line))).toEqual([]);
  });

  it('a call longer than the budget and shorter than its limit answers once, and its stderr lines are kept once', async () => {
    const abandoned = await inlineCalls(engine, 'abandoned');
    const slow = await invoke(engine, 'slow', ['xxxxxxxxxxxxxxxxxxx']);
    expect([slow.status, slow.json.output], slow.text).toEqual([200, 'done']);
    expect(await inlineCalls(engine, 'abandoned')).toBe(abandoned + 1);
    const logs = await call(engine.url, 'GET', '/system/logs?name=slow');
    expect(logs.status).toBe(200);
    const lines = logs.text.trimEnd().split('\n').map((line) => (JSON.parse(line) as { text: string }).text);
    expect(lines).toEqual(['begin', 'end']);
  });

  it('calls answered inline each see the module\'s initial state: memory, globals, memory size, tables', async () => {
    const before = await inlineCalls(engine, 'ran');
    for (let i = 0; i < 10; i++) {
      const [state, counter] = await Promise.all([invoke(engine, 'state'), invoke(engine, 'counter')]);
      expect([state.json.output, counter.json.output]).toEqual(['1', '1']);
    }
    expect(await inlineCalls(engine, 'ran')).toBeGreaterThanOrEqual(before + 20);
  });

  it('the limits hold inline: memory, output, and a bulk instruction too large for the HTTP thread runs in the pool', async () => {
    // memory_limit_mb 8 is 128 pages: growing past them answers -1.
    const ran = await inlineCalls(engine, 'ran');
    expect((await invoke(engine, 'grow', ['200'])).json.output).toBe('-1');
    const flood = await invoke(engine, 'flood');
    expect(flood.status).toBe(500);
    expect(flood.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/output limit exceeded/) });
    const big = await invoke(engine, 'big');
    expect(big.status).toBe(500);
    expect(big.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/output limit/) });
    expect(await inlineCalls(engine, 'ran')).toBe(ran + 3);
    // 1,000 pages (62.5 MiB) in one memory.grow: more than the HTTP thread takes on (16 MiB), so the
    // call is abandoned there, and the pool answers as the memory's maximum says.
    const abandoned = await inlineCalls(engine, 'abandoned');
    expect((await invoke(engine, 'grow', ['1000'])).json.output).toBe('-1');
    expect(await inlineCalls(engine, 'abandoned')).toBe(abandoned + 1);
  });
});

describe('--inline-heavy-us', () => {
  it('sends the calls of a function whose inline calls take longer on average to the workers', async () => {
    // 1 µs: authentication's calls (tens of microseconds) are heavier than that. The first 512
    // calls are not counted; then the shortest of every 4 counts as 2 µs at most (twice the
    // bound), an eighth of it into the moving average: the average passes the bound at the sixth
    // window, and the next 63 go to the pool. A long budget, so that its first call (cold:
    // milliseconds) is not abandoned.
    // One HTTP thread: each thread keeps its own averages, and this counts one executor's calls.
    const engine = await startEngineProcess({ args: ['--workers', '1', '--inline-heavy-us', '1', '--inline-budget-ms', '500', '--http-threads', '1'] });
    try {
      await deploy(engine, 'auth', `oci:${join(EXAMPLES_OCI, 'authentication')}`, { entrypoint: 'authentication' });
      const args = { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' };
      const ran = await inlineCalls(engine, 'ran');
      for (let i = 0; i < 560; i++) expect((await invoke(engine, 'auth', args)).json.output).toMatch(/Auth Forbidden/);
      // 512 not counted, six windows of four (the sixth made the average heavy); the rest on the worker.
      expect(await inlineCalls(engine, 'ran')).toBe(ran + 536);
      expect(await inlineCalls(engine, 'abandoned')).toBe(0);
    } finally {
      await engine.kill();
    }
  });
});

describe('--inline-budget-ms 0', () => {
  it('runs every call on a worker', async () => {
    const engine = await startEngineProcess({ args: ['--workers', '1', '--inline-budget-ms', '0'] });
    try {
      await deploy(engine, 'gcd', gcdImage);
      const answers = await Promise.all(Array.from({ length: 5 }, () => invoke(engine, 'gcd', { a: '12', b: '18' })));
      expect(answers.map((a) => a.json.output)).toEqual(Array(5).fill('6'));
      const metrics = await (await request(`${engine.url}/metrics`)).body.text();
      expect(metrics).not.toMatch(/wasm_engine_inline_calls_total\{outcome="ran"\} [1-9]/);
    } finally {
      await engine.kill();
    }
  });
});

describe('the default concurrency bound while calls run inline', () => {
  it('is four calls per worker plus one per HTTP thread: with 1 worker and 2 threads, 6 calls run at once and a 7th is refused', async () => {
    // No waiting allowed: a call past the bound is answered 503 OVERLOADED at once.
    const engine = await startEngineProcess({ args: ['--workers', '1', '--http-threads', '2', '--max-queue-per-function', '0'] });
    try {
      await deploy(engine, 'slow', fixture('integration', 'inline-slow'), { timeout_ms: 60_000 });
      // Each runs about a second on the only worker, one after the other: all six hold a slot
      // until the last of them ends.
      const holders = Array.from({ length: 6 }, () => invoke(engine, 'slow', ['xxxxxxxxxxxxxxxxxxx']));
      const inFlight = async (): Promise<number> => {
        const answer = await request(`${engine.url}/metrics`);
        const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith('wasm_engine_invocations_in_flight'));
        return sampleValue(parsePrometheus(lines.join('\n')), 'wasm_engine_invocations_in_flight') ?? 0;
      };
      await eventually(async () => (await inFlight()) === 6, 'six calls in flight');
      const refused = await invoke(engine, 'slow', ['xxxxxxxxxxxxxxxxxxx']);
      expect(refused.status, refused.text).toBe(503);
      expect(refused.json?.['code'] ?? refused.text).toMatch(/OVERLOADED/);
      for (const holder of await Promise.all(holders)) expect(holder.status, holder.text).toBe(200);
    } finally {
      await engine.kill();
    }
  });
});
