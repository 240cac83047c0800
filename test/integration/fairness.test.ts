/**
 * SPEC §3: "no function can hold more than its share of the engine while others wait", and "a call
 * that cannot start within its time limit is refused too", end to end over HTTP against
 * `wasm-engine serve --workers 2`. No test here asserts a duration: each checks an order of events.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watFixture } from '../support/fixtures.js';
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

async function metric(engine: EngineProcess, name: string): Promise<number | undefined> {
  const answer = await request(`${engine.url}/metrics`);
  const lines = (await answer.body.text()).split('\n').filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`));
  return sampleValue(parsePrometheus(lines.join('\n')), name, {});
}

const spinImage = (): string => `file:${watFixture('integration', 'spin')}`;
const trivialImage = (): string => `file:${watFixture('hardening', 'trivial')}`;

describe('a function that spins to its time limit, with clients looping on it', () => {
  let engine: EngineProcess;
  let looping = true;
  const loops: Promise<void>[] = [];

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    await deploy(engine, 'spin', spinImage(), { timeout_ms: 15_000 });
    await deploy(engine, 'trivial', trivialImage());
  });
  afterAll(async () => {
    looping = false;
    await engine?.kill();
    await Promise.allSettled(loops);
  });

  it('does not hold up a trivial function: all of its calls answer while none of the spinning calls has', async () => {
    const spinAnswers: number[] = [];
    let spinAnswered!: (status: number) => void;
    const firstSpinAnswer = new Promise<never>((_, reject) => {
      spinAnswered = (status) => reject(new Error(`a spinning call answered (${status}) before the trivial function's calls did`));
    });
    firstSpinAnswer.catch(() => undefined);
    for (let client = 0; client < 3; client++) {
      loops.push(
        (async () => {
          while (looping) {
            const { status } = await invoke(engine, 'spin');
            spinAnswers.push(status);
            spinAnswered(status);
          }
        })().catch(() => undefined),
      );
    }
    const trivial = (args: string[]): Promise<Answer> => Promise.race([invoke(engine, 'trivial', args), firstSpinAnswer]);
    await eventually(async () => (await metric(engine, 'wasm_engine_invocations_in_flight')) === 3, 'three spinning calls in flight');
    // The trivial function's first call ever, then calls one after the other, then at once.
    for (let i = 0; i < 20; i++) {
      const answer = await trivial([String(i), '1']);
      expect(`${answer.status} ${answer.json?.output}`).toBe(`200 ${i + 1}`);
    }
    const together = await Promise.all(Array.from({ length: 20 }, (_, i) => trivial([String(i), '2'])));
    expect(together.map((a) => `${a.status} ${a.json?.output}`)).toEqual(Array.from({ length: 20 }, (_, i) => `200 ${i + 2}`));
    expect(spinAnswers).toEqual([]);
    // The spinning function keeps one worker, the other serves the rest; its other calls wait.
    expect(await metric(engine, 'wasm_engine_workers_busy')).toBe(1);
    expect(spinAnswers).toEqual([]);
  }, 60_000);
});

describe('many calls of a function that spins, with a short time limit', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    await deploy(engine, 'spin', spinImage(), { timeout_ms: 3_000 });
    await deploy(engine, 'trivial', trivialImage());
  });
  afterAll(() => engine?.kill());

  it('refuses those that cannot start within their time limit (503 OVERLOADED), and answers other functions meanwhile', async () => {
    const order: string[] = [];
    // More than the function's concurrency (2 workers × 4): some wait for a slot, some for a worker.
    const spins = Array.from({ length: 16 }, () =>
      invoke(engine, 'spin').then((answer) => {
        order.push('spin');
        return answer;
      }),
    );
    await eventually(async () => (await metric(engine, 'wasm_engine_workers_busy')) === 1, 'a spinning call running');
    for (let i = 0; i < 10; i++) {
      const answer = await invoke(engine, 'trivial', ['1', String(i)]);
      expect(`${answer.status} ${answer.json?.output}`).toBe(`200 ${i + 1}`);
      order.push('trivial');
    }
    const answers = await Promise.all(spins);
    const timedOut = answers.filter((a) => a.status === 504);
    const refused = answers.filter((a) => a.status === 503);
    expect(timedOut.length + refused.length).toBe(answers.length);
    for (const a of timedOut) expect(a.json.error.code).toBe('FUNCTION_TIMEOUT');
    for (const a of refused) {
      expect(a.json.error).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/could not start within its time limit of 3000 ms/) });
      expect(a.headers['retry-after']).toBe('1');
    }
    // Each waiting call was refused at its own limit, not run after all those before it.
    expect(refused.length).toBeGreaterThan(answers.length / 2);
    // The trivial function answered while the spinning calls were still waiting or running.
    expect(order.slice(0, 10)).toEqual(Array(10).fill('trivial'));
    // The engine serves on.
    expect((await invoke(engine, 'trivial', ['2', '3'])).json.output).toBe('5');
  }, 90_000);
});
