/**
 * Runs the engine the way a user does — `node bin/wasm-engine.js serve` as a child process on a
 * free loopback port — and stops it with SIGTERM or kills it with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(REPO_ROOT, 'bin', 'wasm-engine.js');

export interface EngineProcess {
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** Every line the engine wrote to stdout and stderr. */
  output: string[];
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Resolves with the exit code when the process ends, whoever ended it. */
  exited: Promise<number | null>;
  /** SIGKILL and wait: the crash case. */
  kill(): Promise<void>;
}

export interface EngineProcessOptions {
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** How long to wait for the engine to say it listens (20 s; tests starting several engines at once may need more). */
  startTimeoutMs?: number;
  /** Hears every line as it comes, before the engine listens too (e.g. one waiting for its store). */
  onLine?: (line: string, child: ChildProcess) => void;
  /** The Node.js that runs the command (default: this process's, the pinned one); the machine's own, say. */
  node?: string;
}

export async function makeDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'we-data-'));
}

/** Whether this run's engines use the PostgreSQL store (npm test's second integration run). */
export const TEST_STORE_IS_POSTGRES = process.env.WASM_ENGINE_TEST_STORE === 'postgresql';

let databases = 0;

/**
 * A fresh, empty database on the run's PostgreSQL server (postgres-global-setup.ts), created over
 * a plain connection as the server's superuser; returns its URL.
 */
export async function createTestDatabase(serverUrl = process.env.WASM_ENGINE_TEST_PG_URL): Promise<string> {
  if (!serverUrl) throw new Error('WASM_ENGINE_TEST_STORE=postgresql needs the vitest globalSetup that starts PostgreSQL (vitest.config.ts)');
  databases += 1;
  const name = `we_${process.pid}_${databases}_${Date.now().toString(36)}`;
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Per data directory, its engine's database: an engine started again on the same directory finds its functions. */
const databaseOf = new Map<string, string>();

/** Under the PostgreSQL run, the database of the engine on `dataDir` (made on first use); else undefined. */
export async function testStoreUrl(dataDir: string): Promise<string | undefined> {
  if (!TEST_STORE_IS_POSTGRES) return undefined;
  let url = databaseOf.get(dataDir);
  if (url === undefined) {
    url = await createTestDatabase();
    databaseOf.set(dataDir, url);
  }
  return url;
}

/** The --store argument a test's engine gets: none (the file store), or its own database under the PostgreSQL run. */
async function storeArgs(options: EngineProcessOptions, dataDir: string): Promise<string[]> {
  if ((options.args ?? []).some((arg) => arg === '--store' || arg.startsWith('--store='))) return [];
  if (options.env?.WASM_ENGINE_STORE !== undefined) return [];
  const url = await testStoreUrl(dataDir);
  return url === undefined ? [] : ['--store', url];
}

export async function startEngineProcess(options: EngineProcessOptions = {}): Promise<EngineProcess> {
  const dataDir = options.dataDir ?? (await makeDataDir());
  const store = await storeArgs(options, dataDir);
  const child = spawn(options.node ?? process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir, ...store, ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine did not start:\n${output.join('\n')}`)), options.startTimeoutMs ?? 20_000);
    const onLine = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        output.push(line);
        options.onLine?.(line, child);
        const match = /WasmEngine listening on (http:\/\/\S+?),/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      }
    };
    child.stdout!.on('data', onLine);
    child.stderr!.on('data', onLine);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`engine exited with ${code} before listening:\n${output.join('\n')}`));
    });
  });
  return {
    url,
    dataDir,
    child,
    output,
    exited,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
