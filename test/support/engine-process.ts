/**
 * Runs the engine the way a user does — `node bin/wasm-engine.js serve` as a child process on a
 * free loopback port — and stops it with SIGTERM or kills it with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
}

export async function makeDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'we-data-'));
}

export async function startEngineProcess(options: EngineProcessOptions = {}): Promise<EngineProcess> {
  const dataDir = options.dataDir ?? (await makeDataDir());
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir, ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine did not start:\n${output.join('\n')}`)), 20_000);
    const onLine = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        output.push(line);
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
