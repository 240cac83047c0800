// Part 4: load. 1,000 concurrent connections invoking `authentication` for a while (30 s by
// default): the answers by status (every one must be 200, or 503 OVERLOADED), and the engine's
// resident memory before, during (the peak of each half: growth that levels off shows as a second
// half no higher than the first) and after.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { wrk } from './http.mjs';
import { EXAMPLES_WASM, deploy, invoke, kill, rssBytes, startEngine, tempDir } from './processes.mjs';
import { AUTH_ARGS } from './in-process.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function load({ connections, seconds }) {
  const dataDir = tempDir('we-bench-load-');
  const engine = await startEngine(dataDir);
  try {
    const pid = engine.child.pid;
    await deploy(engine.url, 'authentication', `file:${join(EXAMPLES_WASM, 'authentication.wasm')}`);
    for (let i = 0; i < 100; i++) await invoke(engine.url, 'authentication', AUTH_ARGS);
    await sleep(500);
    const before = rssBytes(pid);
    const samples = [];
    const sampler = setInterval(() => samples.push({ t: performance.now(), rss: rssBytes(pid) }), 250);
    const started = performance.now();
    let result;
    try {
      result = await wrk(engine.url, { fn: 'authentication', connections, seconds, script: 'count.lua' });
    } finally {
      clearInterval(sampler);
    }
    const half = started + (seconds * 1000) / 2;
    const firstHalf = Math.max(...samples.filter((s) => s.t < half).map((s) => s.rss));
    const secondHalf = Math.max(...samples.filter((s) => s.t >= half).map((s) => s.rss));
    const end = rssBytes(pid);
    await sleep(5000);
    const after = rssBytes(pid);
    const statuses = result.statuses ?? {};
    const ok = statuses['200'] ?? 0;
    const overloaded = Object.entries(statuses)
      .filter(([k]) => k.endsWith('-OVERLOADED'))
      .reduce((n, [, v]) => n + v, 0);
    const other = Object.entries(statuses)
      .filter(([k]) => k !== '200' && !k.endsWith('-OVERLOADED'))
      .reduce((n, [, v]) => n + v, 0);
    return {
      connections,
      seconds,
      rps: result.rps,
      p50: result.p50,
      p99: result.p99,
      ok,
      overloaded,
      other,
      socketErrors: result.socketErrors,
      statuses,
      before,
      firstHalf,
      secondHalf,
      end,
      after,
    };
  } finally {
    await kill(engine.child);
    rmSync(dataDir, { recursive: true, force: true });
  }
}
