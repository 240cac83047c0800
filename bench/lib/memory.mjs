// Part 5: memory. The engine's resident memory idle with no function, then with K distinct
// functions deployed (compiled, never invoked), then after one invocation of each (each worker
// then keeps an instance of it until it has been idle for a minute): the difference divided by K
// is what one deployed-but-idle function costs.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES_WASM, deploy, invoke, kill, rssBytes, startEngine, tempDir } from './processes.mjs';
import { AUTH_ARGS } from './in-process.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The module with a custom section appended: the same function under another digest. */
function variant(bytes, i) {
  const name = Buffer.from('bench-variant');
  const payload = Buffer.from(String(i));
  const body = Buffer.concat([Buffer.from([name.length]), name, payload]);
  return Buffer.concat([bytes, Buffer.from([0, body.length]), body]);
}

/** RSS once it has settled: the lowest of a few readings a little apart (GC runs in between). */
async function settledRss(pid) {
  const readings = [];
  for (let i = 0; i < 5; i++) {
    await sleep(300);
    readings.push(rssBytes(pid));
  }
  return Math.min(...readings);
}

export async function memory({ functions }) {
  const dataDir = tempDir('we-bench-mem-');
  const dir = tempDir('we-bench-mem-modules-');
  const engine = await startEngine(dataDir);
  try {
    const idle = await settledRss(engine.child.pid);
    const bytes = readFileSync(join(EXAMPLES_WASM, 'authentication.wasm'));
    for (let i = 0; i < functions; i++) {
      const file = join(dir, `auth-${i}.wasm`);
      writeFileSync(file, variant(bytes, i));
      await deploy(engine.url, `auth-${i}`, `file:${file}`);
    }
    const deployed = await settledRss(engine.child.pid);
    for (let i = 0; i < functions; i++) await invoke(engine.url, `auth-${i}`, AUTH_ARGS);
    const invoked = await settledRss(engine.child.pid);
    return {
      functions,
      idle,
      perDeployed: (deployed - idle) / functions,
      perInvoked: (invoked - idle) / functions,
      moduleBytes: bytes.length,
    };
  } finally {
    await kill(engine.child);
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}
