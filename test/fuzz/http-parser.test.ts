/**
 * Bounded HTTP fuzzing (issue 10, "Fuzzing"): random and mutated conversations — bad framing,
 * pipelining, writes split at random points — held with the engine's server: whole answers only,
 * no 500, and still serving afterwards.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURE_OUT } from '../support/fixtures.js';
import { knownIssueSeeds } from './harness/known-issues.mjs';
import { runHttpParserFuzz } from './harness/http-parser.mjs';
import { caseSeed } from './harness/prng.mjs';

const RUN_SEED = 1012026;
const CONVERSATIONS = 120;

describe('HTTP: random conversations', () => {
  it(`${CONVERSATIONS} random conversations get whole answers, none a 500, from a server that keeps serving`, async () => {
    const outDir = join(FIXTURE_OUT, 'fuzz', 'http');
    const seeds = Array.from({ length: CONVERSATIONS }, (_, i) => caseSeed(RUN_SEED, i));
    const stats = await runHttpParserFuzz({ seeds, outDir, skip: knownIssueSeeds('http') });
    console.info(`HTTP fuzzing: ${JSON.stringify({ ...stats, failures: stats.failures.length })}`);
    expect(stats.failures, `reproductions in ${outDir}: ${JSON.stringify(stats.failures, null, 2).slice(0, 4000)}`).toEqual([]);
    expect(stats.requests).toBeGreaterThan(CONVERSATIONS / 2);
  });
});
