#!/usr/bin/env node
// Writes dist/build-info.json after `npm run build` (npm's postbuild): the commit the engine was
// built from, which /system/info reports. The commit is WASM_ENGINE_COMMIT when set (an image
// build without .git), else `git rev-parse HEAD` of this checkout, with `dirty` true when tracked
// files differ from it; else "unknown". Never a commit of some other repository that happens to
// contain this directory (an unpacked package inside a project, say).
import { execFileSync } from 'node:child_process';
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = realpathSync(join(dirname(fileURLToPath(import.meta.url)), '..'));

function git(args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function fromCheckout() {
  const top = git(['rev-parse', '--show-toplevel']);
  if (top === undefined || realpathSync(top) !== root) return undefined;
  const head = git(['rev-parse', 'HEAD']);
  if (head === undefined || !/^[0-9a-f]{40}$/.test(head)) return undefined;
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return { commit: head, dirty: status === undefined ? null : status !== '', source: 'git' };
}

const given = process.env.WASM_ENGINE_COMMIT?.trim();
const info = given
  ? { commit: given, dirty: null, source: 'WASM_ENGINE_COMMIT' }
  : (fromCheckout() ?? { commit: 'unknown', dirty: null, source: 'none' });

// Another file than dist/build-info.json when named (the tests compare a fresh one with git).
const out = process.argv[2] ?? join(root, 'dist', 'build-info.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(info, null, 2)}\n`);
