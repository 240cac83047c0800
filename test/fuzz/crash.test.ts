/**
 * Bounded crash fuzzing (issue 10, "Fuzzing"): kill -9 at a random moment of a storm of deploys,
 * updates and deletes, three times, restarting on the same data directory each time. Every
 * acknowledged change is there after the restart, a change cut short is whole or absent, every
 * listed function answers, and the data directory holds no stray file.
 */
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCrashStorm } from './harness/crash-storm.mjs';

const SEED = 7;
const KILLS = 3;

describe('kill -9 during a deploy/update/delete storm', () => {
  it(`${KILLS} kills: acknowledged changes survive, nothing half-done, every listed function answers`, async () => {
    const stats = await runCrashStorm({ seed: SEED, kills: KILLS });
    console.info(`crash fuzzing: ${JSON.stringify({ ...stats, problems: stats.problems.length, strayTemp: stats.strayTemp.length })}`);
    expect(stats.problems, `data directory ${stats.dataDir}`).toEqual([]);
    expect(stats.kills).toBe(KILLS);
    expect(stats.acknowledged).toBeGreaterThan(0);
    // Start-up removes every temporary file the store writes (finding 11 of issue 10).
    expect(stats.strayTemp).toEqual([]);
    rmSync(stats.dataDir, { recursive: true, force: true });
  });
});
