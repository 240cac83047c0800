/**
 * What a guest runs while it is instantiated, and what it makes the engine allocate, ends at most
 * its own sandbox, over HTTP against `wasm-engine serve`:
 * - a stored function whose start function never returns (deployed before deploy refused such
 *   modules; written to the store directly here) is set aside at restart, with a log line that
 *   says which and why, while the engine starts and serves the rest; `/readyz` says not ready while
 *   restored functions are readied, and a SIGTERM then drains and exits 0;
 * - a call that exhausts its sandbox's V8 heap (table entries are on it) answers FUNCTION_FAILED,
 *   its worker is replaced, and the process and the other functions carry on, across a restart.
 * No test asserts a timing: each waits for the event it needs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { analyzeModule } from '../../src/runtime/index.js';
import { FileFunctionStore, sha256Digest, type FunctionLimitsOverride, type FunctionRecord, type FunctionStore } from '../../src/store/index.js';
import { PostgresFunctionStore } from '../../src/store/postgres/index.js';
import { CLI, REPO_ROOT, makeDataDir, startEngineProcess, testStoreUrl, type EngineProcess } from '../support/engine-process.js';
import { EXAMPLES_OCI, watFixture } from '../support/fixtures.js';
import { call, type Answer } from '../support/http.js';
import { freePort } from '../support/free-port.js';
import { eventually } from '../support/eventually.js';

const gcdImage = `oci:${join(EXAMPLES_OCI, 'gcd')}`;

const running: { kill(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((engine) => engine.kill()));
});

async function start(options: Parameters<typeof startEngineProcess>[0]): Promise<EngineProcess> {
  const engine = await startEngineProcess(options);
  running.push(engine);
  return engine;
}

async function deploy(engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra });
  expect(answer.status, answer.text).toBe(200);
}

const invoke = (url: string, name: string, args?: unknown): Promise<Answer> =>
  call(url, 'POST', '/function/invoke', { function_name: name, ...(args === undefined ? {} : { args }) }, { json: true });

/**
 * Stores a function the way a deploy of an older engine did, without deploy's checks: the state a
 * restart finds on disk. The engine must not be running on `dataDir` (the store locks it).
 */
async function storeDirectly(dataDir: string, name: string, wasmPath: string, limits: FunctionLimitsOverride): Promise<void> {
  // Under the integration suite's PostgreSQL run, into the database the engine on dataDir uses.
  const url = await testStoreUrl(dataDir);
  const store: FunctionStore =
    url === undefined
      ? new FileFunctionStore(dataDir, silentLogger)
      : new PostgresFunctionStore({ url, dataDir: await makeDataDir(), node: 'test', timeoutMs: 10_000, logger: silentLogger });
  await store.open();
  try {
    const bytes = new Uint8Array(readFileSync(wasmPath));
    const record: FunctionRecord = {
      name,
      image: `file:${wasmPath}`,
      digest: sha256Digest(bytes),
      size: bytes.byteLength,
      deployedAt: new Date().toISOString(),
      analysis: analyzeModule(bytes, { functionName: name }),
      limits,
      env: {},
    };
    await store.insert(record, bytes);
  } finally {
    await store.close();
  }
}


/** `wasm-engine serve` as a child, its output collected, without waiting for it to listen. */
function spawnEngine(args: string[]): { child: ChildProcess; output: string[]; exited: Promise<number | null>; kill(): Promise<void> } {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const onData = (chunk: Buffer): void => void output.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output,
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

const lineIndex = (output: string[], pattern: RegExp): number => output.findIndex((line) => pattern.test(line));

describe('a stored function whose start function never returns', () => {
  it('is set aside at restart: the engine starts, says which function and why, serves the rest at once, and stops cleanly', async () => {
    const dataDir = await makeDataDir();
    const first = await start({ dataDir, args: ['--workers', '2'] });
    await deploy(first, 'gcd', gcdImage);
    expect(await first.stop()).toBe(0);
    await storeDirectly(dataDir, 'stuck', watFixture('hardening', 'start-never-returns'), { timeout_ms: 300 });

    // Before: every worker ran the start function with no deadline, and the engine never said it listened.
    const engine = await start({ dataDir, args: ['--workers', '2'] });
    const setAside = lineIndex(engine.output, /"function":"stuck".*set aside: .*time limit of 300 ms/);
    expect(setAside, engine.output.join('\n')).toBeGreaterThanOrEqual(0);
    // Said before the engine said it listens: it was decided while restored functions were readied.
    expect(setAside).toBeLessThan(lineIndex(engine.output, /WasmEngine listening on/));
    expect(await call(engine.url, 'GET', '/readyz')).toMatchObject({ status: 200, text: 'ready\n' });

    // The first call of another function is answered by a worker that is not stuck.
    const gcd = await invoke(engine.url, 'gcd', { a: '12', b: '18' });
    expect([gcd.status, gcd.json?.output], gcd.text).toEqual([200, '6']);
    const stuck = await invoke(engine.url, 'stuck');
    expect(stuck.status).toBe(500);
    expect(stuck.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/set aside when the engine started: .*time limit of 300 ms/) });
    // Kept in the store and listed.
    const list = await call(engine.url, 'GET', '/function/list', undefined, { json: true });
    expect(list.json.functions.map((f: { func_name: string }) => f.func_name)).toEqual(['gcd', 'stuck']);
    expect(await engine.stop()).toBe(0);
  }, 60_000);

  it('keeps /readyz not ready while restored functions are readied, and a SIGTERM then drains and exits 0', async () => {
    const dataDir = await makeDataDir();
    // Its deadline is ten minutes: the readying is still under way when the signal comes.
    await storeDirectly(dataDir, 'stuck', watFixture('hardening', 'start-never-returns'), { timeout_ms: 600_000 });
    const port = await freePort();
    const url = await testStoreUrl(dataDir);
    const engine = spawnEngine(['--port', String(port), '--data-dir', dataDir, '--workers', '1', ...(url === undefined ? [] : ['--store', url])]);
    running.push(engine);
    // The probe answers as soon as the engine listens, before it says so.
    let ready: Answer | undefined;
    await eventually(async () => {
      ready = await call(`http://127.0.0.1:${port}`, 'GET', '/readyz').catch(() => undefined);
      return ready !== undefined;
    }, 'an answer from /readyz', 300);
    // Before: ready, while every worker was stuck in the start function.
    expect([ready!.status, ready!.text]).toEqual([503, expect.stringMatching(/not ready: readying restored functions/)]);
    await eventually(() => lineIndex(engine.output, /readying 1 restored functions in the sandboxes/) >= 0, 'the readying of restored functions', 300);
    // Before: the signal came before the engine had its handler, and it exited 143 without draining.
    engine.child.kill('SIGTERM');
    expect(await engine.exited, engine.output.join('\n')).toBe(0);
    expect(lineIndex(engine.output, /"msg":"shutting down"/)).toBeLessThan(lineIndex(engine.output, /"msg":"stopped"/));
  }, 60_000);
});

describe('a start function run again after an answer', () => {
  it('has a deadline too: a call held by a worker stuck there runs on another, and the module is then instantiated only inside its calls', async () => {
    // Calls only on the worker: run inline (the default), gcd's calls would never wait for it.
    const engine = await start({ args: ['--workers', '1', '--inline-budget-ms', '0'] });
    await deploy(engine, 'slow', `file:${watFixture('hardening', 'slow-start')}`, { timeout_ms: 120_000 });
    await deploy(engine, 'gcd', gcdImage, { timeout_ms: 250 });
    const slow = await invoke(engine.url, 'slow');
    expect([slow.status, slow.json?.output], slow.text).toEqual([200, '7']);
    // The worker now makes slow's next instance, for a second or more; gcd's call is sent to it.
    // Before: it waited there past its time limit and answered 504. Now, at its deadline, it is
    // taken back and run on another worker (200), or, if the pool refuses calls that could not
    // start within their time limit, refused at once (OVERLOADED): never charged a time limit it
    // did not run.
    const gcd = await invoke(engine.url, 'gcd', { a: '12', b: '18' });
    expect(gcd.status === 200 ? gcd.json?.output : gcd.json?.error?.code, gcd.text).toBe(gcd.status === 200 ? '6' : 'OVERLOADED');
    await eventually(
      () => lineIndex(engine.output, /did not start a call by its deadline/) >= 0 && lineIndex(engine.output, /instances are now made inside its calls/) >= 0,
      'the log lines of the worker replaced and the module blamed',
      300,
    );
    // From now on slow's start function runs inside its own calls: the worker is free after answering.
    const again = await invoke(engine.url, 'slow');
    expect([again.status, again.json?.output], again.text).toEqual([200, '7']);
    const after = await invoke(engine.url, 'gcd', { a: '12', b: '18' });
    expect([after.status, after.json?.output], after.text).toEqual([200, '6']);
    expect(engine.output.filter((line) => /did not start a call by its deadline/.test(line))).toHaveLength(1);
    expect(await engine.stop()).toBe(0);
  }, 120_000);
});

describe("a sandbox worker's heap limit", () => {
  it('a call that exhausts it answers FUNCTION_FAILED, its worker is replaced and the engine serves the rest, across a restart', async () => {
    // A heap limit small enough that a million table entries exhaust it, and a per-module cap on
    // table entries (--max-table-entries) that lets the module take that many: the heap limit is
    // what stops it here. Environment variables, which an engine without the setting ignores.
    const env = { WASM_ENGINE_WORKER_HEAP_MB: '8', WASM_ENGINE_MAX_TABLE_ENTRIES: String(16 * 65_536) };
    const engine = await start({ args: ['--workers', '2'], env });
    await deploy(engine, 'tables', `file:${watFixture('hardening', 'tables-exhaust-heap')}`, { entrypoint: 'grow', timeout_ms: 5_000 });
    await deploy(engine, 'gcd', gcdImage);
    const check = async (url: string): Promise<void> => {
      // Before: the worker had the process's own heap limit, and the call ran to its time limit.
      const tables = await invoke(url, 'tables');
      expect(tables.status, tables.text).toBe(500);
      expect(tables.json.error).toMatchObject({ code: 'FUNCTION_FAILED', message: expect.stringMatching(/sandbox ran out of memory/) });
      const others = await Promise.all(Array.from({ length: 8 }, () => invoke(url, 'gcd', { a: '12', b: '18' })));
      expect(others.map((a) => `${a.status} ${a.json?.output}`)).toEqual(Array(8).fill('200 6'));
    };
    await check(engine.url);
    await check(engine.url);
    expect(engine.child.exitCode).toBeNull();
    expect(await engine.stop()).toBe(0);

    const again = await start({ dataDir: engine.dataDir, args: ['--workers', '2'], env });
    await check(again.url);
    expect(again.child.exitCode).toBeNull();
    expect(await again.stop()).toBe(0);
  }, 60_000);
});

describe('a stored function whose tables are larger than the cap', () => {
  it('does not stop the engine at restart: it is refused when loaded, and the rest is served', async () => {
    const dataDir = await makeDataDir();
    const first = await start({ dataDir, args: ['--workers', '2'] });
    await deploy(first, 'gcd', gcdImage);
    expect(await first.stop()).toBe(0);
    // 64 tables of ten million entries, stored as an engine without the table cap would have.
    // Before the cap, the preload instantiated it in every worker and V8 ended the process.
    await storeDirectly(dataDir, 'tables', watFixture('hardening', 'tables-huge'), {});
    const engine = await start({ dataDir, args: ['--workers', '2'] });
    const gcd = await invoke(engine.url, 'gcd', { a: '12', b: '18' });
    expect([gcd.status, gcd.json?.output], gcd.text).toEqual([200, '6']);
    const tables = await invoke(engine.url, 'tables');
    expect([tables.status, tables.json?.error?.code], tables.text).toEqual([422, 'INVALID_FUNCTION_IMAGE']);
    expect(tables.json.error.message).toMatch(/table entries/);
    // Listed still (the store keeps what was deployed), and the engine answers after.
    const list = await call(engine.url, 'GET', '/function/list', undefined, { json: true });
    expect(list.json.functions.map((f: { func_name: string }) => f.func_name)).toEqual(['gcd', 'tables']);
    expect((await invoke(engine.url, 'gcd', { a: '4', b: '6' })).json?.output).toBe('2');
    expect(await engine.stop()).toBe(0);
  }, 60_000);
});
