#!/usr/bin/env node
/**
 * Measures `wasm-engine push` and a deploy of a 2 MB module on loopback, with a registry login:
 * Debian's docker-registry with htpasswd Basic auth on a free 127.0.0.1 port, the engine as a child
 * process reading a Docker config.json. Run after `npm run build`:
 *
 *   node bench/push-deploy.mjs [runs]
 *
 * The module is built from WAT: an `add` export and a 2 MiB data segment of random bytes, so gzip
 * cannot shrink the layer. Each run pushes to a new repository (so every blob is uploaded) and
 * deploys from it into an engine that does not hold the module (so every blob is downloaded).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'bin', 'wasm-engine.js');
const runs = Number(process.argv[2] ?? 5);
const work = mkdtempSync(join(tmpdir(), 'we-bench-'));
const children = [];
const user = 'bench';
const pass = randomBytes(9).toString('hex');

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function start(command, args, env, ready) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${command} did not start: ${output}`)), 20_000);
    const onData = (chunk) => {
      output += chunk;
      const found = ready(output);
      if (found) {
        clearTimeout(timer);
        resolve({ child, found });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
}

function run(args, stdin) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

try {
  const wat = join(work, 'big.wat');
  const wasm = join(work, 'big.wasm');
  const data = randomBytes(2 * 1024 * 1024).toString('hex').replace(/../g, '\\$&');
  writeFileSync(wat, `(module (memory 34) (data (i32.const 0) "${data}") (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`);
  execFileSync('wat2wasm', [wat, '-o', wasm]);

  const registryPort = await freePort();
  writeFileSync(join(work, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', user, pass]));
  writeFileSync(
    join(work, 'registry.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, 'registry')}\nhttp:\n  addr: 127.0.0.1:${registryPort}\n  secret: ${randomBytes(8).toString('hex')}\nauth:\n  htpasswd:\n    realm: bench\n    path: ${join(work, 'htpasswd')}\n`,
  );
  children.push(spawn('docker-registry', ['serve', join(work, 'registry.yml')], { stdio: 'ignore' }));
  const host = `127.0.0.1:${registryPort}`;
  for (let ready = false; !ready; ) {
    ready = await fetch(`http://${host}/v2/`).then((r) => r.status === 401, () => false);
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  const dockerConfig = join(work, 'docker');
  execFileSync('mkdir', ['-p', dockerConfig]);
  writeFileSync(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } } }));
  const { found: url } = await start(
    process.execPath,
    [CLI, 'serve', '--port', '0', '--data-dir', join(work, 'data')],
    { DOCKER_CONFIG: dockerConfig, LOG_LEVEL: 'info' },
    (out) => /WasmEngine listening on (http:\/\/\S+?),/.exec(out)?.[1],
  );

  const push = { cli: [], inProcess: [] };
  const deploy = [];
  for (let i = 0; i < runs; i += 1) {
    const ref = `${host}/bench${i}/big:v1`;
    let t = performance.now();
    const pushed = await run(['push', wasm, ref, '--username', user, '--password-stdin', '--json'], pass);
    push.cli.push(performance.now() - t);
    if (pushed.code !== 0) throw new Error(`push failed: ${pushed.stderr}`);
    push.inProcess.push(JSON.parse(pushed.stdout).ms);

    t = performance.now();
    const answer = await fetch(`${url}/function/deploy`, {
      method: 'POST',
      headers: { accept: 'application/json' },
      body: JSON.stringify({ function_name: `big${i}`, function_image: ref }),
    });
    deploy.push(performance.now() - t);
    if (answer.status !== 200) throw new Error(`deploy failed: ${await answer.text()}`);
    await fetch(`${url}/function/delete`, { method: 'POST', body: JSON.stringify({ function_name: `big${i}` }) });
  }
  const fmt = (values) => `median ${Math.round(median(values))} ms (min ${Math.round(Math.min(...values))}, max ${Math.round(Math.max(...values))})`;
  console.log(`module: ${execFileSync('stat', ['-c', '%s', wasm]).toString().trim()} bytes, ${runs} runs, registry ${host} with htpasswd Basic auth`);
  console.log(`push, whole command (node start, build, upload):  ${fmt(push.cli)}`);
  console.log(`push, build and upload only (--json "ms"):        ${fmt(push.inProcess)}`);
  console.log(`deploy over HTTP (pull, verify, compile, store):  ${fmt(deploy)}`);
} finally {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(work, { recursive: true, force: true });
}
