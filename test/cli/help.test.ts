/**
 * `wasm-engine --help` and each command's `--help` / `-h`, run as a user runs them (the built
 * command as a child process): usage on stdout, exit 0, and for the engine every setting of the
 * settings table with its environment variables and its sentence.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CONFIG_ENV, CONFIG_FLAG } from '../../src/config/config-file.js';
import { SETTINGS } from '../../src/config/settings.js';
import { CLI, REPO_ROOT } from '../support/engine-process.js';

const run = promisify(execFile);

async function wasmEngine(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The usage's text with its line wrapping undone, so that a sentence reads whole. */
const flat = (text: string): string => text.replace(/\s+/g, ' ');

function expectEverySetting(usage: string): void {
  const text = flat(usage);
  for (const setting of Object.values(SETTINGS)) {
    expect(text, setting.flag).toContain(`--${setting.flag}${setting.arg ? ` ${setting.arg}` : ''} `);
    for (const env of setting.env) expect(text, `${setting.flag}: ${env}`).toContain(env);
    expect(text, setting.flag).toContain(flat(setting.help ?? ''));
  }
  expect(text).toContain(`--${CONFIG_FLAG} FILE (${CONFIG_ENV}`);
}

describe('wasm-engine --help', () => {
  it('every row of the settings table has a sentence for the usage', () => {
    for (const setting of Object.values(SETTINGS)) expect(setting.help?.trim(), setting.flag).toBeTruthy();
  });

  it.each([['--help'], ['-h'], ['help']])('`wasm-engine %s` prints the whole usage, every setting included, and exits 0', async (flag) => {
    const answer = await wasmEngine(flag);
    expect(answer.code).toBe(0);
    expect(answer.stderr).toBe('');
    expect(answer.stdout).toMatch(/^usage: wasm-engine <command>/);
    expectEverySetting(answer.stdout);
    for (const command of ['serve', 'deploy NAME IMAGE', 'delete NAME', 'list', 'query NAME', 'invoke NAME', 'push FILE.wasm REF', 'pack FILE.wasm']) {
      expect(answer.stdout).toContain(`  ${command}`);
    }
  });

  it.each([['--help'], ['-h']])('`wasm-engine serve %s` prints every setting of the table, starts nothing, and exits 0', async (flag) => {
    const answer = await wasmEngine('serve', flag);
    expect(answer.code).toBe(0);
    expect(answer.stderr).toBe('');
    expect(answer.stdout).toMatch(/^usage: wasm-engine serve \[options\]/);
    expect(answer.stdout).not.toMatch(/WasmEngine listening/);
    expectEverySetting(answer.stdout);
    // Among other flags too, and with the default the engine would take.
    const late = await wasmEngine('serve', '--port', '1', flag);
    expect(late.code).toBe(0);
    expect(flat(late.stdout)).toContain('--port N (WASM_ENGINE_PORT; default 10000)');
  });

  it.each([['deploy'], ['delete'], ['list'], ['query'], ['invoke'], ['push'], ['pack']])('`wasm-engine %s --help` prints that command\'s usage and exits 0', async (command) => {
    const answer = await wasmEngine(command, '--help');
    expect(answer.code).toBe(0);
    expect(answer.stderr).toBe('');
    expect(answer.stdout).toMatch(new RegExp(`^usage: wasm-engine ${command}\\b`));
  });

  it('`-h` and `help COMMAND` say the same as `COMMAND --help`', async () => {
    const [long, short, help] = await Promise.all([wasmEngine('invoke', 'f', '--help'), wasmEngine('invoke', '-h'), wasmEngine('help', 'invoke')]);
    expect(long.code).toBe(0);
    expect(short.stdout).toBe(long.stdout);
    expect(help.stdout).toBe(long.stdout);
  });

  it('`wasm-engine --version` names the release of package.json and the commit of the build', async () => {
    const answer = await wasmEngine('--version');
    expect(answer.code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const info = JSON.parse(readFileSync(join(REPO_ROOT, 'dist', 'build-info.json'), 'utf8')) as { commit: string; dirty: boolean | null };
    expect(answer.stdout).toBe(`wasm-engine ${pkg.version} (commit ${info.commit}${info.dirty === true ? '-dirty' : ''})\n`);
  });

  it('a usage error still exits 2 with the command\'s usage on stderr', async () => {
    const answer = await wasmEngine('serve', '--no-such-setting');
    expect(answer.code).toBe(2);
    expect(answer.stderr).toMatch(/Unknown option '--no-such-setting'[\s\S]*usage: wasm-engine serve/);
  });
});
