/**
 * Bounded fuzzing over HTTP with generated modules (issue 10, "Fuzzing"): a real engine process
 * deploys each generated module's exports with small limits and answers random calls, each
 * repeated so that its worker reuses instances. Every answer is 200 or a §2 error with its
 * status, never INTERNAL; a repeated call answers as it did the first time; the engine stays up
 * and stops cleanly.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURE_OUT } from '../support/fixtures.js';
import { knownIssueSeeds } from './harness/known-issues.mjs';
import { runHttpModuleFuzz } from './harness/http-modules.mjs';
import { caseSeed } from './harness/prng.mjs';

const RUN_SEED = 4102026;
const MODULES = 10;

describe('generated modules over HTTP', () => {
  it(`${MODULES} generated modules deployed and called: 200 or a §2 error, never INTERNAL, the engine stays up`, async () => {
    const outDir = join(FIXTURE_OUT, 'fuzz', 'http-modules');
    const seeds = Array.from({ length: MODULES }, (_, i) => caseSeed(RUN_SEED, i));
    const stats = await runHttpModuleFuzz({ seeds, outDir, skip: knownIssueSeeds('httpModules') });
    console.info(`HTTP module fuzzing: ${JSON.stringify({ ...stats, failures: stats.failures.length })}`);
    expect(stats.failures, `reproductions in ${outDir}: ${JSON.stringify(stats.failures, null, 2).slice(0, 4000)}`).toEqual([]);
    expect(stats.modules).toBeGreaterThan(MODULES * 0.6);
    expect(stats.invocations).toBeGreaterThan(MODULES * 5);
    expect((stats.answers as Record<string, number>)['ok'] ?? 0).toBeGreaterThan(0);
  });
});
