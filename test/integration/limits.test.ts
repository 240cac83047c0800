/**
 * SPEC §3 limits, end to end over HTTP against `wasm-engine serve`: an infinite loop is stopped at
 * its time limit (504) by its own checks while other invocations carry on and its worker lives on
 * (worker-preemption.test.ts has the backstop: a worker whose call cannot stop itself is replaced); a memory bomb
 * finds memory.grow answering -1 at its limit and the engine's memory stays bounded; output past
 * max_output_bytes is stopped and refused; past the queue bounds (global and per function) the
 * engine answers OVERLOADED with Retry-After at once; and a client that goes away takes its queued
 * invocation with it. No test here asserts a timing: "at once" is checked as an order of events.
 */
import { readFileSync } from 'node:fs';
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

/** One sample of the engine's /metrics (only the engine's own lines are parsed). */
async function metric(engine: EngineProcess, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const answer = await request(`${engine.url}/metrics`);
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`));
  return sampleValue(parsePrometheus(lines.join('\n')), name, labels);
}

/** The engine process's resident memory (its worker threads included), from /proc. */
function rssBytes(engine: EngineProcess): number {
  const status = readFileSync(`/proc/${engine.child.pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error('no VmRSS in /proc status');
  return Number(kb[1]) * 1024;
}

const spinImage = (): string => `file:${watFixture('integration', 'spin')}`;
const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;

describe('time, memory and output limits', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    await deploy(engine, 'spin', spinImage(), { timeout_ms: 500 });
    // Other memory limits make other compiled modules: functions of their own to the pool. A longer
    // time limit: the second must start within it, once the worker replaced just before is up.
    await deploy(engine, 'spin-a', spinImage(), { timeout_ms: 2000, memory_limit_mb: 64 });
    await deploy(engine, 'spin-b', spinImage(), { timeout_ms: 2000, memory_limit_mb: 32 });
    await deploy(engine, 'gcd', gcdImage);
    const bomb = `file:${watFixture('wat', 'memory-bomb')}`;
    await deploy(engine, 'bomb', bomb, { entrypoint: 'bomb', memory_limit_mb: 32 });
    await deploy(engine, 'grow', bomb, { entrypoint: 'grow_by', memory_limit_mb: 32 });
    const flood = `file:${watFixture('wat', 'wasi-flood')}`;
    await deploy(engine, 'flood', flood, { max_output_bytes: 65_536 });
    await deploy(engine, 'flood-default', flood);
    await deploy(engine, 'big', `file:${watFixture('wat', 'string')}`, { entrypoint: 'big', max_output_bytes: 1000 });
  });
  afterAll(() => engine?.kill());

  it('an infinite loop is answered 504 at its limit, stops itself on its worker, and the other invocations carry on', async () => {
    const spinning = invoke(engine, 'spin');
    const others = await Promise.all(Array.from({ length: 40 }, () => invoke(engine, 'gcd', { a: '12', b: '18' })));
    expect(others.map((a) => `${a.status} ${a.json.output}`)).toEqual(Array(40).fill('200 6'));
    const spin = await spinning;
    expect(spin.status).toBe(504);
    expect(spin.json.error).toMatchObject({ code: 'FUNCTION_TIMEOUT', message: expect.stringMatching(/time limit of 500 ms/) });
    // Its preemption checks stopped it on its worker, which lives on (the worker's answer may reach
    // the pool after the pool answered at the deadline).
    const selfStopped = (): Promise<number | undefined> => metric(engine, 'wasm_engine_preemptions_total', { where: 'worker' });
    await eventually(async () => (await selfStopped()) === 1, 'the loop stopped by its own checks');
    // Again, with both workers looping at once (two functions never called before: one function
    // seen spinning is kept to one of the two workers, see fairness.test.ts): each stops itself, and
    // the engine still answers.
    const both = await Promise.all([invoke(engine, 'spin-a'), invoke(engine, 'spin-b')]);
    expect(both.map((a) => a.status)).toEqual([504, 504]);
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
    await eventually(async () => (await selfStopped()) === 3, 'the loops stopped by their own checks');
    expect(await metric(engine, 'wasm_engine_worker_replacements_total', { reason: 'deadline' })).toBe(0);
    expect(await metric(engine, 'wasm_engine_workers')).toBe(2);
  });

  it('a memory bomb finds memory.grow answering -1 at its limit, and the engine memory stays bounded', async () => {
    expect((await invoke(engine, 'grow', ['511'])).json.output).toBe('1');
    expect((await invoke(engine, 'grow', ['512'])).json.output).toBe('-1');
    let peak = rssBytes(engine);
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(engine));
    }, 20);
    try {
      // 24 bombs of 32 MiB each, two at a time: 768 MiB if nothing were bounded or given back.
      for (let round = 0; round < 12; round++) {
        const answers = await Promise.all([invoke(engine, 'bomb'), invoke(engine, 'bomb')]);
        // 32 MiB = 512 pages: the bomb grew until memory.grow answered -1 there.
        expect(answers.map((a) => a.json?.output ?? a.text)).toEqual(['512', '512']);
      }
    } finally {
      clearInterval(sampler);
    }
    // Unbounded, one bomb alone would take 4 GiB (the 32-bit maximum); what is left is the engine,
    // the bombs running and instances not yet collected.
    expect(peak).toBeLessThan(768 * 1024 * 1024);
    expect((await invoke(engine, 'gcd', { a: '4', b: '6' })).json.output).toBe('2');
  });

  it('a function that prints without end is stopped at max_output_bytes and refused', async () => {
    const flood = await invoke(engine, 'flood');
    expect(flood.status).toBe(500);
    expect(flood.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/output limit exceeded.*65536 bytes/) });
    // With the engine default (4 MiB) too.
    const byDefault = await invoke(engine, 'flood-default');
    expect(byDefault.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/output limit exceeded.*4194304 bytes/) });
    // A string-ABI function answering more than its limit.
    const big = await invoke(engine, 'big');
    expect(big.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/output limit exceeded.*70000 bytes, more than 1000/) });
  });
});

describe('overload and disconnects', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    // One invocation of a function at a time, so that the second waits for its function's slot.
    // Calls only on the worker: run inline (the default), gcd's calls would never wait for it.
    engine = await startEngineProcess({
      args: ['--workers', '1', '--concurrency-per-replica', '1', '--max-queue', '2', '--max-queue-per-function', '1', '--inline-budget-ms', '0'],
    });
    await deploy(engine, 'spin-a', spinImage(), { timeout_ms: 2500 });
    await deploy(engine, 'spin-b', spinImage(), { timeout_ms: 2500 });
    await deploy(engine, 'gcd', gcdImage);
  });
  afterAll(() => engine?.kill());

  const idle = (): Promise<void> =>
    eventually(async () => (await metric(engine, 'wasm_engine_invocations_in_flight')) === 0, 'no invocation in flight', 400);

  it('answers OVERLOADED with Retry-After at once past the per-function bound and past the global bound', async () => {
    await idle();
    const settled: string[] = [];
    const track = (label: string, p: Promise<Answer>): Promise<Answer> =>
      p.then((a) => {
        settled.push(label);
        return a;
      });
    const a1 = track('a1', invoke(engine, 'spin-a'));
    await eventually(async () => (await metric(engine, 'wasm_engine_workers_busy')) === 1, 'spin-a running');
    const a2 = track('a2', invoke(engine, 'spin-a')); // waits for spin-a's slot: 1 waiting for spin-a
    await eventually(async () => (await metric(engine, 'wasm_engine_invocations_in_flight')) === 2, 'a2 waiting');
    const a3 = await track('a3', invoke(engine, 'spin-a'));
    expect(a3.status).toBe(503);
    expect(a3.json.error).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/of spin-a are waiting/) });
    expect(a3.headers['retry-after']).toBe('1');

    const b1 = track('b1', invoke(engine, 'spin-b')); // its own slot is free: it waits in the busy worker
    await eventually(async () => (await metric(engine, 'wasm_engine_queue_depth')) === 1, 'b1 queued for the worker');
    const b2 = await track('b2', invoke(engine, 'spin-b')); // 1 waiting for a slot + 1 for a worker = the global 2
    expect(b2.status).toBe(503);
    expect(b2.json.error).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/too many invocations are waiting/) });
    expect(b2.headers['retry-after']).toBe('1');
    // The text form carries the same status and header.
    const text = await call(engine.url, 'POST', '/function/invoke', { function_name: 'spin-a' });
    expect(text.status).toBe(503);
    expect(text.text).toMatch(/^status code: 503, message: .*\(OVERLOADED\)$/);
    expect(text.headers['retry-after']).toBe('1');

    // Refused at once: both refusals came back while the invocation holding the worker still ran.
    expect(settled).toEqual(['a3', 'b2']);
    const answers = await Promise.all([a1, a2, b1]);
    expect(answers[0]!.json.error.code).toBe('FUNCTION_TIMEOUT');
    // The two waiting ones run if they can start within their time limit once the worker is
    // replaced, else they are refused (fairness.test.ts): which depends on how fast it restarts.
    for (const a of answers.slice(1)) {
      if (a.json.error.code !== 'FUNCTION_TIMEOUT') expect(a.json.error).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/could not start within/) });
    }
  });

  it('a client that disconnects takes its queued invocation with it', async () => {
    await idle();
    const running = invoke(engine, 'spin-a');
    await eventually(async () => (await metric(engine, 'wasm_engine_workers_busy')) === 1, 'spin-a running');
    // One waits for the worker (gcd's own slot is free), one for spin-a's slot.
    const forWorker = new AbortController();
    const forSlot = new AbortController();
    const gone = [
      request(`${engine.url}/function/invoke`, { method: 'POST', body: JSON.stringify({ function_name: 'gcd', args: { a: '1', b: '2' } }), signal: forWorker.signal }),
      request(`${engine.url}/function/invoke`, { method: 'POST', body: JSON.stringify({ function_name: 'spin-a' }), signal: forSlot.signal }),
    ].map((p) => p.catch((err: unknown) => err));
    await eventually(async () => (await metric(engine, 'wasm_engine_queue_depth')) === 1, 'gcd queued for the worker');
    await eventually(async () => (await metric(engine, 'wasm_engine_invocations_in_flight')) === 3, 'both waiting');
    forWorker.abort();
    forSlot.abort();
    await Promise.all(gone);
    await eventually(async () => (await metric(engine, 'wasm_engine_queue_depth')) === 0, 'the queue emptied');
    await eventually(async () => (await metric(engine, 'wasm_engine_invocations_in_flight')) === 1, 'only the running one left');
    expect((await running).json.error.code).toBe('FUNCTION_TIMEOUT');
    // Neither ran: gcd never succeeded, and nothing but the timeout ran on the worker.
    expect(await metric(engine, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'success' })).toBeUndefined();
    expect(await metric(engine, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'UNAVAILABLE' })).toBe(1);
    expect(engine.output.filter((line) => /"level":50/.test(line))).toEqual([]);
    // The engine serves on.
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
  });
});
