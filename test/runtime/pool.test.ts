import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CellState } from '../../src/runtime/pool/protocol.js';
import type { EngineError } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import {
  WorkerPoolRuntime,
  analyzeModule,
  injectPreemption,
  prepareForReuse,
  runInvocation,
  withMemoryMaximum,
  type InvocationRequest,
  type WorkerPoolOptions,
} from '../../src/runtime/index.js';
import { buildWorker, compile, engineRejection, eventually, request, sleep, wat, watText } from './support.js';
import { CELLS_PER_WORKER } from '../../src/runtime/pool/protocol.js';

let worker: ReturnType<typeof buildWorker>;
const pools: WorkerPoolRuntime[] = [];

beforeAll(() => {
  worker = buildWorker();
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});
afterAll(() => worker?.dispose());

function pool(options: WorkerPoolOptions = {}): WorkerPoolRuntime {
  const p = new WorkerPoolRuntime({ workers: 2, workerUrl: worker.url, closeTimeoutMs: 2_000, ...options });
  pools.push(p);
  return p;
}

/** Loads fixture `name` into the pool under digest `sha256:<name>` and returns a request maker. */
async function deploy(p: WorkerPoolRuntime, name: string, functionName = name, memoryLimitMb = 128) {
  const bytes = wat(name);
  const digest = `sha256:${name}`;
  await p.load(digest, bytes, memoryLimitMb);
  const analysis = analyzeModule(bytes, { functionName });
  return (args?: unknown, limits: Partial<InvocationRequest['limits']> = {}): InvocationRequest =>
    request(analysis, args, { digest, limits: { memoryLimitMb, ...limits } });
}

/** A logger that records its lines. */
function recordingLogger(): Logger & { lines: { level: string; msg?: string }[] } {
  const lines: { level: string; msg?: string }[] = [];
  const at = (level: string) => (_obj: object, msg?: string) => void lines.push({ level, ...(msg === undefined ? {} : { msg }) });
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

describe('WorkerPoolRuntime', () => {
  it('runs each ABI on its workers', async () => {
    const p = pool();
    const gcd = await deploy(p, 'numeric', 'gcd');
    const echo = await deploy(p, 'string', 'echo');
    const hello = await deploy(p, 'wasi-args');
    expect((await p.invoke(gcd({ a: '12', b: '18' }))).output).toBe('6');
    expect((await p.invoke(echo({ k: 'v' }))).output).toBe('{"k":"v"}');
    expect((await p.invoke(hello(['x']))).output).toBe('1x\0');
    expect(p.stats()).toMatchObject({ workers: 2, busy: 0, queued: 0, loadedModules: 3 });
  });

  it('passes env and stdin to WASI functions', async () => {
    const p = pool();
    const env = await deploy(p, 'wasi-env');
    const stdin = await deploy(p, 'wasi-stdin');
    expect((await p.invoke({ ...env(), env: { A: '1' } })).output).toBe('1A=1\0');
    expect((await p.invoke({ ...stdin(), stdin: new TextEncoder().encode('body') })).output).toBe('body');
  });

  it('carries guest errors across as EngineErrors', async () => {
    const p = pool();
    const gcd = await deploy(p, 'numeric', 'gcd');
    await engineRejection(p.invoke(gcd({ a: '1' })), 'INVALID_ARGS', /takes 2 arguments/);
    await engineRejection(p.invoke((await deploy(p, 'traps', 'unreachable'))()), 'FUNCTION_FAILED', /unreachable/);
    await engineRejection(p.invoke((await deploy(p, 'wasi-exit'))()), 'FUNCTION_FAILED', /exit code 3; stderr: something bad/);
  });

  it('isolates invocations: a counting module answers 1 every time', async () => {
    const p = pool({ workers: 1 });
    const counter = await deploy(p, 'counter');
    const outputs: string[] = [];
    for (let i = 0; i < 5; i++) outputs.push((await p.invoke(counter())).output);
    outputs.push(...(await Promise.all(Array.from({ length: 5 }, () => p.invoke(counter())))).map((r) => r.output));
    expect(outputs).toEqual(Array(10).fill('1'));
  });

  it('preloads loaded modules into every worker ahead of their first call, and its warm-up leaves nothing loaded', async () => {
    const p = pool({ workers: 2, moduleCacheBytes: 1024 * 1024 });
    await p.ready();
    await p.warmUp();
    expect(p.stats()).toMatchObject({ loadedModules: 0, loadedModuleBytes: 0, evictedModules: 0 });
    const counter = await deploy(p, 'counter');
    const echo = await deploy(p, 'string', 'echo');
    expect(
      await p.preload([
        { digest: 'sha256:counter', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 10_000 },
        { digest: 'sha256:string', memoryLimitMb: 128, abi: 'string', timeoutMs: 10_000 },
        // Not loaded: skipped, never compiled.
        { digest: 'sha256:missing', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 10_000 },
      ]),
    ).toEqual([]);
    await p.preload([{ digest: 'sha256:counter', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 10_000 }]);
    expect(p.stats()).toMatchObject({ loadedModules: 2, evictedModules: 0 });
    const outputs = (await Promise.all(Array.from({ length: 6 }, () => p.invoke(counter())))).map((r) => r.output);
    expect(outputs).toEqual(Array(6).fill('1'));
    expect((await p.invoke(echo({ k: 'v' }))).output).toBe('{"k":"v"}');
    // An unloaded module is not preloaded, and stays refused.
    p.unload('sha256:counter');
    await p.preload([{ digest: 'sha256:counter', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 10_000 }]);
    await expect(p.invoke(counter())).rejects.toThrow(/not loaded/);
  });

  it('preloads under each module\'s time limit: one whose start function never returns is set aside, its workers replaced, the rest preloaded', async () => {
    const logger = recordingLogger();
    const p = pool({ workers: 2, logger });
    await p.ready();
    const stuck = watText('(module (func $f (loop $l (br $l))) (start $f) (func (export "stuck") (result i32) (i32.const 1)))');
    await p.load('sha256:stuck', stuck, 128);
    const counter = await deploy(p, 'counter');
    const failures = await p.preload([
      { digest: 'sha256:stuck', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 200 },
      { digest: 'sha256:counter', memoryLimitMb: 128, abi: 'numeric', timeoutMs: 10_000 },
    ]);
    expect(failures).toEqual([{ digest: 'sha256:stuck', memoryLimitMb: 128, reason: expect.stringMatching(/time limit of 200 ms/) }]);
    expect(p.stats().workers).toBe(2);
    expect((await Promise.all(Array.from({ length: 4 }, () => p.invoke(counter())))).map((r) => r.output)).toEqual(Array(4).fill('1'));
    const call = request(analyzeModule(stuck, { functionName: 'stuck' }), [], { digest: 'sha256:stuck', limits: { timeoutMs: 200 } });
    await engineRejection(p.invoke(call), 'FUNCTION_FAILED', /set aside when the engine started: .*time limit of 200 ms/);
    // Unloaded and loaded again (deleted, deployed anew): its calls run, under their own deadline.
    p.unload('sha256:stuck');
    await p.load('sha256:stuck', stuck, 128);
    await engineRejection(p.invoke(call), 'FUNCTION_TIMEOUT', /time limit of 200 ms/);
  });

  it('stops a start function that never returns by its checks, in a call and while the next instance is readied after it: no worker terminated', async () => {
    const p = pool({ workers: 1 });
    await p.ready();
    const stuck = watText('(module (func $f (loop $l (br $l))) (start $f) (func (export "stuck") (result i32) (i32.const 1)))');
    await p.load('sha256:stuck', stuck, 128);
    const gcd = await deploy(p, 'numeric', 'gcd');
    const call = request(analyzeModule(stuck, { functionName: 'stuck' }), [], { digest: 'sha256:stuck', limits: { timeoutMs: 100 } });
    for (let i = 0; i < 3; i++) {
      // Its instance is made inside the call, under the call's clock.
      await engineRejection(p.invoke(call), 'FUNCTION_TIMEOUT', /time limit of 100 ms/);
      // After the first answer the worker readies the next instance under the same limit, is
      // stopped there too, and from then on makes this module's instances only inside its calls:
      // the gcd call waits for that, not for a worker replaced.
      expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    }
    await eventually(() => p.stats().preemptions?.worker === 3);
    expect(p.stats().workerReplacements).toEqual({ deadline: 0, not_started: 0, preload: 0, crash: 0, out_of_memory: 0 });
  });

  for (const reuseInstances of [true, false]) {
    it(`answers every call from the initial state, for all three ABIs (instance reuse ${reuseInstances ? 'on' : 'off'})`, async () => {
      const p = pool({ workers: 1, reuseInstances });
      const fresh = (name: string, functionName: string, args: unknown): string =>
        runInvocation(compile(wat(name)), request(analyzeModule(wat(name), { functionName }), args)).output;
      const numeric = await deploy(p, 'reuse-numeric', 'probe');
      const string = await deploy(p, 'reuse-string', 'probe');
      const wasi = await deploy(p, 'reuse-wasi');
      for (let i = 0; i < 4; i++) {
        expect((await p.invoke(numeric([String(i + 1)]))).output).toBe(fresh('reuse-numeric', 'probe', ['1']));
        expect((await p.invoke(string({ k: `v${i}` }))).output).toBe(fresh('reuse-string', 'probe', { k: `v${i}` }));
        expect((await p.invoke(wasi({ k: 'x'.repeat(i) }))).output).toBe(fresh('reuse-wasi', 'reuse-wasi', { k: 'x'.repeat(i) }));
      }
    });
  }

  it('keeps compiled modules within moduleCacheBytes, evicting the least recently used, and recompiles an evicted one on its next call', async () => {
    const fetched: string[] = [];
    const sources: Record<string, Uint8Array> = { 'sha256:numeric': wat('numeric'), 'sha256:string': wat('string'), 'sha256:counter': wat('counter') };
    // The bound counts the binaries compiled: given preemption checks and rewritten for reuse, as the pool does.
    const compiled = (name: string): number => {
      const checked = injectPreemption(withMemoryMaximum(wat(name), 128 * 16));
      const prepared = prepareForReuse('bytes' in checked ? checked.bytes : wat(name));
      return 'bytes' in prepared ? prepared.bytes.length : wat(name).length;
    };
    const bound = compiled('numeric') + compiled('string') + 64;
    const p = pool({
      moduleCacheBytes: bound,
      fetchModule: async (digest) => {
        fetched.push(digest);
        const bytes = sources[digest];
        if (!bytes) throw new Error(`no ${digest}`);
        return bytes;
      },
    });
    const gcd = await deploy(p, 'numeric', 'gcd');
    const echo = await deploy(p, 'string', 'echo');
    expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    // numeric is now the most recently used: loading counter evicts string
    const counter = await deploy(p, 'counter');
    expect(p.stats()).toMatchObject({ loadedModules: 2, evictedModules: 1 });
    expect(p.stats().loadedModuleBytes).toBeLessThanOrEqual(bound);
    expect(fetched).toEqual([]);
    expect((await p.invoke(echo({ a: 'b' }))).output).toBe('{"a":"b"}');
    expect(fetched).toEqual(['sha256:string']);
    expect((await p.invoke(counter())).output).toBe('1');
    // an unloaded module is forgotten for good, evicted or not
    p.unload('sha256:numeric');
    await engineRejection(p.invoke(gcd(['1', '2'])), 'INTERNAL', /not loaded/);
  });

  it('enforces the memory limit the module was loaded with', async () => {
    const p = pool();
    const grow = await deploy(p, 'grow', 'grow', 1);
    expect((await p.invoke(grow(['15']))).output).toBe('1');
    expect((await p.invoke(grow(['16']))).output).toBe('-1');
    const roomy = await deploy(p, 'grow', 'grow', 2);
    expect((await p.invoke(roomy(['16']))).output).toBe('1');
  });

  it('refuses at load a module that is invalid or whose initial memory exceeds the limit', async () => {
    const p = pool();
    await engineRejection(p.load('sha256:bad', new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 9]), 128), 'INVALID_FUNCTION_IMAGE');
    await engineRejection(p.load('sha256:big', wat('big-memory'), 1), 'INVALID_FUNCTION_IMAGE', /exceeds its memory limit/);
    expect(p.stats().loadedModules).toBe(0);
  });

  it('unloads modules, and refuses to invoke one that is not loaded', async () => {
    const p = pool();
    const gcd = await deploy(p, 'numeric', 'gcd');
    expect((await p.invoke(gcd(['4', '6']))).output).toBe('2');
    p.unload('sha256:numeric');
    expect(p.stats().loadedModules).toBe(0);
    await engineRejection(p.invoke(gcd(['4', '6'])), 'INTERNAL', /not loaded/);
    await p.load('sha256:numeric', wat('numeric'), 128);
    expect((await p.invoke(gcd(['4', '6']))).output).toBe('2');
  });

  it('stops an infinite loop at its time limit while other calls still succeed', async () => {
    const p = pool({ workers: 2 });
    const spin = await deploy(p, 'spin');
    const gcd = await deploy(p, 'numeric', 'gcd');
    // A call must start within its time limit: not one spent waiting for the workers to start.
    await p.ready();
    const started = Date.now();
    const spinning = engineRejection(p.invoke(spin(undefined, { timeoutMs: 300 })), 'FUNCTION_TIMEOUT', /time limit of 300 ms/);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => p.invoke(gcd([String(6 * i), '4']))));
    expect(answers.map((a) => a.output)).toEqual(Array.from({ length: 20 }, (_, i) => (i === 0 ? '4' : String(i % 2 === 0 ? 4 : 2))));
    await spinning;
    expect(Date.now() - started).toBeLessThan(10_000);
    // The loop stopped itself (its checks asked the worker's clock): no worker was terminated.
    await eventually(() => p.stats().preemptions?.worker === 1);
    expect(p.stats().workerReplacements).toEqual({ deadline: 0, not_started: 0, preload: 0, crash: 0, out_of_memory: 0 });
    expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    // Again and again on one worker, which lives on; its next call runs in a fresh instance.
    const one = pool({ workers: 1 });
    const spinOne = await deploy(one, 'spin');
    const gcdOne = await deploy(one, 'numeric', 'gcd');
    for (let i = 1; i <= 3; i++) {
      await engineRejection(one.invoke(spinOne(undefined, { timeoutMs: 50 })), 'FUNCTION_TIMEOUT', /time limit of 50 ms/);
      expect((await one.invoke(gcdOne(['12', '18']))).output).toBe('6');
    }
    await eventually(() => one.stats().preemptions?.worker === 3);
    expect(one.stats().workerReplacements?.deadline).toBe(0);
  });

  it('runs the call after one stopped by its checks in an instance without the stopped call\'s state', async () => {
    const p = pool({ workers: 1 });
    const bytes = watText(`(module (global $g (mut i32) (i32.const 0))
      (func (export "spin") (result i32) (global.set $g (i32.const 7)) (loop $l (br $l)) (i32.const 0))
      (func (export "read") (result i32) (global.get $g)))`);
    await p.load('sha256:state-spin', bytes, 128);
    const entry = (functionName: string, timeoutMs: number) =>
      request(analyzeModule(bytes, { functionName }), [], { digest: 'sha256:state-spin', limits: { timeoutMs } });
    expect((await p.invoke(entry('read', 5_000))).output).toBe('0');
    await engineRejection(p.invoke(entry('spin', 50)), 'FUNCTION_TIMEOUT', /time limit of 50 ms/);
    expect((await p.invoke(entry('read', 5_000))).output).toBe('0');
    expect(p.stats().workerReplacements?.deadline).toBe(0);
  });

  it('terminates and replaces a worker whose call the checks cannot stop (a blocking host call) once the grace after its deadline is over', async () => {
    const logger = recordingLogger();
    const p = pool({ workers: 1, logger });
    const sleep300 = await deploy(p, 'wasi-sleep');
    const gcd = await deploy(p, 'numeric', 'gcd');
    await p.ready();
    // poll_oneoff blocks the worker's thread for 300 ms: no check runs before then.
    await engineRejection(p.invoke(sleep300(undefined, { timeoutMs: 100 })), 'FUNCTION_TIMEOUT', /time limit of 100 ms/);
    await eventually(() => p.stats().workerReplacements?.deadline === 1);
    expect(p.stats().preemptions?.worker).toBe(0);
    expect(logger.lines.some((l) => l.msg?.includes('did not stop itself; its sandbox worker was terminated'))).toBe(true);
    expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
  });

  it('gives a call to the idle worker that answered last', async () => {
    const p = pool({ workers: 2 });
    await p.ready();
    const gcd = await deploy(p, 'numeric', 'gcd');
    await Promise.all([p.invoke(gcd(['1', '1'])), p.invoke(gcd(['1', '1']))]);
    const slots = [...(p as unknown as { slots: Set<{ lastAnswer: number }> }).slots];
    expect(slots).toHaveLength(2);
    // Make the second worker the one that answered last (the pool would otherwise pick the first).
    slots[1]!.lastAnswer = performance.now() + 1e6;
    const first = slots[0]!.lastAnswer;
    for (let i = 0; i < 5; i++) expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    // Every sequential call went to the second worker: the first answered none of them.
    expect(slots[0]!.lastAnswer).toBe(first);
    expect(slots[1]!.lastAnswer).toBeLessThan(performance.now() + 1);
  });

  it('refuses with OVERLOADED at once past maxQueue, with a retry hint', async () => {
    const p = pool({ workers: 1, maxQueue: 1 });
    const spin = await deploy(p, 'spin');
    const gcd = await deploy(p, 'numeric', 'gcd');
    // Calls must start within their time limit: not one spent waiting for the worker to start.
    await p.ready();
    await eventually(() => p.stats().workers === 1 && p.stats().busy === 0);
    const running = engineRejection(p.invoke(spin(undefined, { timeoutMs: 1_000 })), 'FUNCTION_TIMEOUT');
    await eventually(() => p.stats().busy === 1);
    const queued = p.invoke(gcd(['9', '6']));
    expect(p.stats().queued).toBe(1);
    const err = await engineRejection(p.invoke(gcd(['9', '6'])), 'OVERLOADED', /too many invocations/);
    expect(err.retryAfterSeconds).toBe(1);
    await running;
    expect((await queued).output).toBe('3');
  });

  it('drops a queued invocation whose signal is aborted', async () => {
    const p = pool({ workers: 1, maxQueue: 5 });
    const spin = await deploy(p, 'spin');
    const gcd = await deploy(p, 'numeric', 'gcd');
    // Calls must start within their time limit: not one spent waiting for the worker to start.
    await p.ready();
    await eventually(() => p.stats().busy === 0 && p.stats().workers === 1);
    const running = engineRejection(p.invoke(spin(undefined, { timeoutMs: 800 })), 'FUNCTION_TIMEOUT');
    await eventually(() => p.stats().busy === 1);
    const controller = new AbortController();
    const queued = engineRejection(p.invoke(gcd(['9', '6']), controller.signal), 'UNAVAILABLE', /client went away/);
    expect(p.stats().queued).toBe(1);
    controller.abort();
    await queued;
    expect(p.stats().queued).toBe(0);
    // an already aborted signal never queues
    await engineRejection(p.invoke(gcd(['9', '6']), controller.signal), 'UNAVAILABLE', /client went away/);
    await running;
  });

  it('holds no call behind a slow one: a call waits for the first worker free, not behind the 3 s call', async () => {
    const p = pool({ workers: 2 });
    const spin = await deploy(p, 'spin');
    // The same module under another memory limit: another compiled module, judged on its own.
    const spinToo = await deploy(p, 'spin', 'spin', 64);
    const gcd = await deploy(p, 'numeric', 'gcd');
    await p.ready();
    expect((await p.invoke(gcd(['9', '6']))).output).toBe('3');
    const order: string[] = [];
    const long = engineRejection(p.invoke(spin(undefined, { timeoutMs: 3_000 })), 'FUNCTION_TIMEOUT').then(() => order.push('long'));
    const short = engineRejection(p.invoke(spinToo(undefined, { timeoutMs: 300 })), 'FUNCTION_TIMEOUT').then(() => order.push('short'));
    await eventually(() => p.stats().busy === 2);
    // Both workers busy: the call waits (it counts as queued)…
    const waiting = p.invoke(gcd(['9', '6'])).then((r) => {
      order.push('gcd');
      return r.output;
    });
    expect(p.stats().queued).toBe(1);
    // …and it runs once the 300 ms call ends, not after the 3 s one.
    expect(await waiting).toBe('3');
    await short;
    expect(order).toEqual(['short', 'gcd']);
    await long;
    expect(order.slice(-1)).toEqual(['long']);
  });

  it('runs the calls of a function that spins on all workers but one; the last serves a fast function', async () => {
    const p = pool({ workers: 2 });
    const spin = await deploy(p, 'spin');
    const gcd = await deploy(p, 'numeric', 'gcd');
    await p.ready();
    const settled: string[] = [];
    // The first runs longer than the others may wait to start, so that they are refused before a
    // worker could be free for them, however late this busy machine runs the pool's timers.
    const spins = [6_000, 3_000, 3_000].map((timeoutMs) =>
      p.invoke(spin(undefined, { timeoutMs })).then(
        () => 'ok',
        (err: EngineError) => {
          settled.push('spin');
          return err.code;
        },
      ),
    );
    await eventually(() => p.stats().busy === 1 && p.stats().queued === 2);
    // The first call of a function never seen takes the free worker, and the next ones follow it.
    for (let i = 0; i < 20; i++) expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    const concurrent = await Promise.all(Array.from({ length: 20 }, () => p.invoke(gcd(['12', '18']))));
    expect(concurrent.map((r) => r.output)).toEqual(Array(20).fill('6'));
    expect(settled).toEqual([]);
    expect(p.stats()).toMatchObject({ busy: 1, queued: 2 });
    // The two waiting calls of the spinning function could not start within their 3 s.
    expect(await Promise.all(spins)).toEqual(['FUNCTION_TIMEOUT', 'OVERLOADED', 'OVERLOADED']);
  });

  it('refuses with OVERLOADED a call that cannot start within its time limit, sooner than the call before it ends', async () => {
    const p = pool({ workers: 1 });
    const spin = await deploy(p, 'spin');
    const gcd = await deploy(p, 'numeric', 'gcd');
    await p.ready();
    expect((await p.invoke(gcd(['9', '6']))).output).toBe('3');
    const order: string[] = [];
    const running = engineRejection(p.invoke(spin(undefined, { timeoutMs: 2_000 })), 'FUNCTION_TIMEOUT').then(() => order.push('spin'));
    await eventually(() => p.stats().busy === 1);
    const queued = engineRejection(p.invoke(gcd(['9', '6'], { timeoutMs: 100 })), 'OVERLOADED', /could not start within its time limit of 100 ms/);
    const err = await queued;
    order.push('gcd');
    expect(err.retryAfterSeconds).toBe(1);
    expect(p.stats().queued).toBe(0);
    await running;
    expect(order).toEqual(['gcd', 'spin']);
  });

  it('withdraws a call waiting in a busy worker when its client goes away; the worker carries on', async () => {
    const p = pool({ workers: 1 });
    const sleep300 = await deploy(p, 'wasi-sleep');
    const gcd = await deploy(p, 'numeric', 'gcd');
    // Calls must start within their time limit: not one spent waiting for the worker to start.
    await p.ready();
    await eventually(() => p.stats().workers === 1 && p.stats().busy === 0);
    const sleeping = p.invoke(sleep300());
    await eventually(() => p.stats().busy === 1);
    const controller = new AbortController();
    const held = engineRejection(p.invoke(gcd(['9', '6']), controller.signal), 'UNAVAILABLE', /client went away/);
    expect(p.stats().queued).toBe(1);
    controller.abort();
    await held;
    expect(p.stats().queued).toBe(0);
    expect((await sleeping).output).toBe('slept');
    expect((await p.invoke(gcd(['12', '18']))).output).toBe('6');
    expect(p.stats().workers).toBe(1);
  });

  it('a worker skips a call withdrawn before it started, and runs one that was not', async () => {
    const cells = new Int32Array(new SharedArrayBuffer((CELLS_PER_WORKER + 1) * Int32Array.BYTES_PER_ELEMENT));
    const w = new Worker(worker.url, { workerData: { cells } });
    try {
      const replies: { type: string; id?: number; result?: { output: string } }[] = [];
      // A successful call is answered in the compact form [id, output, stderr, durationMs] (protocol.ts).
      w.on('message', (m) => replies.push(Array.isArray(m) ? { type: 'done', id: m[0], result: { output: m[1] } } : m));
      await eventually(() => replies.some((r) => r.type === 'ready'));
      const module = compile(wat('numeric'));
      const call = { abi: 'numeric', entrypoint: 'gcd', values: [12, 18], maxOutputBytes: 100 };
      Atomics.store(cells, 0, CellState.WITHDRAWN);
      Atomics.store(cells, 1, CellState.PENDING);
      w.postMessage({ type: 'invoke', id: 1, cell: 0, moduleId: 1, timeoutMs: 10_000, load: { module }, call });
      w.postMessage({ type: 'invoke', id: 2, cell: 1, moduleId: 1, timeoutMs: 10_000, call });
      // The compact form of a call, as the pool sends it once the worker holds the module.
      Atomics.store(cells, 2, CellState.WITHDRAWN);
      Atomics.store(cells, 3, CellState.PENDING);
      w.postMessage([3, 2, 1, 10_000, 0, 'gcd', 100, [12, 18]]);
      w.postMessage([4, 3, 1, 10_000, 0, 'gcd', 100, [21, 14]]);
      await eventually(() => replies.length === 5);
      expect(replies.slice(1).map((r) => [r.type, r.id, r.result?.output])).toEqual([
        ['skipped', 1, undefined],
        ['done', 2, '6'],
        ['skipped', 3, undefined],
        ['done', 4, '7'],
      ]);
      expect(Atomics.load(cells, 1)).toBe(CellState.ENDED);
      expect(Atomics.load(cells, 3)).toBe(CellState.ENDED);
    } finally {
      await w.terminate();
    }
  });

  it('fails the call of a worker that crashes, and replaces the worker', async () => {
    const logger = recordingLogger();
    const p = pool({ workers: 1, workerUrl: new URL('./fixtures/crash-worker.mjs', import.meta.url), logger });
    const gcd = await deploy(p, 'numeric', 'gcd');
    await engineRejection(p.invoke(gcd(['1', '2'])), 'FUNCTION_FAILED', /the sandbox crashed/);
    await eventually(() => p.stats().workers === 1);
    await engineRejection(p.invoke(gcd(['1', '2'])), 'FUNCTION_FAILED', /the sandbox crashed/);
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(2);
  });

  it('does not respawn a worker that fails to start in a tight loop, and fails calls instead of hanging', async () => {
    const logger = recordingLogger();
    const p = pool({ workers: 1, workerUrl: new URL('./fixtures/broken-worker.mjs', import.meta.url), logger });
    const gcd = await deploy(p, 'numeric', 'gcd');
    const failures = (): number => logger.lines.filter((l) => l.level === 'error').length;
    await eventually(() => failures() >= 1);
    await engineRejection(p.invoke(gcd(['1', '2'])), 'INTERNAL', /no sandbox worker could start: .*broken on purpose/);
    // it is retried…
    await eventually(() => failures() >= 2, 10_000);
    // …but with doubling delays (200 ms, 400 ms, 800 ms, …): a few attempts a second, not hundreds
    const before = failures();
    await sleep(1_000);
    expect(failures() - before).toBeLessThanOrEqual(4);
  });

  it('close() lets in-flight calls finish, then refuses new ones and stops the workers', async () => {
    const p = pool();
    const gcd = await deploy(p, 'numeric', 'gcd');
    const inFlight = Promise.all(Array.from({ length: 6 }, () => p.invoke(gcd(['8', '12']))));
    const closing = p.close();
    await engineRejection(p.invoke(gcd(['8', '12'])), 'OVERLOADED', /shutting down/);
    expect((await inFlight).map((r) => r.output)).toEqual(Array(6).fill('4'));
    await closing;
    expect(p.stats().workers).toBe(0);
  });

  it('close() is bounded: a call still running at the bound is failed', async () => {
    const p = pool({ workers: 1, closeTimeoutMs: 200 });
    const spin = await deploy(p, 'spin');
    const running = engineRejection(p.invoke(spin(undefined, { timeoutMs: 60_000 })), 'FUNCTION_FAILED', /shut down/);
    await eventually(() => p.stats().busy === 1);
    const started = Date.now();
    await p.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    await running;
  });
});
