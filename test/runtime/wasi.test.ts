import { describe, expect, it } from 'vitest';
import { runInvocation } from '../../src/runtime/index.js';
import { Errno } from '../../src/runtime/wasi/constants.js';
import { WasiHost, type WasiOptions } from '../../src/runtime/wasi/host.js';
import { WASI_SIGNATURES } from '../../src/runtime/wasi/signatures.js';
import { wasm } from '../../src/runtime/wasm-api.js';
import { analyzed, compile, engineError, request, wat } from './support.js';

const runWat = (name: string, args?: unknown, extra: Parameters<typeof request>[2] = {}) =>
  runInvocation(compile(wat(name)), request(analyzed(name), args, extra));

describe('WASI commands', () => {
  it('output is stdout with one trailing newline removed; proc_exit(0) is success', () => {
    const result = runWat('wasi-hello');
    expect(result.output).toBe('hello');
    expect(result.stderr).toBe('');
  });

  it('argv is exactly one string, the JSON text of args, with no program name', () => {
    expect(runWat('wasi-args', { user: 'alice', n: 2 }).output).toBe('1{"user":"alice","n":"2"}\0');
    expect(runWat('wasi-args').output).toBe('1{}\0');
  });

  it('argv is the values themselves for positional args', () => {
    expect(runWat('wasi-args', ['10', 'zwölf']).output).toBe('210\0zwölf\0');
    expect(runWat('wasi-args', { 0: 'a', 1: 'b', 2: 'c' }).output).toBe('3a\0b\0c\0');
    expect(runWat('wasi-args', []).output).toBe('0');
  });

  it('the environment is the configured env only', () => {
    expect(runWat('wasi-env').output).toBe('0');
    expect(runWat('wasi-env', undefined, { env: { GREETING: 'hi', EMPTY: '' } }).output).toBe('2GREETING=hi\0EMPTY=\0');
  });

  it('stdin is empty by default, else the given bytes', () => {
    expect(runWat('wasi-stdin').output).toBe('');
    expect(runWat('wasi-stdin', undefined, { stdin: new TextEncoder().encode('raw body\n\n') }).output).toBe('raw body\n');
  });

  it('a non-zero exit is FUNCTION_FAILED with the exit code and stderr', () => {
    engineError(() => runWat('wasi-exit'), 'FUNCTION_FAILED', /exit code 3; stderr: something bad happened$/);
  });

  it('keeps only the last KiB of stderr in the message', () => {
    const err = engineError(() => runWat('wasi-stderr-flood'), 'FUNCTION_FAILED', /exit code 1; stderr: a+b{1000}$/);
    expect(err.message.match(/a/g)?.length).toBe(24);
  });

  it('a trap is FUNCTION_FAILED naming the trap, with the stderr tail', () => {
    engineError(() => runWat('wasi-trap'), 'FUNCTION_FAILED', /trapped: unreachable; stderr: thread 'main' panicked at src\/main\.rs$/);
  });

  it('an exit the guest tries to catch still ends the invocation', () => {
    engineError(() => runWat('wasi-catch-exit'), 'FUNCTION_FAILED', /exit code 7/);
  });

  it('files, directories, sockets and unknown fds are denied with WASI errnos', () => {
    // path_open ×2, no preopen, fd_write/fd_read on unknown fds, fd_seek on stdout, sock_accept,
    // path_unlink_file, proc_raise, a bad pointer, fd_close on an unknown fd, fd_readdir
    expect(runWat('wasi-deny').output).toBe('76 76 08 08 08 70 08 76 52 21 08 08 ');
  });

  it('stops a stdout flood at max_output_bytes', () => {
    engineError(
      () => runWat('wasi-flood', undefined, { limits: { maxOutputBytes: 100_000 } }),
      'FUNCTION_FAILED',
      /output limit exceeded: .*more than 100000 bytes/,
    );
  });
});

/** A host over a fresh one-page memory, for calling preview1 functions directly. */
function host(options: Partial<WasiOptions> = {}) {
  const memory = new wasm.Memory({ initial: 1 });
  const h = new WasiHost({ args: [], env: {}, stdin: new Uint8Array(0), maxOutputBytes: 1 << 20, ...options });
  h.attach(memory);
  const view = () => new DataView(memory.buffer);
  const call = (name: keyof typeof WASI_SIGNATURES, ...args: (number | bigint)[]): number =>
    (h.imports[name] as (...a: (number | bigint)[]) => number)(...args);
  return { h, view, call, bytes: () => new Uint8Array(memory.buffer) };
}

describe('WasiHost', () => {
  it('provides every preview1 function', () => {
    expect(Object.keys(host().h.imports).sort()).toEqual(Object.keys(WASI_SIGNATURES).sort());
  });

  it('lays out argv as pointers into one NUL-separated buffer', () => {
    const { call, view, bytes } = host({ args: ['ab', 'c'] });
    expect(call('args_sizes_get', 0, 4)).toBe(Errno.SUCCESS);
    expect([view().getUint32(0, true), view().getUint32(4, true)]).toEqual([2, 5]);
    expect(call('args_get', 100, 200)).toBe(Errno.SUCCESS);
    expect([view().getUint32(100, true), view().getUint32(104, true)]).toEqual([200, 203]);
    expect([...bytes().subarray(200, 205)]).toEqual([97, 98, 0, 99, 0]);
  });

  it('answers EFAULT for pointers outside memory', () => {
    const { call } = host({ args: ['x'] });
    expect(call('args_get', 65_535, 0)).toBe(Errno.FAULT);
    expect(call('random_get', 65_000, 1000)).toBe(Errno.FAULT);
    expect(call('clock_time_get', 0, 0n, -4)).toBe(Errno.FAULT);
  });

  it('reads the clocks; realtime is near Date.now(); an unknown clock is EINVAL', () => {
    const { call, view } = host();
    expect(call('clock_time_get', 0, 0n, 8)).toBe(Errno.SUCCESS);
    const realtimeMs = Number(view().getBigUint64(8, true) / 1_000_000n);
    expect(Math.abs(realtimeMs - Date.now())).toBeLessThan(5_000);
    for (const id of [1, 2, 3]) expect(call('clock_time_get', id, 0n, 8)).toBe(Errno.SUCCESS);
    expect(call('clock_res_get', 1, 8)).toBe(Errno.SUCCESS);
    expect(view().getBigUint64(8, true)).toBeGreaterThan(0n);
    expect(call('clock_time_get', 9, 0n, 8)).toBe(Errno.INVAL);
  });

  it('fills random bytes', () => {
    const { call, bytes } = host();
    expect(call('random_get', 0, 64)).toBe(Errno.SUCCESS);
    expect(bytes().subarray(0, 64).some((b) => b !== 0)).toBe(true);
  });

  it('poll_oneoff sleeps on a relative clock subscription', () => {
    const { call, view } = host();
    const v = view();
    v.setBigUint64(0, 42n, true); // userdata
    v.setUint8(8, 0); // clock
    v.setUint32(16, 1, true); // monotonic
    v.setBigUint64(24, 30_000_000n, true); // 30 ms
    const started = performance.now();
    expect(call('poll_oneoff', 0, 100, 1, 200)).toBe(Errno.SUCCESS);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(view().getUint32(200, true)).toBe(1);
    expect(view().getBigUint64(100, true)).toBe(42n);
    expect(view().getUint16(108, true)).toBe(Errno.SUCCESS);
    expect(call('poll_oneoff', 0, 100, 0, 200)).toBe(Errno.INVAL);
  });

  it('fdstat and filestat for the standard streams only; no preopened directory', () => {
    const { call, view } = host();
    expect(call('fd_fdstat_get', 1, 0)).toBe(Errno.SUCCESS);
    expect(view().getBigUint64(8, true) & (1n << 6n)).toBe(1n << 6n); // FD_WRITE
    expect(call('fd_fdstat_get', 3, 0)).toBe(Errno.BADF);
    expect(call('fd_filestat_get', 0, 0)).toBe(Errno.SUCCESS);
    expect(call('fd_prestat_get', 3, 0)).toBe(Errno.BADF);
    expect(call('path_open', 3, 0, 0, 0, 0, 0n, 0n, 0, 0)).toBe(Errno.NOTCAPABLE);
    expect(call('fd_close', 1)).toBe(Errno.SUCCESS);
    expect(call('fd_close', 1)).toBe(Errno.BADF);
    expect(call('fd_write', 1, 0, 0, 8)).toBe(Errno.BADF);
  });

  it('records proc_exit and unwinds every later call too', () => {
    const { h, call } = host();
    expect(() => call('proc_exit', 4)).toThrow();
    expect(h.exitCode).toBe(4);
    expect(() => call('sched_yield')).toThrow();
  });
});
