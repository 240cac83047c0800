/**
 * The WASI host under a real libc: a C program compiled with clang against Debian's wasi-libc
 * (installed by scripts/ensure-tools.sh). Skipped only when clang or the sysroot is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeModule, runInvocation } from '../../src/runtime/index.js';
import { REPO_ROOT, compile, engineError, request } from './support.js';

function buildProbe(): Uint8Array | undefined {
  if (!existsSync('/usr/include/wasm32-wasi/stdio.h')) return undefined;
  const out = join(REPO_ROOT, 'test', '.fixtures', 'runtime-libc-probe.wasm');
  mkdirSync(join(REPO_ROOT, 'test', '.fixtures'), { recursive: true });
  try {
    execFileSync('clang', ['--target=wasm32-wasi', '--sysroot=/usr', '-O2', join(REPO_ROOT, 'test', 'runtime', 'fixtures', 'libc-probe.c'), '-o', out], {
      stdio: 'pipe',
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return new Uint8Array(readFileSync(out));
}

const probe = buildProbe();

describe.skipIf(!probe)('WASI under wasi-libc', () => {
  const bytes = probe as Uint8Array;
  const analysis = () => analyzeModule(bytes, { functionName: 'libc-probe' });
  const run = (args?: unknown, extra: Parameters<typeof request>[2] = {}) => runInvocation(compile(bytes), request(analysis(), args, extra));

  it('is detected as a WASI command', () => {
    expect(analysis()).toMatchObject({ abi: 'wasi', entrypoint: '_start' });
  });

  it('sees argv, the configured environment only, the clocks, stdin; no file or directory', () => {
    const result = run(['a', 'b c'], { env: { GREETING: 'hello' }, stdin: new TextEncoder().encode('from stdin') });
    expect(result.output.split('\n')).toEqual([
      'argc=2',
      'argv[0]=a',
      'argv[1]=b c',
      'GREETING=hello',
      'PATH=(unset)',
      'fopen=denied errno=76',
      'opendir=denied',
      'slept>=20ms=yes',
      'time>2020=yes',
      'stdin=from stdin',
    ]);
    expect(result.stderr).toBe('done\n');
  });

  it('gets the JSON text of named args as its only argument', () => {
    expect(run({ user: 'alice' }).output).toMatch(/^argc=1\nargv\[0\]=\{"user":"alice"\}\n/);
  });

  it('a non-zero exit status is FUNCTION_FAILED with the code and stderr', () => {
    engineError(() => run(['fail']), 'FUNCTION_FAILED', /exit code 4; stderr: failing on purpose$/);
  });

  it('an endless printf loop is stopped by max_output_bytes', () => {
    engineError(() => run(['flood'], { limits: { maxOutputBytes: 64 * 1024 } }), 'FUNCTION_FAILED', /output limit exceeded/);
  });
});
