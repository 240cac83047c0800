/**
 * `serve --config FILE` and WASM_ENGINE_CONFIG as a user runs them: settings from a YAML or JSON
 * file, Basic auth from the settings or an OpenFaaS-style secrets directory, and a bad setting
 * stopping start-up with a message that names it.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { startEngineProcess } from '../support/engine-process.js';

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function status(url: string, authorization?: string): Promise<number> {
  const answer = await request(url, authorization ? { headers: { authorization } } : {});
  await answer.body.dump();
  return answer.statusCode;
}

describe('configuration file and Basic auth, end to end', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-config-run-'));
  });

  it('takes its settings from a YAML file given with --config', async () => {
    const file = join(dir, 'engine.yaml');
    await writeFile(file, ['# WasmEngine settings', 'workers: 1', 'basic-auth-user: admin', 'basic-auth-password: "s3cret"', ''].join('\n'));
    const engine = await startEngineProcess({ args: ['--config', file] });
    try {
      expect(await status(`${engine.url}/system/functions`)).toBe(401);
      expect(await status(`${engine.url}/system/functions`, basic('admin', 's3cret'))).toBe(200);
      const metrics = await request(`${engine.url}/metrics`);
      // Every metric carries the engine's node name (--node-name, default the host name).
      expect(await metrics.body.text()).toMatch(/^wasm_engine_workers\{node="[^"]+"\} 1$/m);
    } finally {
      await engine.kill();
    }
  });

  it('reads WASM_ENGINE_CONFIG (JSON) and the credentials from a secrets directory', async () => {
    const secrets = join(dir, 'secrets');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(secrets, { recursive: true });
    await writeFile(join(secrets, 'basic-auth-user'), 'ops\n');
    await writeFile(join(secrets, 'basic-auth-password'), 'pa55\n');
    const file = join(dir, 'engine.json');
    await writeFile(file, JSON.stringify({ 'secret-mount-path': secrets }));
    const engine = await startEngineProcess({ env: { WASM_ENGINE_CONFIG: file } });
    try {
      expect(await status(`${engine.url}/function/list`)).toBe(401);
      expect(await status(`${engine.url}/function/list`, basic('ops', 'pa55'))).toBe(200);
      expect(await status(`${engine.url}/healthz`)).toBe(200);
    } finally {
      await engine.kill();
    }
  });

  it.each([
    ['bad-timeout.yaml', 'timeout-ms: lots\n', /invalid setting .*bad-timeout\.yaml: timeout-ms="lots": expected an integer/],
    ['typo.yaml', 'wokers: 2\n', /unknown setting wokers in .*typo\.yaml/],
    ['half-auth.yaml', 'basic-auth-user: admin\n', /invalid setting --basic-auth-password/],
  ])('a bad setting in %s stops start-up with exit 2, naming it', async (name, text, message) => {
    const file = join(dir, name);
    await writeFile(file, text);
    const failure = await startEngineProcess({ args: ['--config', file] }).then(
      async (engine) => {
        await engine.kill();
        return new Error('the engine started');
      },
      (err: Error) => err,
    );
    expect(failure.message).toMatch(/engine exited with 2 before listening/);
    expect(failure.message).toMatch(message);
  });
});
