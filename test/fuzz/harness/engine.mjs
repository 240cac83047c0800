/**
 * The engine as a user runs it (`node bin/wasm-engine.js serve` on a free loopback port), for the
 * fuzzers: started, asked over HTTP, stopped or killed. The same as test/support/engine-process.ts,
 * in plain JavaScript so that the long run (scripts/fuzz.mjs) needs no TypeScript loader.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { REPO_ROOT } from './dist.mjs';

export const CLI = join(REPO_ROOT, 'bin', 'wasm-engine.js');

export function makeDataDir() {
  return mkdtempSync(join(tmpdir(), 'we-fuzz-data-'));
}

/** @param {{ dataDir?: string, args?: string[] }} options */
export async function startEngine(options = {}) {
  const dataDir = options.dataDir ?? makeDataDir();
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir, ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  let exitCode;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    exitCode = code ?? signal;
    resolve(exitCode);
  }));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the engine did not start:\n${output.join('\n')}`)), 30_000);
    const onData = (chunk) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        output.push(line);
        if (output.length > 400) output.splice(0, 200);
        const match = /WasmEngine listening on (http:\/\/\S+?),/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the engine exited with ${code} before listening:\n${output.join('\n')}`));
    });
  });
  return {
    url,
    dataDir,
    child,
    output,
    exited,
    get alive() {
      return exitCode === undefined;
    },
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

/** A JSON request; the answer's status and parsed body (undefined when not JSON). */
export async function callJson(base, method, path, body) {
  const answer = await request(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const text = await answer.body.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: answer.statusCode, text, json };
}
