/**
 * Preemption checks (src/runtime/preempt/): the rewritten module validates and computes what the
 * original does — the examples, and a module that uses every place a function index can be
 * (calls, tail calls, call_indirect through element segments (function indexes and expressions),
 * ref.func in code, exports, a start function) — and a call past its clock's deadline, or a bulk
 * instruction past the clock's bound, traps itself, the thread living on. The module fuzzer
 * (test/fuzz/modules.test.ts) does the same over random modules.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { InstanceRunner, PreemptClock, analyzeModule, injectPreemption, normalizeArgs, toSandboxCall, wasm, withMemoryMaximum } from '../../src/runtime/index.js';
import type { WasmModule } from '../../src/runtime/index.js';
import { REPO_ROOT, watText } from './support.js';

const EXAMPLES = join(REPO_ROOT, 'examples', 'build', 'wasm');

/** WAT with wabt's default features (reference types without typed function references, as Node 20 runs them). */
function watDefault(text: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'preempt-'));
  try {
    writeFileSync(join(dir, 'm.wat'), text);
    execFileSync('/usr/bin/wat2wasm', ['--enable-tail-call', join(dir, 'm.wat'), '-o', join(dir, 'm.wasm')]);
    return new Uint8Array(readFileSync(join(dir, 'm.wasm')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function injected(bytes: Uint8Array): Uint8Array {
  const out = injectPreemption(withMemoryMaximum(bytes, 128 * 16));
  if (!('bytes' in out)) throw new Error(`not rewritten: ${out.reason}`);
  expect(wasm.validate(out.bytes)).toBe(true);
  return out.bytes;
}

function run(module: WasmModule, bytes: Uint8Array, functionName: string, args: unknown, clock?: PreemptClock): string {
  const analysis = analyzeModule(bytes, { functionName });
  const call = toSandboxCall({ analysis, args: normalizeArgs(args), limits: { timeoutMs: 5_000, memoryLimitMb: 128, maxOutputBytes: 1 << 20 } });
  return new InstanceRunner(module, analysis.abi, undefined, undefined, clock).run(call).output;
}

const INDEXES = `
(module
  (type $t (func (param i32) (result i32)))
  (table $tab 4 funcref)
  (table $tab2 2 funcref)
  (global $g (mut i32) (i32.const 0))
  (elem (i32.const 0) $double $inc)
  (elem (table $tab2) (i32.const 0) funcref (ref.func $inc) (ref.func $double))
  (elem declare func $triple)
  (start $init)
  (func $init (global.set $g (i32.const 5)))
  (func $double (type $t) (i32.mul (local.get 0) (i32.const 2)))
  (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
  (func $triple (type $t) (i32.mul (local.get 0) (i32.const 3)))
  (func $tail (param i32) (result i32) (return_call $inc (local.get 0)))
  (func $sum (param $n i32) (result i32) (local $acc i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $acc))
  (func (export "f") (param $x i32) (result i32)
    (i32.add
      (i32.add
        (call_indirect (type $t) (local.get $x) (i32.const 1))
        (call_indirect $tab2 (type $t) (local.get $x) (i32.const 1)))
      (i32.add
        (i32.add (call_indirect (type $t) (local.get $x) (i32.const 0)) (global.get $g))
        (i32.add (call $tail (local.get $x)) (call $sum (local.get $x))))))
  (func (export "h") (param $x i32) (result i32)
    (table.set $tab (i32.const 2) (table.get $tab2 (i32.const 1)))
    (call_indirect (type $t) (local.get $x) (i32.const 2))))
`;

describe('preemption checks', () => {
  it.each([
    ['gcd', { a: '12', b: '18' }],
    ['fibonacci', ['25']],
    ['authentication', { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' }],
    ['echo-string', { k: 'v' }],
  ])('the %s example, rewritten, validates and answers what the original answers', (name, args) => {
    const bytes = new Uint8Array(readFileSync(join(EXAMPLES, `${name}.wasm`)));
    const original = new wasm.Module(withMemoryMaximum(bytes, 128 * 16));
    const rewritten = new wasm.Module(injected(bytes));
    // A clock that never stops, asked at nearly every tick: the checks' slow path runs all along.
    const clock = new PreemptClock(1);
    clock.arm(Infinity);
    const functionName = name === 'fibonacci' ? '_start' : name;
    expect(run(rewritten, bytes, functionName, args, clock)).toBe(run(original, bytes, functionName, args));
    expect(clock.disarm()).toBeUndefined();
  });

  it('renumbers every function index: calls, tail calls, element segments of both kinds, ref.func, exports, the start function', () => {
    const bytes = watDefault(INDEXES.replace('(table.set $tab (i32.const 2) (table.get $tab2 (i32.const 1)))', '(table.set $tab (i32.const 2) (global.get $fr))').replace('(start $init)', '(start $init) (global $fr funcref (ref.func $double))'));
    const original = new wasm.Module(bytes);
    const rewritten = new wasm.Module(injected(bytes));
    for (const x of ['0', '3', '10']) {
      expect(run(rewritten, bytes, 'f', [x])).toBe(run(original, bytes, 'f', [x]));
      expect(run(rewritten, bytes, 'h', [x])).toBe(run(original, bytes, 'h', [x]));
    }
    // ref.func in code, of a function only declared.
    const withRef = watDefault(`(module (type $t (func (param i32) (result i32))) (table 1 funcref) (elem declare func $triple)
      (func $triple (type $t) (i32.mul (local.get 0) (i32.const 3)))
      (func (export "g") (param i32) (result i32) (table.set 0 (i32.const 0) (ref.func $triple)) (call_indirect (type $t) (local.get 0) (i32.const 0))))`);
    expect(run(new wasm.Module(injected(withRef)), withRef, 'g', ['7'])).toBe('21');
  });

  it('a call past its deadline traps itself, uncatchably, and the thread and the instance\'s module live on', () => {
    const bytes = watText(`(module
      (tag $e)
      (func $spin (loop $l (br $l)))
      (func (export "spin") (result i32)
        ;; A guest that catches everything still cannot get past the check.
        (try (do (call $spin)) (catch_all))
        (i32.const 42)))`);
    const module = new wasm.Module(injected(bytes));
    const clock = new PreemptClock();
    clock.arm(performance.now() + 20);
    let failure: unknown;
    try {
      run(module, bytes, 'spin', [], clock);
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(EngineError);
    expect((failure as EngineError).message).toMatch(/unreachable/);
    expect(clock.disarm()).toBe('deadline');
  }, 10_000);

  it('a loop with a huge straight body pays for its size at each iteration', () => {
    const body = Array.from({ length: 4000 }, () => '(local.set $x (i32.add (local.get $x) (i32.const 1)))').join('\n');
    const bytes = watText(`(module (func (export "big") (param $n i32) (result i32) (local $x i32)
      (loop $l ${body} (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))
      (local.get $x)))`);
    const module = new wasm.Module(injected(bytes));
    let asked = 0;
    const clock = new PreemptClock();
    const check = (clock.imports['wasm-engine:preempt'] as Record<string, (pages: number) => number>)['check'] as (pages: number) => number;
    (clock.imports['wasm-engine:preempt'] as Record<string, unknown>)['check'] = (pages: number): number => {
      asked++;
      return check(pages);
    };
    expect(run(module, bytes, 'big', ['100'], clock)).toBe('400000');
    // About 28,000 bytes of body per iteration, 875 fuel: 100 iterations ask the host 8 times;
    // counted as one tick each, they would never have asked.
    expect(asked).toBeGreaterThanOrEqual(8);
  });

  it('a bulk instruction larger than the clock allows stops the call before it runs', () => {
    const bytes = watText(`(module (memory 1 1024)
      (func (export "fill") (param $pages i32) (result i32)
        (drop (memory.grow (local.get $pages)))
        (memory.fill (i32.const 0) (i32.const 7) (i32.mul (local.get $pages) (i32.const 65536)))
        (i32.load8_u (i32.const 100))))`);
    const module = new wasm.Module(injected(bytes));
    const clock = new PreemptClock();
    clock.arm(Infinity, 256);
    expect(run(module, bytes, 'fill', ['16'], clock)).toBe('7');
    expect(clock.disarm()).toBeUndefined();
    clock.arm(Infinity, 256);
    expect(() => run(module, bytes, 'fill', ['512'], clock)).toThrow(/unreachable/);
    expect(clock.disarm()).toBe('bulk');
  });
});
