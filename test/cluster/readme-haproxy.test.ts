/** The haproxy configuration README.md's "Run several engines" shows is one haproxy accepts. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { haproxyBinary } from '../support/balancer.js';
import { REPO_ROOT } from '../support/engine-process.js';

const run = promisify(execFile);

it('README: the haproxy configuration in "Run several engines" is valid and checks /readyz', async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Run several engines'));
  const config = /\n```\n(defaults\n[\s\S]*?)```/.exec(section)?.[1];
  expect(config).toBeDefined();
  expect(config).toContain('option httpchk GET /readyz');
  const dir = await mkdtemp(join(tmpdir(), 'we-readme-haproxy-'));
  try {
    await writeFile(join(dir, 'haproxy.cfg'), config!);
    const { stdout, stderr } = await run(haproxyBinary(), ['-c', '-f', join(dir, 'haproxy.cfg')]);
    expect(`${stdout}${stderr}`).toContain('Configuration file is valid');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
