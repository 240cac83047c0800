// Starting and stopping the processes the bench measures: WasmEngine (`wasm-engine serve`, as a
// user runs it) and workerd; their resident memory from /proc.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { assertPinnedNode } from '../../scripts/pinned-node.mjs';

// Every bench script imports this file; each measures the engine's own Node.js, in-process parts included.
assertPinnedNode('the bench');

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const EXAMPLES_WASM = join(ROOT, 'examples', 'build', 'wasm');

export function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `command args` restricted to the CPUs `cpus` (a taskset list such as "0" or "0-3") when given. */
export function pinned(cpus, command, args) {
  return cpus === undefined ? [command, args] : ['taskset', ['-c', cpus, command, ...args]];
}

/**
 * Starts the engine; resolves once it logs that it listens. `spawned`/`listening`: performance.now()
 * marks. `cpus`: a taskset CPU list the engine is restricted to (its workers and HTTP threads default to that many).
 */
export function startEngine(dataDir, args = [], { cpus, root = ROOT } = {}) {
  const spawned = performance.now();
  // The bin file, which chooses the engine's flags, run by this (pinned) Node rather than by its
  // `#!/usr/bin/env node` line: outside npm's PATH that finds the machine's older Node, whose
  // launcher runs the engine as a child that a SIGKILL of the launcher would leave behind.
  const [command, commandArgs] = pinned(cpus, process.execPath, [join(root, 'bin/wasm-engine.js'), 'serve', '--port', '0', '--data-dir', dataDir, ...args]);
  const child = spawn(command, commandArgs, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        output.push(line);
        const match = /WasmEngine listening on (http:\/\/\S+?),/.exec(line);
        if (match) resolve({ child, url: match[1], spawned, listening: performance.now(), output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`engine exited ${code}:\n${output.join('\n')}`)));
  });
}

export function kill(child, signal = 'SIGKILL') {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill(signal);
  });
}

/** POSTs `body` as JSON; `authorization`: an Authorization header to send. */
export async function post(url, path, body, authorization) {
  const answer = await request(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), ...(authorization ? { headers: { authorization } } : {}) });
  const text = await answer.body.text();
  if (answer.statusCode !== 200) throw new Error(`${path}: ${answer.statusCode} ${text}`);
  return text;
}

export const deploy = (url, name, image, extra = {}, authorization = undefined) => post(url, '/function/deploy', { function_name: name, function_image: image, ...extra }, authorization);
export const invoke = (url, name, args) => post(url, '/function/invoke', { function_name: name, args });

/** Resident memory of a process (all its threads), from /proc/PID/status. */
export function rssBytes(pid) {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return kb ? Number(kb[1]) * 1024 : NaN;
}

export const tempDir = (prefix) => mkdtempSync(join(tmpdir(), prefix));

/** Starts workerd with bench/workerd/ (the worker and the examples' .wasm) on a free port; `cpus` as for startEngine. */
export async function startWorkerd({ cpus } = {}) {
  const bin = join(ROOT, 'node_modules', '.bin', 'workerd');
  const dir = tempDir('we-bench-workerd-');
  const port = await freePort();
  for (const file of ['gcd.wasm', 'authentication.wasm']) copyFileSync(join(EXAMPLES_WASM, file), join(dir, file));
  copyFileSync(join(ROOT, 'bench', 'workerd', 'worker.js'), join(dir, 'worker.js'));
  const template = readFileSync(join(ROOT, 'bench', 'workerd', 'config.capnp.template'), 'utf8');
  writeFileSync(join(dir, 'config.capnp'), template.replace('@ADDRESS@', `127.0.0.1:${port}`));
  const [command, args] = pinned(cpus, bin, ['serve', join(dir, 'config.capnp')]);
  const child = spawn(command, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  child.stdout.on('data', (c) => output.push(String(c)));
  child.stderr.on('data', (c) => output.push(String(c)));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(`exited with ${code ?? signal}`)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    const gone = await Promise.race([exited, new Promise((r) => setTimeout(() => r(undefined), 50))]);
    if (gone) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`workerd ${gone}: ${output.join('').trim()}`);
    }
    try {
      await invoke(url, 'gcd', { a: '12', b: '18' });
      child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      return { child, url };
    } catch {
      // not listening yet
    }
  }
  await kill(child);
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`workerd did not answer: ${output.join('').trim()}`);
}

/** Starts bench/bare-node/server.mjs (node:http, one instance per module) on this Node; `cpus` as for startEngine. */
/** bench/bare-node's server: on node:http, or with `raw` straight on the socket (raw-server.mjs). */
export function startBareNode({ cpus, raw = false } = {}) {
  const [command, args] = pinned(cpus, process.execPath, [join(ROOT, 'bench', 'bare-node', raw ? 'raw-server.mjs' : 'server.mjs'), '--port', '0', '--wasm-dir', EXAMPLES_WASM]);
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  return new Promise((resolve, reject) => {
    const onData = (chunk) => {
      output.push(String(chunk));
      const match = /listening on (http:\/\/\S+)/.exec(output.join(''));
      if (match) resolve({ child, url: match[1] });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`bare Node server exited with ${code ?? signal}: ${output.join('').trim()}`)));
  });
}
