/** The `wasm-engine` command line (SPEC §6) for all five operations against a running engine. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI } from '../support/fixtures.js';
import { CLI, startEngineProcess, type EngineProcess } from '../support/engine-process.js';

const run = promisify(execFile);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('wasm-engine CLI', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngineProcess();
  });
  afterAll(() => engine?.kill());

  it('deploys', async () => {
    const result = await cli('deploy', 'authentication', `oci:${join(EXAMPLES_OCI, 'authentication')}`, '--url', engine.url);
    expect(result).toMatchObject({ code: 0, stdout: 'deploy function authentication successfully!\n' });
    const wasi = await cli('deploy', 'fib', `oci:${join(EXAMPLES_OCI, 'fibonacci')}`, '--wasi', '--url', engine.url);
    expect(wasi.code, wasi.stderr).toBe(0);
  });

  it('lists as a table, and as JSON with --json', async () => {
    const table = await cli('list', '--url', engine.url);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+ABI\s+WASI\s+SIZE\s+IMAGE\n/);
    expect(table.stdout).toMatch(/authentication\s+string\s+false/);
    const json = await cli('list', '--json', '--url', engine.url);
    expect(JSON.parse(json.stdout).functions.map((f: { func_name: string }) => f.func_name)).toEqual(['authentication', 'fib']);
  });

  it('queries', async () => {
    const result = await cli('query', 'authentication', '--url', engine.url);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('func_name: authentication\n');
    expect(result.stdout).toMatch(/digest: sha256:[0-9a-f]{64}/);
  });

  it('invokes with k=v pairs and with positional values', async () => {
    const auth = await cli('invoke', 'authentication', 'arg_uri=yes', 'arg_body=yes', 'arg_secret=12345', '--url', engine.url);
    expect(auth.stdout).toContain('hash c5187dd86a648a819f527c7a8a4f7bf4 secret 12345');
    const fib = await cli('invoke', 'fib', '10', '--url', engine.url);
    expect(fib).toMatchObject({ code: 0, stdout: '55\n' });
  });

  it('deletes, then says no with exit code 1', async () => {
    expect(await cli('delete', 'fib', '--url', engine.url)).toMatchObject({ code: 0, stdout: 'delete function fib successfully!\n' });
    const again = await cli('delete', 'fib', '--url', engine.url);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('FUNCTION_NOT_FOUND');
  });

  it('exits 2 on a usage error and 1 when the engine cannot be reached', async () => {
    expect((await cli('deploy', 'only-a-name')).code).toBe(2);
    expect((await cli('frobnicate')).code).toBe(2);
    const unreachable = await cli('list', '--url', 'http://127.0.0.1:9');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('cannot reach the engine');
  });

  it('serve refuses a bad setting, naming it, with exit code 2', async () => {
    const result = await cli('serve', '--port', 'eighty');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('invalid setting --port="eighty"');
  });
});
