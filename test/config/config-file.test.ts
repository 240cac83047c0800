import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config-file.js';
import { basicAuthCredentials } from '../../src/config/credentials.js';
import { SETTINGS } from '../../src/config/settings.js';

describe('configuration file', () => {
  let dir: string;
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-config-'));
  });

  it('reads YAML with flag names as keys, lists as sequences', async () => {
    const path = await file(
      'a.yaml',
      'port: 8081\ndata-dir: /tmp/d\ninsecure-registries: [a:5000, b]\nauth-invoke: false\nfunction-log-lines: 50\n',
    );
    const config = loadConfig({ config: path }, {});
    expect(config).toMatchObject({ port: 8081, dataDir: '/tmp/d', insecureRegistries: ['a:5000', 'b'], authInvoke: false, functionLogLines: 50 });
  });

  it('reads JSON, camelCase keys too, from WASM_ENGINE_CONFIG', async () => {
    const path = await file('a.json', JSON.stringify({ timeoutMs: 1234, 'max-queue': 7 }));
    const config = loadConfig({}, { WASM_ENGINE_CONFIG: path, WASM_ENGINE_DATA_DIR: '/tmp/x' });
    expect(config).toMatchObject({ timeoutMs: 1234, maxQueue: 7 });
  });

  it('flags win over environment, which wins over the file', async () => {
    const path = await file('p.yaml', 'port: 1\nhost: 10.0.0.1\nworkers: 3\n');
    const config = loadConfig({ config: path, port: '2' }, { WASM_ENGINE_HOST: '::1' });
    expect(config).toMatchObject({ port: 2, host: '::1', workers: 3 });
  });

  it('every setting can be set from a file', async () => {
    expect(Object.keys(SETTINGS).length).toBeGreaterThan(15);
    for (const setting of Object.values(SETTINGS)) {
      expect(setting.flag).toMatch(/^[a-z][a-z-]+$/);
    }
  });

  it.each([
    ['bad.yaml', 'port: lots\n', /invalid setting .*bad\.yaml: port="lots": expected an integer/],
    ['unknown.yaml', 'prot: 1\n', /unknown setting prot in .*unknown\.yaml/],
    ['nested.yaml', 'port:\n  a: 1\n', /nested\.yaml: port: expected a string, number, boolean or list/],
    ['list.yaml', '- a\n- b\n', /invalid setting --config=.*list\.yaml.*expected a mapping/],
    ['broken.json', '{"port": ', /invalid setting --config=.*broken\.json.*not valid JSON or YAML/],
    ['bool.yaml', 'auth-invoke: maybe\n', /auth-invoke="maybe": expected true or false/],
  ])('a bad file %s stops start-up naming the setting', async (name, text, message) => {
    const path = await file(name, text);
    expect(() => loadConfig({ config: path }, {})).toThrow(message);
  });

  it('a missing file is named with the setting that named it', () => {
    expect(() => loadConfig({}, { WASM_ENGINE_CONFIG: join(dir, 'nope.yaml') })).toThrow(/invalid setting WASM_ENGINE_CONFIG=.*nope\.yaml.*ENOENT/);
  });
});

describe('Basic auth credentials', () => {
  const off = { basicAuthUser: '', basicAuthPassword: '', secretMountPath: '', authInvoke: false };

  it('are off by default', () => {
    expect(basicAuthCredentials(off)).toBeUndefined();
  });

  it('come from the settings', () => {
    expect(basicAuthCredentials({ ...off, basicAuthUser: 'admin', basicAuthPassword: 'pw' })).toEqual({ user: 'admin', password: 'pw' });
  });

  it('come from an OpenFaaS-style secrets directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'we-secrets-'));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'basic-auth-user'), 'admin\n');
    await writeFile(join(dir, 'basic-auth-password'), 's3cret\n');
    expect(basicAuthCredentials({ ...off, secretMountPath: dir })).toEqual({ user: 'admin', password: 's3cret' });
  });

  it.each([
    [{ basicAuthUser: 'admin' }, /--basic-auth-password/],
    [{ basicAuthPassword: 'pw' }, /--basic-auth-user/],
    [{ authInvoke: true }, /--auth-invoke/],
    [{ secretMountPath: '/nonexistent-we' }, /--secret-mount-path=.*basic-auth-user/],
    [{ secretMountPath: '/tmp', basicAuthUser: 'a', basicAuthPassword: 'b' }, /--secret-mount-path/],
  ])('name the bad setting: %o', (settings, message) => {
    expect(() => basicAuthCredentials({ ...off, ...settings })).toThrow(message);
  });
});
