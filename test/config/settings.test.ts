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
    [{ host: ' ' }, {}, 'invalid setting --host=" ": expected a non-empty value'],
    [{}, { LOG_LEVEL: 'loud' }, 'invalid setting LOG_LEVEL="loud"'],
    [{ colour: 'red' }, {}, 'unknown setting --colour'],
  ])('names the bad setting: %o %o', (flags, env, message) => {
    expect(() => resolveConfig(flags, env)).toThrow(message);
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
