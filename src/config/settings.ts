/**
 * Every engine setting, read once at start from flags and environment (flags win) and checked, with
 * messages that name the bad setting. The table below is the single list the README documents.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import { parseLogLevel, type LogLevel } from './log-level.js';

export interface EngineConfig {
  port: number;
  host: string;
  dataDir: string;
  logLevel: LogLevel;
  timeoutMs: number;
  memoryLimitMb: number;
  maxOutputBytes: number;
  workers: number;
  maxQueue: number;
  bodyLimitBytes: number;
  insecureRegistries: string[];
  shutdownTimeoutMs: number;
}

type Parser<T> = (raw: string, setting: string) => T;

interface Setting<K extends keyof EngineConfig> {
  key: K;
  flag: string;
  env: string[];
  parse: Parser<EngineConfig[K]>;
  default: () => EngineConfig[K];
}

function invalid(setting: string, raw: string, expected: string): EngineError {
  return new EngineError('INVALID_REQUEST', `invalid setting ${setting}=${JSON.stringify(raw)}: expected ${expected}`);
}

const integer =
  (min: number, max: number): Parser<number> =>
  (raw, setting) => {
    const n = Number(raw);
    if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw invalid(setting, raw, `an integer from ${min} to ${max}`);
    }
    return n;
  };

const text: Parser<string> = (raw, setting) => {
  if (raw.trim() === '') throw invalid(setting, raw, 'a non-empty value');
  return raw.trim();
};

const list: Parser<string[]> = (raw) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/** /var/lib/wasmengine when usable (the historical path), else a per-user directory. */
export function defaultDataDir(): string {
  const system = '/var/lib/wasmengine';
  const usable = (dir: string): boolean => {
    try {
      accessSync(dir, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (existsSync(system) ? usable(system) : usable('/var/lib')) return system;
  const base = process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share');
  return join(base, 'wasmengine');
}

const MiB = 1024 * 1024;

export const SETTINGS: { [K in keyof EngineConfig]: Setting<K> } = {
  port: { key: 'port', flag: 'port', env: ['WASM_ENGINE_PORT'], parse: integer(0, 65535), default: () => 10000 },
  host: { key: 'host', flag: 'host', env: ['WASM_ENGINE_HOST'], parse: text, default: () => '127.0.0.1' },
  dataDir: { key: 'dataDir', flag: 'data-dir', env: ['WASM_ENGINE_DATA_DIR'], parse: text, default: defaultDataDir },
  logLevel: {
    key: 'logLevel',
    flag: 'log-level',
    env: ['LOG_LEVEL', 'RUST_LOG'],
    parse: parseLogLevel,
    default: () => 'info',
  },
  timeoutMs: {
    key: 'timeoutMs',
    flag: 'timeout-ms',
    env: ['WASM_ENGINE_TIMEOUT_MS'],
    parse: integer(1, 3_600_000),
    default: () => 10_000,
  },
  memoryLimitMb: {
    key: 'memoryLimitMb',
    flag: 'memory-limit-mb',
    env: ['WASM_ENGINE_MEMORY_LIMIT_MB'],
    parse: integer(1, 4096),
    default: () => 128,
  },
  maxOutputBytes: {
    key: 'maxOutputBytes',
    flag: 'max-output-bytes',
    env: ['WASM_ENGINE_MAX_OUTPUT_BYTES'],
    parse: integer(1, 1024 * MiB),
    default: () => 4 * MiB,
  },
  workers: {
    key: 'workers',
    flag: 'workers',
    env: ['WASM_ENGINE_WORKERS'],
    parse: integer(1, 1024),
    default: () => availableParallelism(),
  },
  maxQueue: {
    key: 'maxQueue',
    flag: 'max-queue',
    env: ['WASM_ENGINE_MAX_QUEUE'],
    parse: integer(0, 1_000_000),
    default: () => 1024,
  },
  bodyLimitBytes: {
    key: 'bodyLimitBytes',
    flag: 'body-limit-bytes',
    env: ['WASM_ENGINE_BODY_LIMIT_BYTES'],
    parse: integer(1024, 1024 * MiB),
    default: () => MiB,
  },
  insecureRegistries: {
    key: 'insecureRegistries',
    flag: 'insecure-registries',
    env: ['WASM_ENGINE_INSECURE_REGISTRIES'],
    parse: list,
    default: () => [],
  },
  shutdownTimeoutMs: {
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout-ms',
    env: ['WASM_ENGINE_SHUTDOWN_TIMEOUT_MS'],
    parse: integer(0, 600_000),
    default: () => 10_000,
  },
};

/**
 * Resolves the configuration: for each setting the flag if given, else the first environment
 * variable set, else the default. `flags` maps flag names (without `--`) to their raw text.
 */
export function resolveConfig(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): EngineConfig {
  const known = new Set(Object.values(SETTINGS).map((s) => s.flag));
  for (const name of Object.keys(flags)) {
    if (!known.has(name)) throw new EngineError('INVALID_REQUEST', `unknown setting --${name}`);
  }
  const pick = <K extends keyof EngineConfig>(setting: Setting<K>): EngineConfig[K] => {
    const flag = flags[setting.flag];
    if (flag !== undefined) return setting.parse(flag, `--${setting.flag}`);
    for (const name of setting.env) {
      const value = env[name];
      if (value !== undefined && value !== '') return setting.parse(value, name);
    }
    return setting.default();
  };
  const config = {} as Record<keyof EngineConfig, unknown>;
  for (const key of Object.keys(SETTINGS) as (keyof EngineConfig)[]) {
    config[key] = pick(SETTINGS[key] as Setting<typeof key>);
  }
  return config as EngineConfig;
}
