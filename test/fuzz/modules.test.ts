/**
 * Bounded module fuzzing (issue 10, "Fuzzing"): random valid modules from binaryen's
 * translate-to-fuzz, fixed seeds. The reuse differential runs in-process (a worker thread per
 * run, terminated when a case hangs): every call answered by an instance the engine restores and
 * reuses must equal the answer of a fresh instance of the original module. `npm run fuzz` runs
 * the same for as long as asked, with new seeds.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURE_OUT } from '../support/fixtures.js';
import { knownIssueSeeds } from './harness/known-issues.mjs';
import { runModuleFuzz } from './harness/module-fuzz.mjs';
import { caseSeed } from './harness/prng.mjs';

const RUN_SEED = 20261204;
const MODULES = 48;

describe('module fuzzing', () => {
  it(`${MODULES} generated modules: reused instances of the module with preemption checks answer what fresh instances of the original module answer, call after call, never INTERNAL`, async () => {
    const outDir = join(FIXTURE_OUT, 'fuzz', 'modules');
    const seeds = Array.from({ length: MODULES }, (_, i) => caseSeed(RUN_SEED, i));
    const stats = await runModuleFuzz({ seeds, outDir, skip: knownIssueSeeds('modules') });
    console.info(`module fuzzing: ${JSON.stringify({ ...stats, failures: stats.failures.length })}`);
    expect(stats.failures, `reproductions in ${outDir}: ${JSON.stringify(stats.failures, null, 2).slice(0, 4000)}`).toEqual([]);
    // The run did what it is for: modules made, calls answered, instances really reused.
    expect(stats.modules).toBeGreaterThan(MODULES * 0.8);
    expect(stats.calls).toBeGreaterThan(MODULES * 5);
    expect(stats.reusedInstances).toBeGreaterThan(50);
    expect(stats.virtualSize).toBeGreaterThan(5);
    // Nearly every module gets its preemption checks (and runs with them here).
    expect(stats.preemptChecks).toBeGreaterThan(stats.modules * 0.8);
  });
});
