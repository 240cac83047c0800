// A throw-away PostgreSQL for the cluster bench: Debian's binaries (/usr/lib/postgresql/<v>/bin),
// initdb into a temporary directory, pg_ctl on a free 127.0.0.1 port, as the `postgres` account
// when we run as root (the server refuses root). The tests have the same in test/support/postgres.ts
// (TypeScript, which the bench, plain Node.js, cannot import).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, tempDir } from './processes.mjs';

const run = promisify(execFile);

function binDir() {
  const root = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    // not installed
  }
  if (versions.length === 0) throw new Error('PostgreSQL is not installed (/usr/lib/postgresql/*/bin): run scripts/ensure-tools.sh');
  return join(root, versions[0], 'bin');
}

/** Starts a server with one database `wasm`; resolves with its URL and a stop(). */
export async function startPostgres() {
  const bin = binDir();
  const root = tempDir('we-bench-pg-');
  const data = join(root, 'data');
  const password = randomBytes(12).toString('hex');
  const pwFile = join(root, 'pwfile');
  writeFileSync(pwFile, `${password}\n`);
  let account;
  if (process.getuid?.() === 0) {
    const id = async (flag) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
    account = { uid: await id('-u'), gid: await id('-g') };
    chownSync(root, account.uid, account.gid);
    chownSync(pwFile, account.uid, account.gid);
  }
  chmodSync(root, 0o700);
  const env = { ...process.env, LC_ALL: 'C.UTF-8', PGPASSWORD: password };
  const as = (cmd, args) =>
    account
      ? run('setpriv', [`--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups', join(bin, cmd), ...args], { env, cwd: root })
      : run(join(bin, cmd), args, { env });
  await as('initdb', ['-D', data, '-U', 'wasm', '--pwfile', pwFile, '-A', 'scram-sha-256', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const options = `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories='${root}' -c max_connections=200`;
  await as('pg_ctl', ['-D', data, '-l', join(root, 'server.log'), '-o', options, '-w', '-t', '60', 'start']);
  await as('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'wasm', '-d', 'postgres', '-c', 'CREATE DATABASE wasm']);
  return {
    url: `postgresql://wasm:${password}@127.0.0.1:${port}/wasm`,
    async stop() {
      await as('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
