/**
 * Instance reuse is exact (SPEC §3 isolation): no byte of one invocation's memory, no global and no
 * table entry reaches the next, for all three ABIs. The probe fixtures (test/fixtures/wat/reuse-*)
 * answer a fingerprint of the state they started from and then overwrite all of it; every call
 * must answer the fingerprint a fresh instance answers, while the runner really reused instances.
 */
import { describe, expect, it } from 'vitest';
import {
  InstanceRunner,
  analyzeModule,
  exposeState,
  prepareForReuse,
  runInvocation,
  toSandboxCall,
  wasm,
  withMemoryMaximum,
  type ExposedState,
  type InvocationRequest,
} from '../../src/runtime/index.js';
import { readFileSync } from 'node:fs';
import { watFixture } from '../support/fixtures.js';
import { engineError, request, wat, watText } from './support.js';

/**
 * A runner as a pool worker makes it: the module compiled with its memory size made virtual and
 * its state exported (`prepare`), or with its state exported only (exposeState).
 */
function reusingRunner(
  name: string,
  functionName: string,
  memoryLimitMb = 128,
  prepare: (bytes: Uint8Array) => ReturnType<typeof exposeState> = prepareForReuse,
): { runner: InstanceRunner; req: (args?: unknown) => InvocationRequest } {
  const bytes = wat(name);
  const capped = withMemoryMaximum(bytes, memoryLimitMb * 16);
  const exposed = prepare(capped);
  if (!('state' in exposed)) throw new Error(`not reusable: ${exposed.reason}`);
  const analysis = analyzeModule(bytes, { functionName });
  const runner = new InstanceRunner(new wasm.Module(exposed.bytes), analysis.abi, exposed.state);
  return { runner, req: (args?: unknown) => request(analysis, args, { limits: { memoryLimitMb } }) };
}

/** Runs a call the way the worker does: answer first, then settle (restore or re-instantiate). */
function runAndSettle(runner: InstanceRunner, req: InvocationRequest): string {
  try {
    return runner.run(toSandboxCall(req)).output;
  } finally {
    runner.settle();
  }
}

/** What a fresh instance answers: the fingerprint of the pristine state. */
function freshAnswer(name: string, functionName: string, args?: unknown): string {
  const bytes = wat(name);
  return runInvocation(new wasm.Module(withMemoryMaximum(bytes, 128 * 16)), request(analyzeModule(bytes, { functionName }), args)).output;
}

describe('instance reuse is exact', () => {
  it('numeric ABI: memory, globals (unexported ones too) and table entries are put back', () => {
    const pristine = freshAnswer('reuse-numeric', 'probe', ['1']);
    const { runner, req } = reusingRunner('reuse-numeric', 'probe');
    const outputs = [1, 2, 255, 0x7fffffff, 3].map((seed) => runAndSettle(runner, req([String(seed)])));
    expect(outputs).toEqual(Array(5).fill(pristine));
    expect(runner.reuseRefused).toBeUndefined();
    // The first call made an instance, settle made the one reused from then on.
    expect(runner.stats.reused).toBeGreaterThanOrEqual(4);
  });

  it('string ABI: the pre-grown page and the input are part of the pristine state', () => {
    const { runner, req } = reusingRunner('reuse-string', 'probe');
    const inputs = ['a', 'bb', 'x'.repeat(500), 'c', 'bb'];
    const outputs = inputs.map((v) => runAndSettle(runner, req({ k: v })));
    // The input is left out of the fingerprint (so its length counts); all else must be pristine.
    expect(outputs).toEqual(inputs.map((v) => freshAnswer('reuse-string', 'probe', { k: v })));
    expect(outputs[0]).toMatch(/^[0-9a-f]{8}$/);
    expect(outputs[0]).toBe(outputs[3]);
    expect(runner.stats.reused).toBeGreaterThanOrEqual(3);
  });

  it('string ABI: an input that needs more pages than the pre-grown one still sees the initial state', () => {
    const { runner, req } = reusingRunner('reuse-string', 'probe');
    const big = 'y'.repeat(200_000);
    const expected = freshAnswer('reuse-string', 'probe', { k: big });
    expect(runAndSettle(runner, req({ k: 'small' }))).toBe(freshAnswer('reuse-string', 'probe', { k: 'small' }));
    expect(runAndSettle(runner, req({ k: big }))).toBe(expected);
    expect(runAndSettle(runner, req({ k: 'small' }))).toBe(freshAnswer('reuse-string', 'probe', { k: 'small' }));
  });

  it('WASI: the host is reset and the instance put back', () => {
    const pristine = freshAnswer('reuse-wasi', 'reuse-wasi', { k: 'a' });
    const { runner, req } = reusingRunner('reuse-wasi', 'reuse-wasi');
    const outputs = ['a', 'bbbbbbbb', 'c'].map((v) => runAndSettle(runner, req({ k: v })));
    expect(outputs).toEqual(Array(3).fill(pristine));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(2);
  });

  it('string ABI: an instance whose memory grew is reused, and memory.size, memory.grow and the grown page are as in a fresh instance', () => {
    const { runner, req } = reusingRunner('reuse-string', 'probe_grow');
    const pristine = freshAnswer('reuse-string', 'probe_grow', { k: 'a' });
    // Same input length each time, so the same fingerprint.
    const outputs = ['a', 'b', 'c', 'd'].map((v) => runAndSettle(runner, req({ k: v })));
    expect(outputs).toEqual(Array(4).fill(pristine));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(3);
    // An input that needs pages of its own, between calls that do not.
    const big = 'y'.repeat(200_000);
    expect(runAndSettle(runner, req({ k: big }))).toBe(freshAnswer('reuse-string', 'probe_grow', { k: big }));
    expect(runAndSettle(runner, req({ k: 'e' }))).toBe(pristine);
  });

  it('numeric ABI: an instance whose memory grew is reused and sees the initial state', () => {
    const pristine = freshAnswer('reuse-numeric', 'grow_memory', ['5']);
    const { runner, req } = reusingRunner('reuse-numeric', 'grow_memory');
    const outputs = [5, 6, 7, 8].map((seed) => runAndSettle(runner, req([String(seed)])));
    expect(outputs).toEqual(Array(4).fill(pristine));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(3);
  });

  it("WASI: each call's stdout is its own, whatever the calls before it on the instance wrote (more, less, past the kept buffer)", () => {
    const { runner, req } = reusingRunner('wasi-args', 'wasi-args');
    const args = [{ k: 'x'.repeat(2000) }, { k: 'y' }, { k: 'z'.repeat(100_000) }, {}, { k: 'w'.repeat(30) }];
    const outputs = args.map((a) => runAndSettle(runner, req(a)));
    expect(outputs).toEqual(args.map((a) => `1${JSON.stringify(a)}\0`));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(4);
  });

  it('WASI: an instance whose memory grew is reused and sees the initial state', () => {
    const long = { k: 'a long enough value to make it grow' };
    const grows = freshAnswer('reuse-wasi', 'reuse-wasi', long);
    const still = freshAnswer('reuse-wasi', 'reuse-wasi', { k: 'a' });
    expect(grows).not.toBe(still);
    const { runner, req } = reusingRunner('reuse-wasi', 'reuse-wasi');
    const outputs = [long, { k: 'a' }, long, long, { k: 'a' }].map((args) => runAndSettle(runner, req(args)));
    expect(outputs).toEqual([grows, still, grows, grows, still]);
    expect(runner.stats.reused).toBeGreaterThanOrEqual(4);
  });

  it('WASI: host calls check pointers against the size the guest sees, not the memory an earlier call grew', () => {
    expect(freshAnswer('reuse-wasi-fault', 'reuse-wasi-fault', {})).toBe('21 00');
    const { runner, req } = reusingRunner('reuse-wasi-fault', 'reuse-wasi-fault');
    expect([1, 2, 3].map(() => runAndSettle(runner, req({})))).toEqual(['21 00', '21 00', '21 00']);
    expect(runner.stats.reused).toBeGreaterThanOrEqual(2);
  });

  it('without a virtual memory size, an instance whose memory grew is discarded, not reused', () => {
    const { runner, req } = reusingRunner('reuse-string', 'probe_grow', 128, (bytes) => exposeState(bytes));
    const pristine = freshAnswer('reuse-string', 'probe_grow', { k: 'a' });
    const outputs = ['a', 'b', 'c'].map((v) => runAndSettle(runner, req({ k: v })));
    expect(outputs).toEqual(Array(3).fill(pristine));
    expect(runner.stats.reused).toBe(0);

    const numeric = reusingRunner('reuse-numeric', 'grow_memory', 128, (bytes) => exposeState(bytes));
    const first = runAndSettle(numeric.runner, numeric.req(['5']));
    expect(runAndSettle(numeric.runner, numeric.req(['6']))).toBe(first);
    expect(numeric.runner.stats.reused).toBe(0);
  });

  describe('an access past the size the guest sees traps as in a fresh instance, though an earlier call grew the real memory', () => {
    // One runner for every export, as a worker keeps one per module and ABI.
    const bytes = new Uint8Array(readFileSync(watFixture('hardening', 'reuse-past-size')));
    const capped = withMemoryMaximum(bytes, 128 * 16);
    const exposed = prepareForReuse(capped) as { bytes: Uint8Array; state: ExposedState };
    const answer = (run: () => string): string => {
      try {
        return run();
      } catch (err) {
        return `${(err as { code?: string }).code}: ${(err as Error).message}`;
      }
    };
    /** The answers of a reused instance and of fresh instances of the original, call after call. */
    const both = (calls: [string, string[]][]): { reused: string[]; fresh: string[] } => {
      expect(exposed.state.virtualSize).toBeDefined();
      const runner = new InstanceRunner(new wasm.Module(exposed.bytes), 'numeric', exposed.state);
      const req = (name: string, args: string[]): InvocationRequest => request(analyzeModule(bytes, { functionName: name }), args);
      const reused = calls.map(([name, args]) => answer(() => runAndSettle(runner, req(name, args))));
      const fresh = calls.map(([name, args]) => answer(() => runInvocation(new wasm.Module(capped), req(name, args)).output));
      expect(runner.stats.reused).toBeGreaterThanOrEqual(1);
      return { reused, fresh };
    };

    it('loads and stores', () => {
      const calls: [string, string[]][] = [
        ['load', ['1', '65536']],
        ['load', ['0', '65536']],
        ['load', ['0', '65535']],
        ['store', ['1', '65528']],
        ['store', ['0', '65528']],
        ['store', ['0', '65524']],
        ['load', ['0', '131071']],
        ['store', ['0', '4294967295']],
      ];
      const { reused, fresh } = both(calls);
      expect(reused).toEqual(fresh);
      expect(fresh[1]).toMatch(/^FUNCTION_FAILED: .*out-of-bounds memory access$/);
      expect(fresh[4]).toMatch(/^FUNCTION_FAILED: .*out-of-bounds memory access$/);
      expect(fresh.filter((a) => a.startsWith('FUNCTION_FAILED')).length).toBe(4);
    });

    it('memory.fill and memory.copy', () => {
      const calls: [string, string[]][] = [
        ['fill', ['1', '65000', '1000']],
        ['fill', ['0', '65000', '1000']],
        ['fill', ['0', '65536', '0']],
        ['fill', ['0', '65537', '0']],
        ['copy', ['1', '0', '65530']],
        ['copy', ['0', '0', '65530']],
        ['copy', ['0', '65530', '0']],
        ['copy', ['0', '65520', '65520']],
      ];
      const { reused, fresh } = both(calls);
      expect(reused).toEqual(fresh);
      expect(fresh.map((a) => a.startsWith('FUNCTION_FAILED'))).toEqual([false, true, false, true, false, true, true, false]);
    });
  });

  it('an instance whose table grew is discarded, not reused', () => {
    const { runner, req } = reusingRunner('reuse-numeric', 'grow_table');
    const first = runAndSettle(runner, req(['5']));
    expect(runAndSettle(runner, req(['6']))).toBe(first);
    expect(first).toBe(freshAnswer('reuse-numeric', 'probe', ['1']));
    expect(runner.stats.reused).toBe(0);
  });

  it('an instance whose call trapped is discarded: the next call sees the initial state', () => {
    const bytes = wat('reuse-numeric');
    const exposed = exposeState(withMemoryMaximum(bytes, 128 * 16)) as { bytes: Uint8Array; state: ExposedState };
    const runner = new InstanceRunner(new wasm.Module(exposed.bytes), 'numeric', exposed.state);
    const trap = request(analyzeModule(bytes, { functionName: 'dirty_trap' }), ['9']);
    const probe = request(analyzeModule(bytes, { functionName: 'probe' }), ['1']);
    const pristine = freshAnswer('reuse-numeric', 'probe', ['1']);
    expect(runAndSettle(runner, probe)).toBe(pristine);
    engineError(() => runAndSettle(runner, trap), 'FUNCTION_FAILED', /unreachable/);
    expect(runAndSettle(runner, probe)).toBe(pristine);
    expect(runAndSettle(runner, probe)).toBe(pristine);
  });

  it('a counting module answers 1 every time, reused', () => {
    const { runner, req } = reusingRunner('counter', 'counter');
    expect(Array.from({ length: 5 }, () => runAndSettle(runner, req()))).toEqual(Array(5).fill('1'));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(4);
  });

  it('calls that are not settled between them still see the initial state', () => {
    const { runner, req } = reusingRunner('reuse-numeric', 'probe');
    const pristine = freshAnswer('reuse-numeric', 'probe', ['1']);
    // run() settles a previous call itself when the caller did not.
    expect([1, 2, 3].map((seed) => runner.run(toSandboxCall(req([String(seed)]))).output)).toEqual(Array(3).fill(pristine));
  });
});

describe('instance reuse is exact for float globals that start as NaNs (found by test/fuzz)', () => {
  // JavaScript reads and writes a float global as a number, which keeps every value but a NaN's
  // bits: restoring one wrote back V8's canonical NaN, and the next call saw other bits.
  it('a module whose mutable float global starts as a NaN is not reused, and every call answers the initial bits', () => {
    const bytes = new Uint8Array(readFileSync(watFixture('hardening', 'reuse-nan-global')));
    const capped = withMemoryMaximum(bytes, 128 * 16);
    const exposed = prepareForReuse(capped);
    if (!('state' in exposed)) throw new Error(`not exposed: ${exposed.reason}`);
    for (const [entry, initial] of [['bits32', '-27'], ['bits64', '9219994337134247937']] as const) {
      const analysis = analyzeModule(bytes, { functionName: entry });
      const fresh = runInvocation(new wasm.Module(capped), request(analysis)).output;
      expect(fresh).toBe(initial);
      const runner = new InstanceRunner(new wasm.Module(exposed.bytes), analysis.abi, exposed.state);
      const outputs = [1, 2, 3, 4].map(() => runAndSettle(runner, request(analysis)));
      expect(outputs).toEqual([initial, initial, initial, initial]);
      expect(runner.reuseRefused).toMatch(/NaN/);
    }
  });

  it('a float global that starts as a number is still restored exactly, NaN or not in between', () => {
    const bytes = watText(`(module (memory (export "memory") 1) (global $g (mut f32) (f32.const -0))
      (func (export "f") (result i32) (local $r i32)
        (local.set $r (i32.reinterpret_f32 (global.get $g)))
        (global.set $g (f32.reinterpret_i32 (i32.const 0x7fa00001)))
        (local.get $r)))`);
    const exposed = prepareForReuse(withMemoryMaximum(bytes, 128 * 16));
    if (!('state' in exposed)) throw new Error(`not exposed: ${exposed.reason}`);
    const analysis = analyzeModule(bytes, { functionName: 'f' });
    const runner = new InstanceRunner(new wasm.Module(exposed.bytes), analysis.abi, exposed.state);
    const outputs = [1, 2, 3].map(() => runAndSettle(runner, request(analysis)));
    // -0 as f32 bits: 0x80000000.
    expect(outputs).toEqual(['-2147483648', '-2147483648', '-2147483648']);
    expect(runner.reuseRefused).toBeUndefined();
    expect(runner.stats.reused).toBeGreaterThanOrEqual(2);
  });
});

describe('exposeState', () => {
  const module = (body: string): Uint8Array => watText(`(module ${body})`);

  it('exports the memory, every mutable global and every table under reserved names', () => {
    const exposed = exposeState(wat('reuse-numeric'));
    expect('state' in exposed).toBe(true);
    const { state, bytes } = exposed as { bytes: Uint8Array; state: ExposedState };
    expect(state.globals).toHaveLength(4);
    expect(state.tables).toHaveLength(2);
    expect(state.memory).toBeDefined();
    // The project's narrow WebAssembly typing (runtime/wasm-api.ts) has no Module.exports: Node's global has.
    const { Module } = (globalThis as unknown as { WebAssembly: { Module: { new (b: Uint8Array): object; exports(m: object): { name: string }[] } } }).WebAssembly;
    const exportNames = Module.exports(new Module(bytes)).map((e) => e.name);
    expect(exportNames).toEqual(expect.arrayContaining(['probe', state.memory, ...state.globals, ...state.tables]));
  });

  it('refuses, with the reason, what cannot be reset exactly', () => {
    expect(exposeState(module('(memory 1) (data "x")'))).toEqual({ reason: expect.stringMatching(/passive data segment/) });
    expect(exposeState(module('(table 1 funcref) (func $f) (elem func $f)'))).toEqual({ reason: expect.stringMatching(/passive element segment/) });
    expect(exposeState(module('(global (mut v128) (v128.const i32x4 0 0 0 0))'))).toEqual({ reason: expect.stringMatching(/v128/) });
    expect(exposeState(module('(func (export "\\00wasm-engine:x"))'))).toEqual({ reason: expect.stringMatching(/reserved prefix/) });
    expect(exposeState(module('(table 5000 funcref) (func (export "f"))'))).toEqual({ reason: expect.stringMatching(/5000 entries/) });
  });

  it('accepts active and declarative segments', () => {
    const ok = exposeState(module('(memory 1) (data (i32.const 0) "x") (table 1 funcref) (func $f) (elem (i32.const 0) $f) (elem declare func $f) (func (export "g"))'));
    expect('state' in ok).toBe(true);
  });
});

describe('instance reuse restores what a call wrote, and only that, exactly (the written map)', () => {
  const KINDS = [
    'i32.store8', 'i32.store16', 'i32.store', 'i64.store', 'f32.store', 'f64.store', 'i64.store32', 'v128.store',
    'v128.store64_lane', 'i32.atomic.store', 'i64.atomic.rmw.add', 'i32.atomic.rmw.xchg', 'memory.fill (5000 bytes)',
    'memory.copy (300 bytes)', 'i32.store offset=4093', 'i64.store16 offset=1',
  ];
  const ATOMIC = new Set([9, 10, 11]);
  // Either side of chunk (4 KiB) and page boundaries, and the last bytes of the 3-page memory.
  const ADDRESSES = [0, 4093, 4094, 4095, 4096, 12_284, 65_530, 65_535, 131_064, 196_600];
  const bytes = wat('written-map');
  const exposed = prepareForReuse(withMemoryMaximum(bytes, 128 * 16)) as { bytes: Uint8Array; state: ExposedState };
  const req = (name: string, args: string[] = []): InvocationRequest => request(analyzeModule(bytes, { functionName: name }), args);
  const fresh = (name: string, args: string[] = []): string => runInvocation(new wasm.Module(withMemoryMaximum(bytes, 128 * 16)), req(name, args)).output;

  it('after a write of every kind, at every boundary, the next call sees every byte of the pristine memory', () => {
    expect(exposed.state.virtualSize?.written).toBeDefined();
    const pristine = fresh('hash');
    const runner = new InstanceRunner(new wasm.Module(exposed.bytes), 'numeric', exposed.state);
    const seen: string[] = [];
    for (const [kind, name] of KINDS.entries()) {
      for (const at of ADDRESSES) {
        const address = ATOMIC.has(kind) ? at & ~7 : at;
        // A write that would pass the end traps, and its instance is discarded: not the case here.
        if (address + (kind === 12 ? 5000 : kind === 13 ? 300 : kind === 14 ? 4097 : 16) > 196_608) continue;
        const written = runAndSettle(runner, req('write', [String(kind), String(address)]));
        expect(written, `${name} at ${address} changed nothing`).not.toBe(pristine);
        seen.push(`${name} at ${address}: ${runAndSettle(runner, req('hash'))}`);
      }
    }
    expect(seen.filter((line) => !line.endsWith(`: ${pristine}`))).toEqual([]);
    expect(seen.length).toBeGreaterThan(140);
    expect(runner.stats.reused).toBeGreaterThanOrEqual(2 * seen.length - 1);
  });

  it('pages grown and written during a call are zero again when a later call grows them', () => {
    const runner = new InstanceRunner(new wasm.Module(exposed.bytes), 'numeric', exposed.state);
    const grown = fresh('grow_hash');
    for (const at of ['0', '4090', '65528']) {
      expect(runAndSettle(runner, req('grow_write', [at]))).not.toBe(grown);
      expect(runAndSettle(runner, req('grow_hash'))).toBe(grown);
      expect(runAndSettle(runner, req('hash'))).toBe(fresh('hash'));
    }
    expect(runner.stats.reused).toBeGreaterThanOrEqual(8);
  });

  it("string ABI: the engine's own write of a longer input is undone before a shorter one", () => {
    const { runner, req: stringReq } = reusingRunner('written-map-string', 'echo64');
    const long = runAndSettle(runner, stringReq({ k: 'x'.repeat(60) }));
    expect(long).toContain('xxxx');
    const short = runAndSettle(runner, stringReq({ k: 'y' }));
    expect(short).toBe(freshAnswer('written-map-string', 'echo64', { k: 'y' }));
    expect(short).not.toContain('x');
    expect(runner.stats.reused).toBeGreaterThanOrEqual(1);
  });

  it('WASI: what host calls wrote into memory (args_get, random_get) is undone before the next call', () => {
    const { runner, req: wasiReq } = reusingRunner('written-map-wasi', 'written-map-wasi');
    const outputs = [{ k: 'a'.repeat(50) }, { k: 'b' }, { k: 'c'.repeat(40) }, {}].map((args) => runAndSettle(runner, wasiReq(args)));
    expect(outputs).toEqual(Array(4).fill('\0'.repeat(72)));
    expect(runner.stats.reused).toBeGreaterThanOrEqual(3);
  });
});

describe('tables no code can change are not restored', () => {
  const module = (entries: number, extra = ''): Uint8Array =>
    watText(`(module
      (type $t (func (result i32)))
      (memory 1)
      (table $tab ${entries} funcref)
      (elem (table $tab) (i32.const 0) func $a $b)
      (func $a (result i32) (i32.const 1))
      (func $b (result i32) (i32.const 2))
      (func (export "pick") (param $i i32) (result i32) (call_indirect (type $t) (local.get $i)))
      ${extra})`);

  it('a table only read (call_indirect) is left out of the snapshot, and calls still answer as a fresh instance does', () => {
    const bytes = module(5000);
    const exposed = prepareForReuse(withMemoryMaximum(bytes, 128 * 16));
    if (!('state' in exposed)) throw new Error(exposed.reason);
    // Reused though it has more entries than a restore checks: none can change.
    expect(exposed.state.tables).toEqual([]);
    const runner = new InstanceRunner(new wasm.Module(exposed.bytes), 'numeric', exposed.state);
    const req = (i: string): InvocationRequest => request(analyzeModule(bytes, { functionName: 'pick' }), [i]);
    expect(['0', '1', '0', '1'].map((i) => runAndSettle(runner, req(i)))).toEqual(['1', '2', '1', '2']);
    expect(runner.stats.reused).toBeGreaterThanOrEqual(3);
  });

  it.each([
    ['table.set', '(func (export "set") (table.set $tab (i32.const 0) (ref.null func)))'],
    ['table.fill', '(func (export "fill") (table.fill $tab (i32.const 0) (ref.null func) (i32.const 1)))'],
    ['table.copy', '(func (export "copy") (table.copy $tab $tab (i32.const 0) (i32.const 1) (i32.const 1)))'],
    ['table.grow', '(func (export "grow") (drop (table.grow $tab (ref.null func) (i32.const 1))))'],
    // A declarative segment: a passive one would make the module not reusable at all.
    ['table.init', '(elem $e declare func $b) (func (export "init") (table.init $tab $e (i32.const 0) (i32.const 0) (i32.const 0)))'],
  ])('a module whose code has %s, even in a function never called, has its tables restored', (_name, extra) => {
    const exposed = prepareForReuse(withMemoryMaximum(module(4, extra), 128 * 16));
    expect('state' in exposed && exposed.state.tables).toHaveLength(1);
    // With more entries than a restore checks, such a module is not reused.
    const big = prepareForReuse(withMemoryMaximum(module(5000, extra), 128 * 16));
    expect('reason' in big && big.reason).toMatch(/entries/);
  });
});
