// How long a large deploy keeps the engine from answering other requests: starts the engine, deploys
// `authentication` padded with a data segment of --mb MiB (pseudo-random bytes, as pad-module.mjs
// makes them), and meanwhile asks /healthz over and over from this process; prints the longest wait
// for one answer and the deploy's own duration. Never part of `npm test`; nothing here asserts.
//
//   node bench/deploy-stall.mjs --mb 100      (needs `npm run build` and `npm run examples`)
//   node bench/deploy-stall.mjs --file M.wasm  (deploys that module instead, with its only export)
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { writePadded } from './lib/pad-module.mjs';
import { EXAMPLES_WASM, kill, startEngine } from './lib/processes.mjs';

const argv = process.argv.slice(2);
const at = argv.indexOf('--mb');
const mb = at >= 0 ? Number(argv[at + 1]) : 100;
const fileAt = argv.indexOf('--file');
const dir = mkdtempSync(join(tmpdir(), 'we-stall-'));
const file = fileAt >= 0 ? argv[fileAt + 1] : join(dir, 'big.wasm');
const size = fileAt >= 0 ? statSync(file).size : writePadded(join(EXAMPLES_WASM, 'authentication.wasm'), file, mb * 1024 * 1024);
const engine = await startEngine(join(dir, 'data'), ['--workers', '2']);
try {
  let deploying = true;
  let longest = 0;
  let asked = 0;
  const poll = (async () => {
    while (deploying) {
      const t0 = performance.now();
      const answer = await request(`${engine.url}/healthz`);
      await answer.body.text();
      longest = Math.max(longest, performance.now() - t0);
      asked++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const t0 = performance.now();
  const answer = await request(`${engine.url}/function/deploy`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ function_name: 'big', function_image: `file:${file}`, memory_limit_mb: mb + 64 }),
  });
  const text = await answer.body.text();
  const deployMs = performance.now() - t0;
  deploying = false;
  await poll;
  console.log(JSON.stringify({ moduleBytes: size, deployStatus: answer.statusCode, deployMs: Math.round(deployMs), healthzAsked: asked, longestHealthzMs: Math.round(longest) }));
  if (answer.statusCode !== 200) console.log(text);
} finally {
  await kill(engine.child);
  rmSync(dir, { recursive: true, force: true });
}
