import { describe, expect, it } from 'vitest';
import { runInvocation } from '../../src/runtime/index.js';
import { analyzed, compile, engineError, request, wat } from './support.js';

describe('runInvocation: numeric ABI', () => {
  const module = compile(wat('numeric'));
  const call = (fn: string, args?: unknown): string => runInvocation(module, request(analyzed('numeric', { functionName: fn }), args)).output;

  it('calls with parsed arguments and prints the result', () => {
    expect(call('gcd', { a: '12', b: '18' })).toBe('6');
    expect(call('gcd', ['35', 14])).toBe('7');
  });

  it('accepts the whole i32 range, signed and unsigned, and prints signed', () => {
    expect(call('id32', ['4294967295'])).toBe('-1');
    expect(call('id32', ['-2147483648'])).toBe('-2147483648');
    expect(call('minus_one')).toBe('-1');
  });

  it('takes i64 as big integers', () => {
    expect(call('add64', ['9007199254740993', '1'])).toBe('9007199254740994');
    expect(call('add64', ['18446744073709551615', '0'])).toBe('-1');
  });

  it('takes floats as any JavaScript number text', () => {
    expect(call('mulf', ['1.5', '1e3'])).toBe('1500');
    expect(call('mulf', ['-Infinity', '2'])).toBe('-Infinity');
    expect(call('mulf', ['NaN', '2'])).toBe('NaN');
    expect(call('half', ['0.2'])).toBe(String(Math.fround(Math.fround(0.2) * 0.5)));
  });

  it('prints several results separated by one space, and none as empty', () => {
    expect(call('divmod', ['17', '5'])).toBe('3 2');
    expect(call('noop')).toBe('');
  });

  it('refuses a count mismatch or a non-number with INVALID_ARGS', () => {
    const gcd = analyzed('numeric', { functionName: 'gcd' });
    engineError(() => runInvocation(module, request(gcd, { a: '1' })), 'INVALID_ARGS', /gcd takes 2 arguments \(i32, i32\), got 1/);
    engineError(() => runInvocation(module, request(gcd, { a: '1', b: 'x' })), 'INVALID_ARGS', /^argument b of gcd is not a number: "x"$/);
    engineError(() => runInvocation(module, request(gcd, { 10: '1', b: 'x' })), 'INVALID_ARGS', /^argument b of gcd/);
    engineError(() => runInvocation(module, request(gcd, ['1.5', '2'])), 'INVALID_ARGS', /^argument 0 of gcd is not an integer \(i32\): "1.5"$/);
    engineError(() => runInvocation(module, request(gcd, ['4294967296', '2'])), 'INVALID_ARGS', /out of the i32 range/);
    engineError(() => runInvocation(module, request(gcd, ['', '2'])), 'INVALID_ARGS');
    const add64 = analyzed('numeric', { functionName: 'add64' });
    engineError(() => runInvocation(module, request(add64, ['18446744073709551616', '0'])), 'INVALID_ARGS', /i64 range/);
    const mulf = analyzed('numeric', { functionName: 'mulf' });
    engineError(() => runInvocation(module, request(mulf, ['abc', '1'])), 'INVALID_ARGS', /not a number/);
    engineError(() => runInvocation(module, request(mulf, [' ', '1'])), 'INVALID_ARGS', /not a number/);
  });
});

describe('runInvocation: string ABI', () => {
  const module = compile(wat('string'));
  const run = (fn: string, args?: unknown, maxOutputBytes?: number) =>
    runInvocation(module, request(analyzed('string', { functionName: fn }), args, maxOutputBytes ? { limits: { maxOutputBytes } } : {}));

  it('writes the compact JSON of args at __heap_base and reads the output back', () => {
    expect(run('echo', { name: 'wörld 😀', n: 3 }).output).toBe('{"name":"wörld 😀","n":"3"}');
    expect(run('echo').output).toBe('{}');
    expect(run('greet').output).toBe('hello, wasm');
  });

  it('grows memory by one page at least, and as far as the input needs', () => {
    expect(run('pages').output).toHaveLength(2);
    const big = 'x'.repeat(200_000);
    expect(run('echo', { big }).output).toBe(JSON.stringify({ big }));
    expect(run('pages', { big }).output).toHaveLength(Math.ceil((1024 + big.length + 10) / 65536));
  });

  it('refuses an out-of-range output with FUNCTION_FAILED', () => {
    engineError(() => run('wild'), 'FUNCTION_FAILED', /out-of-range output/);
  });

  it('refuses an output longer than max_output_bytes', () => {
    engineError(() => run('big', undefined, 1000), 'FUNCTION_FAILED', /output limit exceeded.*70000 bytes/);
    expect(run('big').output).toHaveLength(70000);
  });

  it('fails when the input cannot fit under the memory maximum', () => {
    const full = compile(wat('string-full'));
    engineError(
      () => runInvocation(full, request(analyzed('string-full', { functionName: 'echo' }), { a: 'b' })),
      'FUNCTION_FAILED',
      /does not fit/,
    );
  });
});

describe('runInvocation: traps are FUNCTION_FAILED naming the trap', () => {
  const module = compile(wat('traps'));
  const cases: [string, RegExp][] = [
    ['unreachable', /trapped: unreachable/],
    ['oob', /trapped: out-of-bounds memory access/],
    ['div0', /trapped: integer divide by zero/],
    ['overflow', /trapped: integer overflow/],
    ['trunc', /trapped: invalid conversion to integer/],
    ['mismatch', /trapped: indirect call type mismatch/],
    ['undefined_element', /trapped: undefined table element/],
    ['recurse', /trapped: stack overflow/],
  ];
  for (const [fn, message] of cases) {
    it(fn, () => {
      engineError(() => runInvocation(module, request(analyzed('traps', { functionName: fn }))), 'FUNCTION_FAILED', message);
    });
  }
});

describe('runInvocation: memory limit', () => {
  const grow = analyzed('grow', { functionName: 'grow' });

  it('memory.grow past memory_limit_mb returns -1, within it the old size', () => {
    const module = compile(wat('grow'), 1); // 1 MiB = 16 pages
    expect(runInvocation(module, request(grow, ['15'])).output).toBe('1');
    expect(runInvocation(module, request(grow, ['16'])).output).toBe('-1');
  });

  it('a smaller declared maximum still applies', () => {
    const module = compile(wat('grow-declared-max'), 128);
    const analysis = analyzed('grow-declared-max', { functionName: 'grow' });
    expect(runInvocation(module, request(analysis, ['2'])).output).toBe('1');
    expect(runInvocation(module, request(analysis, ['3'])).output).toBe('-1');
  });
});

describe('runInvocation: isolation', () => {
  it('every call sees the initial state (global and memory counters answer 1)', () => {
    const module = compile(wat('counter'));
    const analysis = analyzed('counter');
    const outputs = Array.from({ length: 5 }, () => runInvocation(module, request(analysis)).output);
    expect(outputs).toEqual(['1', '1', '1', '1', '1']);
  });

  it('reports how long the call took', () => {
    const result = runInvocation(compile(wat('numeric')), request(analyzed('numeric', { functionName: 'noop' })));
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect(result.stderr).toBe('');
  });
});
