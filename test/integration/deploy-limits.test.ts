/**
 * What deploy does with a module before it is a function, end to end over HTTP against `wasm-engine
 * serve` (issue 10): table entries are capped per module (refused at deploy past the cap, table.grow
 * answers -1 at it), a module whose start function never ends (or traps) is refused at deploy after
 * a trial instance under the function's time limit, and that work — analysis, rewrites, compile,
 * trial, on a module of tens of MB — happens off the HTTP thread and off the sandbox workers, so
 * the engine answers other requests meanwhile. No test here asserts a duration: "meanwhile" is an
 * order of answers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI, FIXTURE_OUT, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call, type Answer } from '../support/http.js';
import { encodeU32 } from '../../src/runtime/byte-reader.js';
import { MAX_DEPLOYS_PREPARING } from '../../src/runtime/pool/preparer.js';

/** The engine's default --max-table-entries (README settings table). */
const DEFAULT_MAX_TABLE_ENTRIES = 100_000;
const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;
const fixture = (name: string): string => `file:${watFixture('hardening', name)}`;

const deploy = (engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}): Promise<Answer> =>
  call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra }, { json: true });

const invoke = (engine: EngineProcess, name: string, args?: unknown): Promise<Answer> =>
  call(engine.url, 'POST', '/function/invoke', { function_name: name, ...(args === undefined ? {} : { args }) }, { json: true });

/**
 * The module with a data section of `size` pseudo-random bytes appended (one active segment at
 * address 0; the module has no data section of its own and memory enough for it): a large deploy
 * made in the test setup rather than committed.
 */
function withDataSegment(file: string, size: number, out: string): string {
  const bytes = new Uint8Array(readFileSync(file));
  const data = new Uint8Array(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  const head = [1, 0x00, 0x41, 0x00, 0x0b, ...encodeU32(size)];
  const section = [11, ...encodeU32(head.length + size), ...head];
  const module = new Uint8Array(bytes.length + section.length + size);
  module.set(bytes, 0);
  module.set(section, bytes.length);
  module.set(data, bytes.length + section.length);
  writeFileSync(out, module);
  return out;
}

describe('deploy-time limits', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    // One sandbox worker: a trial that occupied it would hold up every invocation. A default time
    // limit of 1 s: what a deploy that sets none tries its module under.
    engine = await startEngineProcess({ args: ['--workers', '1', '--timeout-ms', '1000'] });
    expect((await deploy(engine, 'gcd', gcdImage)).status).toBe(200);
  });
  afterAll(() => engine?.kill());

  it('refuses a module whose tables start with more entries than the cap (64 tables × 10,000,000 funcref), and stays up', async () => {
    const answer = await deploy(engine, 'tables', fixture('tables-huge'));
    expect(answer.status, answer.text).toBe(422);
    expect(answer.json.error).toMatchObject({
      code: 'INVALID_FUNCTION_IMAGE',
      message: expect.stringContaining(`more than the limit of ${DEFAULT_MAX_TABLE_ENTRIES} table entries per module`),
    });
    expect((await call(engine.url, 'GET', '/system/function/tables')).status).toBe(404);
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
  });

  it('caps table.grow: a loop growing a table gets -1 at the cap, the call answers 200, and the engine lives', async () => {
    expect((await deploy(engine, 'grow-table', fixture('table-grow'), { entrypoint: 'grow' })).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const answer = await invoke(engine, 'grow-table');
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.output).toBe(String(DEFAULT_MAX_TABLE_ENTRIES));
    }
    expect((await call(engine.url, 'GET', '/healthz')).status).toBe(200);
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
  });

  it('refuses a module whose start function never returns with 422 at its time limit; the engine keeps answering and later deploys work', async () => {
    const answer = await deploy(engine, 'looping-start', fixture('start-loop'), { timeout_ms: 300 });
    expect(answer.status, answer.text).toBe(422);
    expect(answer.json.error).toMatchObject({
      code: 'INVALID_FUNCTION_IMAGE',
      message: expect.stringMatching(/start function .*ran past the time limit of 300 ms/),
    });
    expect((await call(engine.url, 'GET', '/system/function/looping-start')).status).toBe(404);
    // The same with WASI: the trial gives the start function the imports a sandbox would.
    const wasi = await deploy(engine, 'wasi-looping-start', fixture('wasi-start-loop'), { timeout_ms: 300 });
    expect(wasi.status, wasi.text).toBe(422);
    expect(wasi.json.error.message).toMatch(/ran past the time limit of 300 ms/);
    // A start function that traps: every call would fail, so deploy does not take it either.
    const trap = await deploy(engine, 'trapping-start', fixture('start-trap'));
    expect(trap.status, trap.text).toBe(422);
    expect(trap.json.error.message).toMatch(/cannot be instantiated: .*unreachable/);

    expect((await call(engine.url, 'GET', '/healthz')).status).toBe(200);
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
    // A WASI start function that calls WASI and returns is deployed and runs.
    expect((await deploy(engine, 'wasi-start', fixture('wasi-start-ok'))).status).toBe(200);
    const ok = await invoke(engine, 'wasi-start');
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json.output).toBe('ok');
    expect((await deploy(engine, 'gcd-again', gcdImage)).status).toBe(200);
    expect((await invoke(engine, 'gcd-again', { a: '10', b: '4' })).json.output).toBe('2');
    // An update (OpenFaaS PUT) to such a module is refused the same way; the old version serves on.
    const update = await call(engine.url, 'PUT', '/system/functions', { service: 'gcd-again', image: fixture('start-loop') }, { json: true });
    expect(update.status, update.text).toBe(422);
    expect(update.json.error.message).toMatch(/ran past the time limit of 1000 ms/);
    expect((await invoke(engine, 'gcd-again', { a: '10', b: '4' })).json.output).toBe('2');
  });

  it('does not hold other deploys up while start functions are tried: two trials run to their limit while a third deploy is answered', async () => {
    const order: string[] = [];
    const trials = ['slow-start-a', 'slow-start-b'].map((name) =>
      deploy(engine, name, fixture('start-loop'), { timeout_ms: 4_000 }).then((answer) => {
        order.push(name);
        return answer;
      }),
    );
    const other = await deploy(engine, 'gcd-meanwhile', gcdImage).then((answer) => {
      order.push('gcd-meanwhile');
      return answer;
    });
    expect(other.status, other.text).toBe(200);
    for (const answer of await Promise.all(trials)) expect(answer.status, answer.text).toBe(422);
    expect(order[0]).toBe('gcd-meanwhile');
  });

  it('bounds the deploys being prepared at once: past the bound one is refused 503 OVERLOADED, and the engine serves on', async () => {
    // Each trial of a start function that loops keeps a thread until its time limit: without the
    // bound, every such deploy sent at once had a spinning thread of its own.
    const names = Array.from({ length: MAX_DEPLOYS_PREPARING + 4 }, (_, i) => `spinning-start-${i}`);
    const answers = await Promise.all(names.map((name) => deploy(engine, name, fixture('start-loop'), { timeout_ms: 3_000 })));
    const codes = answers.map((answer) => `${answer.status} ${answer.json?.error?.code}`);
    expect(codes.filter((code) => code === '503 OVERLOADED').length, codes.join(', ')).toBeGreaterThan(0);
    expect(codes.every((code) => code === '503 OVERLOADED' || code === '422 INVALID_FUNCTION_IMAGE'), codes.join(', ')).toBe(true);
    expect(answers.find((answer) => answer.status === 503)?.headers['retry-after']).toBe('1');
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
    expect((await deploy(engine, 'gcd-after-the-rush', gcdImage)).status).toBe(200);
  });

  it('answers /healthz and an invoke of another function while a large deploy is in progress, before the deploy answers', async () => {
    // 24 MB of data in a module whose start function never returns: analysed, rewritten, compiled
    // and tried (until its time limit) while the engine goes on answering.
    const big = withDataSegment(watFixture('hardening', 'start-loop'), 24 * 1024 * 1024, join(FIXTURE_OUT, 'hardening-start-loop-24mb.wasm'));
    const order: string[] = [];
    const deploying = deploy(engine, 'big-looping-start', `file:${big}`, { timeout_ms: 2_000 }).then((answer) => {
      order.push('deploy');
      return answer;
    });
    const [health, other] = await Promise.all([
      call(engine.url, 'GET', '/healthz').then((answer) => {
        order.push('healthz');
        return answer;
      }),
      invoke(engine, 'gcd', { a: '12', b: '18' }).then((answer) => {
        order.push('invoke');
        return answer;
      }),
    ]);
    const answer = await deploying;
    expect(health.status).toBe(200);
    expect(other.json.output).toBe('6');
    expect(order.at(-1)).toBe('deploy');
    expect(answer.status, answer.text).toBe(422);
    expect(answer.json.error.message).toMatch(/ran past the time limit of 2000 ms/);
    expect((await invoke(engine, 'gcd', { a: '12', b: '18' })).json.output).toBe('6');
  });
});
