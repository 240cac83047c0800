/**
 * A call past its time limit on a sandbox worker stops itself (its preemption checks ask the
 * worker's clock), end to end over HTTP against `wasm-engine serve` with calls kept off the HTTP
 * thread (--inline-budget-ms 0): it is answered FUNCTION_TIMEOUT and the worker lives on, while a
 * fast function is served throughout. What the checks cannot reach (a guest blocked in a host call)
 * still times out at its limit, and its worker is terminated and replaced. /metrics tells the two
 * apart. No test here asserts a duration.
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

/** One sample of the engine's /metrics (only the engine's own lines are parsed); 0 when absent. */
async function metric(engine: EngineProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const answer = await request(`${engine.url}/metrics`);
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`));
  return sampleValue(parsePrometheus(lines.join('\n')), name, labels) ?? 0;
}

const selfStopped = (engine: EngineProcess): Promise<number> => metric(engine, 'wasm_engine_preemptions_total', { where: 'worker' });
const terminated = (engine: EngineProcess): Promise<number> => metric(engine, 'wasm_engine_worker_replacements_total', { reason: 'deadline' });

/** The answer to a call of `name`, during which ten calls of gcd are all answered 200 6. */
async function besideFastCalls(engine: EngineProcess, name: string): Promise<Answer> {
  const slow = invoke(engine, name);
  const fast = await Promise.all(Array.from({ length: 10 }, () => invoke(engine, 'gcd', { a: '12', b: '18' })));
  expect(fast.map((a) => `${a.status} ${a.json?.output}`)).toEqual(Array(10).fill('200 6'));
  return slow;
}

describe('a call past its time limit on a worker', () => {
  let engine: EngineProcess;
  const N = 5;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2', '--inline-budget-ms', '0'] });
    await deploy(engine, 'spin', `file:${watFixture('integration', 'spin')}`, { timeout_ms: 100 });
    await deploy(engine, 'sleep', `file:${watFixture('integration', 'sleep-long')}`, { timeout_ms: 200 });
    await deploy(engine, 'gcd', `oci:${join(EXAMPLES_OCI, 'gcd')}`);
  });
  afterAll(() => engine?.kill());

  it(`stops itself: ${N} loops answer FUNCTION_TIMEOUT, no worker is terminated, and a fast function answers throughout`, async () => {
    for (let i = 0; i < N; i++) {
      const spin = await besideFastCalls(engine, 'spin');
      expect(spin.status, spin.text).toBe(504);
      expect(spin.json.error).toEqual({ code: 'FUNCTION_TIMEOUT', message: 'the function ran past its time limit of 100 ms' });
    }
    // The pool answers at its deadline; the worker's own answer may reach it just after.
    await eventually(async () => (await selfStopped(engine)) === N, `${N} calls stopped by their own checks`);
    expect(await terminated(engine)).toBe(0);
    expect(await metric(engine, 'wasm_engine_workers')).toBe(2);
    expect(engine.output.filter((line) => /sandbox worker was terminated/.test(line))).toEqual([]);
    expect(await metric(engine, 'wasm_engine_invocations_total', { function_name: 'spin', outcome: 'FUNCTION_TIMEOUT' })).toBe(N);
    expect(await metric(engine, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'success' })).toBe(10 * N);
  });

  it('blocked in a host call, where no check runs, it times out at its limit all the same, and its worker is terminated and replaced', async () => {
    const stoppedBefore = await selfStopped(engine);
    const sleep = await besideFastCalls(engine, 'sleep');
    expect(sleep.status, sleep.text).toBe(504);
    expect(sleep.json.error).toEqual({ code: 'FUNCTION_TIMEOUT', message: 'the function ran past its time limit of 200 ms' });
    await eventually(async () => (await terminated(engine)) === 1, 'the worker terminated');
    await eventually(async () => engine.output.some((line) => line.includes('did not stop itself; its sandbox worker was terminated')), 'the log line');
    await eventually(async () => (await metric(engine, 'wasm_engine_workers')) === 2, 'two workers again');
    expect(await selfStopped(engine)).toBe(stoppedBefore);
    // The engine serves on, loops still stop themselves.
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
    expect((await invoke(engine, 'spin')).json.error.code).toBe('FUNCTION_TIMEOUT');
    await eventually(async () => (await selfStopped(engine)) === stoppedBefore + 1, 'the loop stopped by its checks');
    expect(await terminated(engine)).toBe(1);
  });
});
