/**
 * A measurement, not a check (skipped unless WASM_ENGINE_MEASURE=1): two engines on one real
 * PostgreSQL; deploy through A, then how long after A's answer B first invokes the function, and
 * likewise delete → 404 on B. Prints p50/p90/max over 30 trials; asserts nothing about time.
 *   WASM_ENGINE_MEASURE=1 npx vitest run test/store/postgres-propagation-measure.test.ts
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { EXAMPLES_OCI } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { startPostgres, type RunningPostgres } from '../support/postgres.js';

const measuring = process.env.WASM_ENGINE_MEASURE === '1';
let pg: RunningPostgres | undefined;
const engines: EngineProcess[] = [];

beforeAll(async () => {
  if (measuring) pg = await startPostgres();
});
afterAll(async () => {
  await Promise.all(engines.map((engine) => engine.kill()));
  await pg?.stop();
});

const TRIALS = 30;

it.skipIf(!measuring)('deploy or delete answered on node A → seen on node B', async () => {
  const url = await pg!.createDatabase();
  for (const name of ['a', 'b']) engines.push(await startEngineProcess({ startTimeoutMs: 90_000, args: ['--store', url, '--node-name', name, '--workers', '1'] }));
  const [a, b] = engines as [EngineProcess, EngineProcess];
  const image = `oci:${join(EXAMPLES_OCI, 'gcd')}`;
  const invokeOnB = (name: string): Promise<number> =>
    call(b.url, 'POST', '/function/invoke', { function_name: name, args: { a: 4, b: 6 } }).then((answer) => answer.status);
  const deployed: number[] = [];
  const deleted: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const name = `f${i}`;
    expect((await call(a.url, 'POST', '/function/deploy', { function_name: name, function_image: image })).status).toBe(200);
    let since = performance.now();
    while ((await invokeOnB(name)) !== 200);
    deployed.push(performance.now() - since);
    expect((await call(a.url, 'POST', '/function/delete', { function_name: name })).status).toBe(200);
    since = performance.now();
    while ((await invokeOnB(name)) !== 404);
    deleted.push(performance.now() - since);
  }
  const at = (values: number[], p: number): string => {
    const sorted = [...values].sort((x, y) => x - y);
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toFixed(1);
  };
  const line = (what: string, values: number[]): string => `${what}: p50 ${at(values, 0.5)} ms, p90 ${at(values, 0.9)} ms, max ${at(values, 1)} ms (n=${TRIALS})`;
  console.log(line('deploy answered on A -> invokable on B', deployed));
  console.log(line('delete answered on A -> 404 on B', deleted));

  // The database stopped for a while (about 5 s of refused writes), then started: how long until
  // A takes a write again, and until B invokes what was deployed.
  expect((await call(a.url, 'POST', '/function/deploy', { function_name: 'steady', function_image: image })).status).toBe(200);
  while ((await invokeOnB('steady')) !== 200);
  await pg!.stopServer();
  let failedInvocations = 0;
  let refused = 0;
  const downSince = performance.now();
  while (performance.now() - downSince < 5_000) {
    if ((await invokeOnB('steady')) !== 200) failedInvocations += 1;
    if ((await call(a.url, 'POST', '/function/deploy', { function_name: 'back', function_image: image })).status === 503) refused += 1;
  }
  await pg!.startServer();
  const upSince = performance.now();
  while ((await call(a.url, 'POST', '/function/deploy', { function_name: 'back', function_image: image })).status !== 200);
  const writable = performance.now() - upSince;
  while ((await invokeOnB('back')) !== 200);
  const everywhere = performance.now() - upSince;
  console.log(
    `database down 5 s: ${failedInvocations} failed invocations on B, ${refused} deploys refused 503 on A; ` +
      `after it started: A writes again in ${writable.toFixed(0)} ms, B invokes the new function after ${everywhere.toFixed(0)} ms`,
  );
}, 600_000);
