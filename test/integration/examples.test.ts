/**
 * The bundled examples — built from Rust and C by `npm run examples` — deployed with no registry at
 * all (oci: layouts and file: paths) and invoked through every ABI; plus the isolation check.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.js';
import { EXAMPLES_OCI, EXAMPLES_WASM, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';

const FORBIDDEN =
  '{"status":"403","body":"<html><h1>Auth Forbidden!</h1><p>hash c5187dd86a648a819f527c7a8a4f7bf4 secret 12345</p></html>"}';

describe('examples without a registry', () => {
  let engine: EngineProcess;
  const invoke = (name: string, args?: unknown) => call(engine.url, 'POST', '/function/invoke', { function_name: name, args }, { json: true });

  beforeAll(async () => {
    engine = await startEngineProcess();
    const images: Record<string, string> = {
      hello: `oci:${join(EXAMPLES_OCI, 'hello')}:latest`,
      fibonacci: `oci:${join(EXAMPLES_OCI, 'fibonacci')}`,
      authentication: `oci:${join(EXAMPLES_OCI, 'authentication')}`,
      'authentication-wasi': `file:${join(EXAMPLES_WASM, 'authentication-wasi.wasm')}`,
      'echo-string': `file:${join(EXAMPLES_WASM, 'echo-string.wasm')}`,
      'add-one': `oci:${join(EXAMPLES_OCI, 'add-one')}`,
      gcd: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`,
      counter: `file:${watFixture('integration', 'counter')}`,
    };
    for (const [name, image] of Object.entries(images)) {
      const answer = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image }, { json: true });
      expect(answer.status, answer.text).toBe(200);
    }
  });
  afterAll(() => engine?.kill());

  it('detects each ABI at deploy (wasi_cap omitted) and shows it', async () => {
    const list = await call(engine.url, 'GET', '/function/list', undefined, { json: true });
    const abis = Object.fromEntries(list.json.functions.map((f: { func_name: string; abi: string }) => [f.func_name, f.abi]));
    expect(abis).toEqual({
      'add-one': 'numeric',
      authentication: 'string',
      'authentication-wasi': 'wasi',
      counter: 'numeric',
      'echo-string': 'string',
      fibonacci: 'wasi',
      gcd: 'numeric',
      hello: 'wasi',
    });
  });

  it('hello prints Hello, Budda!', async () => {
    expect((await invoke('hello')).json).toEqual({ status: 200, message: 'Hello, Budda!', output: 'Hello, Budda!' });
  });

  it('fibonacci takes a positional argument, as an array or "0"-keyed object', async () => {
    expect((await invoke('fibonacci', ['10'])).json.output).toBe('55');
    expect((await invoke('fibonacci', { 0: '20' })).json.output).toBe('6765');
  });

  it('authentication and authentication-wasi give the same answer', async () => {
    const args = { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' };
    expect((await invoke('authentication', args)).json.output).toBe(FORBIDDEN);
    expect((await invoke('authentication-wasi', args)).json.output).toBe(FORBIDDEN);
  });

  it('echo-string returns its input plus b', async () => {
    expect((await invoke('echo-string', { a: 'x' })).json.output).toBe('{"a":"x"}b');
  });

  it('numeric ABI: add-one and gcd, numbers given as JSON numbers or strings', async () => {
    expect((await invoke('add-one', { n: 41 })).json.output).toBe('42');
    expect((await invoke('gcd', { a: '12', b: 18 })).json.output).toBe('6');
    expect((await invoke('add-one', { n: -1 })).json.output).toBe('0');
  });

  it('isolation: a module that counts its calls answers 1 every time, even concurrently', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => invoke('counter')));
    expect(answers.map((a) => a.json.output)).toEqual(Array(20).fill('1'));
  });
});
