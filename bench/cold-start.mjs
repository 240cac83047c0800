// Cold start of a real engine process: deploy answered → first invocation answered, and engine
// restart (after kill -9) → first invocation answered, for one example. Prints medians.
// Usage: node bench/cold-start.mjs [example] [trials]   (after npm run build && npm run examples)
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

const root = fileURLToPath(new URL('..', import.meta.url));
const example = process.argv[2] ?? 'authentication';
const trials = Number(process.argv[3] ?? 10);
const ARGS = {
  authentication: { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' },
  gcd: { a: '12', b: '18' },
  hello: {},
}[example] ?? {};

function start(dataDir) {
  const child = spawn(process.execPath, [join(root, 'bin/wasm-engine.js'), 'serve', '--port', '0', '--data-dir', dataDir], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const match = /WasmEngine listening on (http:\/\/\S+?),/.exec(buffered);
      if (match) resolve({ child, url: match[1], listening: performance.now() });
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}`)));
  });
}

async function post(url, path, body) {
  const answer = await request(`${url}${path}`, { method: 'POST', body: JSON.stringify(body) });
  const text = await answer.body.text();
  if (answer.statusCode !== 200) throw new Error(`${path}: ${text}`);
  return text;
}

function kill(child) {
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGKILL');
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const deployToInvoke = [];
const restartToInvoke = [];
const listenToInvoke = [];
for (let i = 0; i < trials; i++) {
  const dataDir = await mkdtemp(join(tmpdir(), 'we-bench-'));
  let engine = await start(dataDir);
  await post(engine.url, '/function/deploy', { function_name: example, function_image: `oci:examples/build/oci/${example}` });
  const deployed = performance.now();
  await post(engine.url, '/function/invoke', { function_name: example, args: ARGS });
  deployToInvoke.push(performance.now() - deployed);
  await kill(engine.child);
  const restartAt = performance.now();
  engine = await start(dataDir);
  await post(engine.url, '/function/invoke', { function_name: example, args: ARGS });
  const answered = performance.now();
  restartToInvoke.push(answered - restartAt);
  listenToInvoke.push(answered - engine.listening);
  await kill(engine.child);
  await rm(dataDir, { recursive: true, force: true });
}
const ms = (x) => `${x.toFixed(2)} ms`;
console.log(`cold start, ${example}, ${trials} trials (median)`);
console.log(`  deploy answered → first invoke answered:          ${ms(median(deployToInvoke))}`);
console.log(`  engine listening after restart → first invoke:   ${ms(median(listenToInvoke))}`);
console.log(`  process spawn after kill -9 → first invoke:      ${ms(median(restartToInvoke))}`);
