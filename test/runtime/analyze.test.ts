import { describe, expect, it } from 'vitest';
import { analyzeModule } from '../../src/runtime/index.js';
import { analyzed, engineError } from './support.js';

const refused = (name: string, message: RegExp, opts: { functionName?: string; wasiCap?: boolean; entrypoint?: string } = {}) =>
  engineError(() => analyzed(name, opts), 'INVALID_FUNCTION_IMAGE', message);

describe('analyzeModule: ABI detection', () => {
  it('detects a WASI command from its imports and _start', () => {
    expect(analyzed('wasi-hello')).toEqual({ abi: 'wasi', entrypoint: '_start', exports: ['memory', '_start'], wasiCap: true });
    expect(analyzed('wasi-hello', { wasiCap: true }).abi).toBe('wasi');
  });

  it('detects the string ABI: (i32, i32) -> (i32, i32) with memory and __heap_base exported', () => {
    expect(analyzed('string', { functionName: 'echo' })).toEqual({
      abi: 'string',
      entrypoint: 'echo',
      exports: ['memory', '__heap_base', 'echo', 'greet', 'wild', 'pages', 'big'],
      wasiCap: false,
    });
    expect(analyzed('string', { functionName: 'echo', wasiCap: false }).abi).toBe('string');
  });

  it('detects the numeric ABI, with parameter and result types', () => {
    expect(analyzed('numeric', { functionName: 'gcd' })).toMatchObject({
      abi: 'numeric',
      entrypoint: 'gcd',
      wasiCap: false,
      params: ['i32', 'i32'],
      results: ['i32'],
    });
    expect(analyzed('numeric', { functionName: 'divmod' })).toMatchObject({ params: ['i32', 'i32'], results: ['i32', 'i32'] });
    expect(analyzed('numeric', { functionName: 'noop' })).toMatchObject({ abi: 'numeric', params: [], results: [] });
  });

  it('takes the string-ABI signature as numeric without __heap_base', () => {
    expect(analyzed('string-no-heap-base', { functionName: 'pair' })).toMatchObject({ abi: 'numeric', results: ['i32', 'i32'] });
  });

  it('calls the deploy entrypoint instead of the function name', () => {
    expect(analyzed('numeric', { functionName: 'whatever', entrypoint: 'add64' })).toMatchObject({
      entrypoint: 'add64',
      params: ['i64', 'i64'],
    });
  });

  it('falls back to the only exported function when none is named like the function', () => {
    expect(analyzed('one-function', { functionName: 'answer' })).toMatchObject({ abi: 'numeric', entrypoint: 'only' });
  });

  it('treats a module with _start but no WASI imports as WASI only when asked', () => {
    expect(analyzed('wasi-plain-start')).toMatchObject({ abi: 'numeric', entrypoint: 'wasi-plain-start' });
    expect(analyzed('wasi-plain-start', { wasiCap: true })).toMatchObject({ abi: 'wasi', entrypoint: '_start' });
  });

  it('ignores entrypoint for a WASI command (it is always entered through _start)', () => {
    expect(analyzed('wasi-hello', { entrypoint: 'main' }).entrypoint).toBe('_start');
  });
});

describe('analyzeModule: refusals (422 INVALID_FUNCTION_IMAGE)', () => {
  it('a file that is not WebAssembly, or not a valid module', () => {
    engineError(() => analyzeModule(new TextEncoder().encode('#!/bin/sh\necho hi\n'), { functionName: 'f' }), 'INVALID_FUNCTION_IMAGE', /not a WebAssembly module/);
    const garbage = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...new TextEncoder().encode('garbage')]);
    engineError(() => analyzeModule(garbage, { functionName: 'f' }), 'INVALID_FUNCTION_IMAGE', /not a valid WebAssembly module: .+/);
  });

  it('a component', () => {
    const component = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    engineError(() => analyzeModule(component, { functionName: 'f' }), 'INVALID_FUNCTION_IMAGE', /components are not supported yet/);
  });

  it('wasi_cap true without _start, naming _start', () => {
    refused('numeric', /wasi_cap is true.*_start/, { functionName: 'gcd', wasiCap: true });
  });

  it('wasi_cap false for a module that imports WASI, saying so', () => {
    refused('wasi-hello', /wasi_cap is false but the module imports WASI \(wasi_snapshot_preview1\.fd_write\)/, { wasiCap: false });
  });

  it('a WASI module without _start (a reactor)', () => {
    refused('wasi-reactor', /imports WASI but does not export _start/);
  });

  it('a WASI module whose _start has parameters, or that exports no memory', () => {
    refused('wasi-start-type', /_start must have type \(\) -> \(\)/);
    refused('wasi-no-memory', /export its memory/);
  });

  it('a missing export, naming it and listing what there is', () => {
    refused('two-functions', /does not export a function named third.*first, second/, { functionName: 'third' });
    refused('numeric', /does not export a function named nope/, { functionName: 'gcd', entrypoint: 'nope' });
    // the single-function fallback does not apply when an entrypoint was named
    refused('one-function', /named missing/, { entrypoint: 'missing' });
  });

  it('an export of the right name that is not a function', () => {
    refused('two-functions', /a_global is a global, not a function/, { functionName: 'a_global' });
  });

  it('a signature no ABI can call', () => {
    refused('externref', /\(externref\) -> \(\).*fits no calling convention/);
  });

  it('imports the engine does not provide, naming each', () => {
    refused('import-env', /env\.launch_missiles \(function\), which the engine does not provide/);
    refused('import-memory', /env\.memory \(memory\)/);
    refused('import-table', /env\.table \(table\)/);
    refused('import-global', /env\.seed \(global\)/);
    refused('wasi-unknown-import', /wasi_snapshot_preview1\.launch_missiles .*not a wasi_snapshot_preview1 function/);
  });

  it('a WASI import of the wrong type, naming the import and both types', () => {
    refused('wasi-bad-signature', /fd_write \(function\) with type \(i32\) -> \(i32\).*\(i32, i32, i32, i32\) -> \(i32\)/);
  });

  it('accepts modules importing any preview1 function it answers with an errno', () => {
    expect(analyzed('wasi-deny').abi).toBe('wasi');
  });
});
