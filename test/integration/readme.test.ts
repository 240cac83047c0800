/**
 * The README's "Try it without a registry" curl lines, run verbatim with curl against a fresh
 * engine (only the port differs), each answer compared with the one the README prints.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';

const run = promisify(execFile);

interface Step {
  command: string;
  expected: string;
}

function readmeSteps(): Step[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.split('## Try it without a registry')[1]!.split('\n## ')[0]!;
  const block = /```\n([\s\S]*?)```/.exec(section)![1]!;
  return block
    .trim()
    .split(/\n\n/)
    .map((chunk) => {
      const [first, ...rest] = chunk.split('\n');
      return { command: first!.replace(/^\$ /, ''), expected: rest.join('\n') };
    });
}

describe('README quick start, verbatim', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngineProcess();
  });
  afterAll(() => engine?.kill());

  const steps = readmeSteps();
  it('has the steps', () => {
    expect(steps.length).toBeGreaterThanOrEqual(8);
  });

  for (const step of steps) {
    it(step.command, async () => {
      const port = new URL(engine.url).port;
      const command = step.command.replaceAll('localhost:10000', `127.0.0.1:${port}`);
      const { stdout } = await run('sh', ['-c', command], { cwd: REPO_ROOT });
      expect(stdout.replace(/\n$/, '')).toBe(step.expected);
    });
  }
});
