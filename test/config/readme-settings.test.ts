/** Every setting is documented in the README with its flag, its environment variable and a default. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_ENV, CONFIG_FLAG } from '../../src/config/config-file.js';
import { SETTINGS } from '../../src/config/settings.js';
import { REPO_ROOT } from '../support/engine-process.js';

describe('README settings table', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const rows = readme.split('\n').filter((line) => line.startsWith('| `--'));

  it.each([...Object.values(SETTINGS).map((s) => [s.flag, s.env[0]!]), [CONFIG_FLAG, CONFIG_ENV]])('documents --%s (%s)', (flag, env) => {
    const row = rows.find((line) => line.startsWith(`| \`--${flag}\` |`));
    expect(row, `no README row for --${flag}`).toBeDefined();
    const cells = row!.split(' | ');
    expect(cells[1]).toContain(`\`${env}\``);
    expect(cells[2]!.trim().length).toBeGreaterThan(2);
  });
});
