/**
 * Every engine setting, read once at start from flags and environment (flags win) and checked, with
 * messages that name the bad setting. The table below is the single list the README documents.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { availableParallelism, homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { MAX_OUTPUT_BYTES } from '../core/engine.js';
import { EngineError } from '../errors.js';
import { parseLogLevel, type LogLevel } from './log-level.js';
import {
  defaultDockerConfig,
  parseDockerConfigSetting,
  parseRegistryCredentials,
  type RegistryCredentialsFile,
} from './registry-settings.js';

/** Whether deploys may name `file:` and `oci:` sources: `auto` allows them on a loopback bind only. */
export type LocalImagesSetting = 'auto' | 'allow' | 'deny';

export interface EngineConfig {
  port: number;
  host: string;
  dataDir: string;
  logLevel: LogLevel;
  timeoutMs: number;
  memoryLimitMb: number;
  maxOutputBytes: number;
  workers: number;
  httpThreads: number;
  workerHeapMb: number;
  inlineBudgetMs: number;
  inlineHeavyUs: number;
  maxQueue: number;
  maxQueuePerFunction: number;
  moduleCacheMb: number;
  maxTableEntries: number;
  bodyLimitBytes: number;
  insecureRegistries: string[];
  shutdownTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
  basicAuthUser: string;
  basicAuthPassword: string;
  secretMountPath: string;
  authInvoke: boolean;
  localImages: LocalImagesSetting;
  concurrencyPerReplica: number;
  functionLogLines: number;
  registryCredentials: RegistryCredentialsFile | null;
  dockerConfig: string | null;
  maxImageBytes: number;
  registryConnectTimeoutMs: number;
  registryTimeoutMs: number;
  registryRetries: number;
  /** `file` (the data directory) or a postgresql:// URL shared by several engines. */
  store: string;
  nodeName: string;
  storeTimeoutMs: number;
}

type Parser<T> = (raw: string, setting: string) => T;

interface Setting<K extends keyof EngineConfig> {
  key: K;
  flag: string;
  /** What the flag takes, in the usage (`--port N`). */
  arg?: string;
  /** One sentence for the usage (src/cli/usage.ts writes it from this table); a test asks every row for one. */
  help?: string;
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

/** May be empty (the setting is then off). */
const optionalText: Parser<string> = (raw) => raw.trim();

const bool: Parser<boolean> = (raw, setting) => {
  const word = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(word)) return true;
  if (['false', '0', 'no', 'off'].includes(word)) return false;
  throw invalid(setting, raw, 'true or false');
};

const localImages: Parser<LocalImagesSetting> = (raw, setting) => {
  const word = raw.trim().toLowerCase();
  if (word === 'auto' || word === 'allow' || word === 'deny') return word;
  throw invalid(setting, raw, 'auto, allow or deny');
};

const list: Parser<string[]> = (raw) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

const store: Parser<string> = (raw, setting) => {
  const value = raw.trim();
  if (value === 'file') return value;
  if (/^postgres(ql)?:\/\//.test(value)) {
    try {
      new URL(value);
      return value;
    } catch {
      // Falls through to the message below.
    }
  }
  throw invalid(setting, raw.replace(/\/\/[^@/]*@/, '//***@'), 'file or a postgresql://user:password@host:port/database URL');
};

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
  port: { key: 'port', flag: 'port', arg: 'N', help: 'TCP port to listen on (0: any free port).', env: ['WASM_ENGINE_PORT'], parse: integer(0, 65535), default: () => 10000 },
  host: { key: 'host', flag: 'host', arg: 'ADDRESS', help: 'Address to listen on; a non-loopback one logs a warning when the management routes have no Basic auth.', env: ['WASM_ENGINE_HOST'], parse: text, default: () => '127.0.0.1' },
  dataDir: { key: 'dataDir', flag: 'data-dir', arg: 'DIR', help: 'Where functions and their modules are stored: /var/lib/wasmengine when writable, else a per-user directory.', env: ['WASM_ENGINE_DATA_DIR'], parse: text, default: defaultDataDir },
  logLevel: {
    key: 'logLevel',
    flag: 'log-level',
    arg: 'LEVEL',
    help: 'Log level: trace, debug, info, warn, error, fatal or silent (RUST_LOG=wasm_engine=debug works too).',
    env: ['LOG_LEVEL', 'RUST_LOG'],
    parse: parseLogLevel,
    default: () => 'info',
  },
  timeoutMs: {
    key: 'timeoutMs',
    flag: 'timeout-ms',
    arg: 'MS',
    help: 'Time limit of an invocation, unless its deploy says otherwise.',
    env: ['WASM_ENGINE_TIMEOUT_MS'],
    parse: integer(1, 3_600_000),
    default: () => 10_000,
  },
  memoryLimitMb: {
    key: 'memoryLimitMb',
    flag: 'memory-limit-mb',
    arg: 'MIB',
    help: 'Linear memory limit of a function, unless its deploy says otherwise.',
    env: ['WASM_ENGINE_MEMORY_LIMIT_MB'],
    parse: integer(1, 4096),
    default: () => 128,
  },
  maxOutputBytes: {
    key: 'maxOutputBytes',
    flag: 'max-output-bytes',
    arg: 'BYTES',
    help: 'Output limit of an invocation, unless its deploy says otherwise (at most 8388608).',
    env: ['WASM_ENGINE_MAX_OUTPUT_BYTES'],
    parse: integer(1, MAX_OUTPUT_BYTES),
    default: () => 4 * MiB,
  },
  workers: {
    key: 'workers',
    flag: 'workers',
    arg: 'N',
    help: 'Sandbox worker threads (default: one per core).',
    env: ['WASM_ENGINE_WORKERS'],
    parse: integer(1, 1024),
    default: () => availableParallelism(),
  },
  httpThreads: {
    key: 'httpThreads',
    flag: 'http-threads',
    arg: 'N',
    help: 'Threads that accept HTTP connections on the port and run calls themselves (the main thread accepts none); 0: one per core.',
    env: ['WASM_ENGINE_HTTP_THREADS'],
    parse: integer(0, 64),
    default: () => 0,
  },
  workerHeapMb: {
    key: 'workerHeapMb',
    flag: 'worker-heap-mb',
    arg: 'MIB',
    help: 'V8 heap limit of each sandbox worker; a call that exhausts it ends that worker only.',
    env: ['WASM_ENGINE_WORKER_HEAP_MB'],
    parse: integer(8, 64 * 1024),
    default: () => 512,
  },
  inlineBudgetMs: {
    key: 'inlineBudgetMs',
    flag: 'inline-budget-ms',
    arg: 'MS',
    help: 'A call first runs on the thread that read it for up to this long, then again from the start on a worker; 0: always on a worker.',
    env: ['WASM_ENGINE_INLINE_BUDGET_MS'],
    parse: integer(0, 1000),
    default: () => 2,
  },
  inlineHeavyUs: {
    key: 'inlineHeavyUs',
    flag: 'inline-heavy-us',
    arg: 'US',
    help: "A function whose calls run inline longer than this on average sends its next calls to the workers; 0: no such rule.",
    env: ['WASM_ENGINE_INLINE_HEAVY_US'],
    parse: integer(0, 1_000_000),
    default: () => 50,
  },
  maxQueue: {
    key: 'maxQueue',
    flag: 'max-queue',
    arg: 'N',
    help: 'Invocations waiting in all; past it, 503 OVERLOADED at once.',
    env: ['WASM_ENGINE_MAX_QUEUE'],
    parse: integer(0, 1_000_000),
    default: () => 1024,
  },
  maxQueuePerFunction: {
    key: 'maxQueuePerFunction',
    flag: 'max-queue-per-function',
    arg: 'N',
    help: 'Invocations of one function waiting for a slot; past it, 503 OVERLOADED at once.',
    env: ['WASM_ENGINE_MAX_QUEUE_PER_FUNCTION'],
    parse: integer(0, 1_000_000),
    default: () => 1024,
  },
  moduleCacheMb: {
    key: 'moduleCacheMb',
    flag: 'module-cache-mb',
    arg: 'MIB',
    help: 'Module binaries kept compiled; the least recently used are compiled again on their next call.',
    env: ['WASM_ENGINE_MODULE_CACHE_MB'],
    parse: integer(1, 1024 * 1024),
    default: () => 512,
  },
  maxTableEntries: {
    key: 'maxTableEntries',
    flag: 'max-table-entries',
    arg: 'N',
    help: 'Table entries per module, all its tables together: more is refused at deploy, table.grow past it returns -1.',
    env: ['WASM_ENGINE_MAX_TABLE_ENTRIES'],
    // V8 refuses tables of more than 10,000,000 entries.
    parse: integer(1, 10_000_000),
    default: () => 100_000,
  },
  bodyLimitBytes: {
    key: 'bodyLimitBytes',
    flag: 'body-limit-bytes',
    arg: 'BYTES',
    help: 'Largest request body; past it, 413 PAYLOAD_TOO_LARGE.',
    env: ['WASM_ENGINE_BODY_LIMIT_BYTES'],
    parse: integer(1024, 1024 * MiB),
    default: () => MiB,
  },
  insecureRegistries: {
    key: 'insecureRegistries',
    flag: 'insecure-registries',
    arg: 'HOST[:PORT],...',
    help: 'Registries reached over plain HTTP (loopback registries always are).',
    env: ['WASM_ENGINE_INSECURE_REGISTRIES'],
    parse: list,
    default: () => [],
  },
  shutdownTimeoutMs: {
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout-ms',
    arg: 'MS',
    help: 'How long a stop (SIGTERM, SIGINT) waits for invocations in flight.',
    env: ['WASM_ENGINE_SHUTDOWN_TIMEOUT_MS'],
    parse: integer(0, 600_000),
    default: () => 10_000,
  },
  requestTimeoutMs: {
    key: 'requestTimeoutMs',
    flag: 'request-timeout-ms',
    arg: 'MS',
    help: 'How long a client may take to send a whole request, head and body; past it, 408 REQUEST_TIMEOUT and the connection closes.',
    env: ['WASM_ENGINE_REQUEST_TIMEOUT_MS'],
    parse: integer(100, 3_600_000),
    default: () => 60_000,
  },
  maxConnections: {
    key: 'maxConnections',
    flag: 'max-connections',
    arg: 'N',
    help: 'Client connections open at once, shared out over the HTTP threads; past it, a new connection is closed at once.',
    env: ['WASM_ENGINE_MAX_CONNECTIONS'],
    parse: integer(1, 1_000_000),
    default: () => 10_000,
  },
  basicAuthUser: {
    key: 'basicAuthUser',
    flag: 'basic-auth-user',
    arg: 'USER',
    help: 'Basic auth user for /system/* and the management routes (give the password too).',
    env: ['WASM_ENGINE_BASIC_AUTH_USER'],
    parse: optionalText,
    default: () => '',
  },
  basicAuthPassword: {
    key: 'basicAuthPassword',
    flag: 'basic-auth-password',
    arg: 'PASSWORD',
    help: 'Basic auth password (give the user too).',
    env: ['WASM_ENGINE_BASIC_AUTH_PASSWORD'],
    parse: optionalText,
    default: () => '',
  },
  secretMountPath: {
    key: 'secretMountPath',
    flag: 'secret-mount-path',
    arg: 'DIR',
    help: 'A directory with basic-auth-user and basic-auth-password files, as OpenFaaS mounts them (instead of the two above).',
    env: ['WASM_ENGINE_SECRET_MOUNT_PATH'],
    parse: optionalText,
    default: () => '',
  },
  authInvoke: {
    key: 'authInvoke',
    flag: 'auth-invoke',
    arg: 'true|false',
    help: 'Basic auth on the invocation routes too.',
    env: ['WASM_ENGINE_AUTH_INVOKE'],
    parse: bool,
    default: () => false,
  },
  localImages: {
    key: 'localImages',
    flag: 'local-images',
    arg: 'auto|allow|deny',
    help: 'Whether deploys may name file: and oci: sources on the engine\'s host; auto: only when listening on loopback.',
    env: ['WASM_ENGINE_LOCAL_IMAGES'],
    parse: localImages,
    default: () => 'auto',
  },
  concurrencyPerReplica: {
    key: 'concurrencyPerReplica',
    flag: 'concurrency-per-replica',
    arg: 'N',
    help: 'Invocations of a function running at once per replica; 0: four per worker, and one per HTTP thread when calls run inline.',
    env: ['WASM_ENGINE_CONCURRENCY_PER_REPLICA'],
    parse: integer(0, 100_000),
    default: () => 0,
  },
  functionLogLines: {
    key: 'functionLogLines',
    flag: 'function-log-lines',
    arg: 'N',
    help: 'Stderr lines kept per function for /system/logs.',
    env: ['WASM_ENGINE_FUNCTION_LOG_LINES'],
    parse: integer(0, 1_000_000),
    default: () => 1000,
  },
  registryCredentials: {
    key: 'registryCredentials',
    flag: 'registry-credentials',
    arg: 'FILE',
    help: 'Registry credentials in Docker\'s config.json format, asked before the Docker config.',
    env: ['WASM_ENGINE_REGISTRY_CREDENTIALS'],
    parse: parseRegistryCredentials,
    default: () => null,
  },
  dockerConfig: {
    key: 'dockerConfig',
    flag: 'docker-config',
    arg: 'PATH|none',
    help: 'Docker\'s config.json (or its directory), with its credential helpers; none turns it off.',
    env: ['WASM_ENGINE_DOCKER_CONFIG', 'DOCKER_CONFIG'],
    parse: parseDockerConfigSetting,
    default: defaultDockerConfig,
  },
  maxImageBytes: {
    key: 'maxImageBytes',
    flag: 'max-image-bytes',
    arg: 'BYTES',
    help: 'Largest image downloaded, and separately unpacked.',
    env: ['WASM_ENGINE_MAX_IMAGE_BYTES'],
    parse: integer(1024, 64 * 1024 * MiB),
    default: () => 256 * MiB,
  },
  registryConnectTimeoutMs: {
    key: 'registryConnectTimeoutMs',
    flag: 'registry-connect-timeout-ms',
    arg: 'MS',
    help: 'Time to connect to a registry, per connection.',
    env: ['WASM_ENGINE_REGISTRY_CONNECT_TIMEOUT_MS'],
    parse: integer(1, 600_000),
    default: () => 5_000,
  },
  registryTimeoutMs: {
    key: 'registryTimeoutMs',
    flag: 'registry-timeout-ms',
    arg: 'MS',
    help: 'Time for a whole pull, retries included.',
    env: ['WASM_ENGINE_REGISTRY_TIMEOUT_MS'],
    parse: integer(1, 3_600_000),
    default: () => 60_000,
  },
  registryRetries: {
    key: 'registryRetries',
    flag: 'registry-retries',
    arg: 'N',
    help: 'Retries of a registry request on 429, 5xx, reset or refused connection.',
    env: ['WASM_ENGINE_REGISTRY_RETRIES'],
    parse: integer(0, 10),
    default: () => 3,
  },
  store: {
    key: 'store',
    flag: 'store',
    arg: 'file|URL',
    help: "Where functions are kept: 'file' (the data directory, one engine) or postgresql://user:password@host:port/database, shared by every engine naming it.",
    env: ['WASM_ENGINE_STORE'],
    parse: store,
    default: () => 'file',
  },
  nodeName: {
    key: 'nodeName',
    flag: 'node-name',
    arg: 'NAME',
    help: 'Names this engine in /system/info, every log line and every metric (default: the host name).',
    env: ['WASM_ENGINE_NODE_NAME'],
    parse: text,
    default: () => hostname(),
  },
  storeTimeoutMs: {
    key: 'storeTimeoutMs',
    flag: 'store-timeout-ms',
    arg: 'MS',
    help: 'Bound on connecting to the PostgreSQL store and on each of its statements; a change past it answers 503 UNAVAILABLE.',
    env: ['WASM_ENGINE_STORE_TIMEOUT_MS'],
    parse: integer(100, 600_000),
    default: () => 10_000,
  },
};

/** Settings read from a configuration file: its path (for messages) and its keys' values. */
export interface ConfigFileValues {
  path: string;
  values: Record<string, unknown>;
}

/**
 * Resolves the configuration: for each setting the flag if given, else the first environment
 * variable set, else the configuration file's value, else the default. `flags` maps flag names
 * (without `--`) to their raw text; a file's keys are the flag names (or the camelCase keys).
 */
export function resolveConfig(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
  file?: ConfigFileValues,
): EngineConfig {
  const known = new Set(Object.values(SETTINGS).map((s) => s.flag));
  for (const name of Object.keys(flags)) {
    if (!known.has(name)) throw new EngineError('INVALID_REQUEST', `unknown setting --${name}`);
  }
  const fileValues = new Map<string, { key: string; value: unknown }>();
  for (const [key, value] of Object.entries(file?.values ?? {})) {
    const setting = Object.values(SETTINGS).find((s) => s.flag === key || s.key === key);
    if (!setting) throw new EngineError('INVALID_REQUEST', `unknown setting ${key} in ${file!.path}`);
    fileValues.set(setting.key, { key, value });
  }
  const pick = <K extends keyof EngineConfig>(setting: Setting<K>): EngineConfig[K] => {
    const flag = flags[setting.flag];
    if (flag !== undefined) return setting.parse(flag, `--${setting.flag}`);
    for (const name of setting.env) {
      const value = env[name];
      if (value !== undefined && value !== '') return setting.parse(value, name);
    }
    const fromFile = fileValues.get(setting.key);
    if (fromFile) {
      const where = `${file!.path}: ${fromFile.key}`;
      return setting.parse(fileValueText(fromFile.value, where), where);
    }
    return setting.default();
  };
  const config = {} as Record<keyof EngineConfig, unknown>;
  for (const key of Object.keys(SETTINGS) as (keyof EngineConfig)[]) {
    config[key] = pick(SETTINGS[key] as Setting<typeof key>);
  }
  return config as EngineConfig;
}

/** A file value as the text a flag would carry: numbers and booleans as written, lists joined. */
function fileValueText(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',');
  throw new EngineError('INVALID_REQUEST', `invalid setting ${where}: expected a string, number, boolean or list of strings`);
}
