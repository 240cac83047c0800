import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseLogLevel } from '../../src/config/log-level.js';
import { resolveConfig } from '../../src/config/settings.js';

describe('resolveConfig', () => {
  it('defaults to port 10000 on 127.0.0.1 with the SPEC limits', () => {
    const config = resolveConfig({}, { WASM_ENGINE_DATA_DIR: '/tmp/x' });
    expect(config).toMatchObject({
      port: 10000,
      host: '127.0.0.1',
      dataDir: '/tmp/x',
      timeoutMs: 10_000,
      memoryLimitMb: 128,
      maxOutputBytes: 4 * 1024 * 1024,
      logLevel: 'info',
    });
    expect(config.workers).toBeGreaterThan(0);
  });

  it('lets flags win over environment variables', () => {
    const config = resolveConfig({ port: '8080' }, { WASM_ENGINE_PORT: '9090', WASM_ENGINE_HOST: '::1' });
    expect(config.port).toBe(8080);
    expect(config.host).toBe('::1');
  });

  it.each([
    [{ port: '70000' }, {}, 'invalid setting --port="70000": expected an integer from 0 to 65535'],
    [{}, { WASM_ENGINE_PORT: 'abc' }, 'invalid setting WASM_ENGINE_PORT="abc"'],
    [{ 'timeout-ms': '0' }, {}, 'invalid setting --timeout-ms="0"'],
    [{ 'memory-limit-mb': '1.5' }, {}, 'invalid setting --memory-limit-mb="1.5"'],
    [{ workers: '-1' }, {}, 'invalid setting --workers="-1"'],
    [{ 'http-threads': '65' }, {}, 'invalid setting --http-threads="65": expected an integer from 0 to 64'],
    [{}, { WASM_ENGINE_HTTP_THREADS: '-1' }, 'invalid setting WASM_ENGINE_HTTP_THREADS="-1": expected an integer from 0 to 64'],
    [{ host: ' ' }, {}, 'invalid setting --host=" ": expected a non-empty value'],
    [{}, { LOG_LEVEL: 'loud' }, 'invalid setting LOG_LEVEL="loud"'],
    [{ colour: 'red' }, {}, 'unknown setting --colour'],
    [{ 'local-images': 'maybe' }, {}, 'invalid setting --local-images="maybe": expected auto, allow or deny'],
    [{ 'max-image-bytes': '10' }, {}, 'invalid setting --max-image-bytes="10": expected an integer from 1024 to 68719476736'],
    [{}, { WASM_ENGINE_MAX_IMAGE_BYTES: 'lots' }, 'invalid setting WASM_ENGINE_MAX_IMAGE_BYTES="lots"'],
    [{ 'registry-connect-timeout-ms': '0' }, {}, 'invalid setting --registry-connect-timeout-ms="0": expected an integer from 1 to 600000'],
    [{}, { WASM_ENGINE_REGISTRY_TIMEOUT_MS: '-5' }, 'invalid setting WASM_ENGINE_REGISTRY_TIMEOUT_MS="-5": expected an integer from 1 to 3600000'],
    [{ 'registry-retries': '11' }, {}, 'invalid setting --registry-retries="11": expected an integer from 0 to 10'],
    [{ 'registry-credentials': '/no/such/credentials.json' }, {}, 'invalid setting --registry-credentials="/no/such/credentials.json": no such file'],
    [{ 'docker-config': '/no/such/docker' }, {}, 'invalid setting --docker-config="/no/such/docker": no such file or directory'],
    [{}, { WASM_ENGINE_DOCKER_CONFIG: '/no/such/docker' }, 'invalid setting WASM_ENGINE_DOCKER_CONFIG="/no/such/docker"'],
  ])('names the bad setting: %o %o', (flags, env, message) => {
    expect(() => resolveConfig(flags, env)).toThrow(message);
  });

  it('registry settings: defaults, Docker\'s own DOCKER_CONFIG, and files checked at start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'we-settings-'));
    try {
      const config = resolveConfig({}, { HOME: '/home/x' });
      expect(config).toMatchObject({ maxImageBytes: 256 * 1024 * 1024, registryConnectTimeoutMs: 5000, registryTimeoutMs: 60_000, registryRetries: 3, registryCredentials: null });
      expect(config.dockerConfig).toMatch(/\.docker\/config\.json$/);
      expect(resolveConfig({ 'docker-config': 'none' }, {}).dockerConfig).toBeNull();
      // DOCKER_CONFIG names a directory, which `docker login` may not have filled yet.
      expect(resolveConfig({}, { DOCKER_CONFIG: join(dir, 'later') }).dockerConfig).toBe(join(dir, 'later', 'config.json'));
      expect(resolveConfig({ 'docker-config': dir }, {}).dockerConfig).toBe(join(dir, 'config.json'));

      const good = join(dir, 'good.json');
      writeFileSync(good, JSON.stringify({ auths: { 'reg.example': { auth: Buffer.from('u:topsecret').toString('base64') } } }));
      const credentials = resolveConfig({ 'registry-credentials': good }, {}).registryCredentials;
      expect(credentials?.data.auths['reg.example']).toBeDefined();
      // Serialising the configuration (a log line, say) shows the file, not the secrets.
      expect(JSON.stringify({ credentials })).toBe(JSON.stringify({ credentials: good }));

      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"auths": []}');
      expect(() => resolveConfig({ 'registry-credentials': bad }, {})).toThrow(
        `invalid setting --registry-credentials="${bad}": expected a Docker config.json-style file, but "auths" is not an object`,
      );
      writeFileSync(join(dir, 'config.json'), '{not json');
      expect(() => resolveConfig({}, { WASM_ENGINE_DOCKER_CONFIG: dir })).toThrow(`invalid setting WASM_ENGINE_DOCKER_CONFIG="${dir}": expected a Docker config.json-style file, but it is not valid JSON`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('store: file by default, a postgresql:// URL from the flag or WASM_ENGINE_STORE, anything else refused without echoing a password', () => {
    const base = { WASM_ENGINE_DATA_DIR: '/tmp/x' };
    const defaults = resolveConfig({}, base);
    expect(defaults.store).toBe('file');
    expect(defaults.nodeName.length).toBeGreaterThan(0);
    expect(defaults.storeTimeoutMs).toBe(10_000);
    expect(resolveConfig({}, { ...base, WASM_ENGINE_STORE: 'postgresql://w:s@db:5432/wasm' }).store).toBe('postgresql://w:s@db:5432/wasm');
    expect(resolveConfig({ store: 'postgres://db/wasm', 'node-name': 'n1' }, base)).toMatchObject({ store: 'postgres://db/wasm', nodeName: 'n1' });
    expect(() => resolveConfig({ store: 'mysql://w:secret@db/wasm' }, base)).toThrow(/invalid setting --store=.*expected file or a postgresql:/);
    expect(() => resolveConfig({ store: 'mysql://w:secret@db/wasm' }, base)).not.toThrow(/secret/);
  });

  it('splits the insecure registry list', () => {
    expect(resolveConfig({}, { WASM_ENGINE_INSECURE_REGISTRIES: 'a:5000, b ,' }).insecureRegistries).toEqual(['a:5000', 'b']);
  });
});

describe('parseLogLevel', () => {
  it.each([
    ['debug', 'debug'],
    ['wasm_engine=debug', 'debug'],
    ['hyper=warn,wasm_engine=trace', 'trace'],
    ['warn,hyper=trace', 'warn'],
    ['hyper=trace', 'info'],
    ['WARNING', 'warn'],
  ])('%s → %s', (raw, level) => {
    expect(parseLogLevel(raw, 'RUST_LOG')).toBe(level);
  });

  it('prefers LOG_LEVEL over RUST_LOG', () => {
    expect(resolveConfig({}, { LOG_LEVEL: 'error', RUST_LOG: 'wasm_engine=debug' }).logLevel).toBe('error');
  });
});
