/**
 * A REAL PostgreSQL server for tests: Debian's binaries (/usr/lib/postgresql/<v>/bin), `initdb`
 * into a temporary directory, `pg_ctl` on a free loopback port, run as an unprivileged user (the
 * server refuses to run as root, and tests run as root in CI: Debian's package creates `postgres`).
 * The same cluster can be stopped and started again on the same port (a database outage under
 * load), or killed (a crash). Only ever listens on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';

const run = promisify(execFile);

export interface RunningPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  /** postgresql://USER:PASSWORD@127.0.0.1:PORT/DB (default database: `postgres`). */
  url(database?: string): string;
  /** Creates a fresh, empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Runs SQL through psql as the superuser; returns psql's unaligned, tuples-only output. */
  sql(query: string, database?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections are closed); the data directory is kept. */
  stopServer(): Promise<void>;
  /** Starts the same cluster again on the same port. */
  startServer(): Promise<void>;
  /** SIGKILL the postmaster, as a crash (the children follow); startServer() recovers. */
  killServer(): Promise<void>;
  running(): boolean;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's binary directory, or undefined when none is installed. */
export async function postgresBinDir(): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = await readdir(root);
  } catch {
    return undefined;
  }
  const sorted = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  return sorted.length > 0 ? path.join(root, sorted[0]!, 'bin') : undefined;
}


/** uid/gid of the unprivileged account the server runs as when we are root. */
async function serverAccount(): Promise<{ uid: number; gid: number; name: string } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const name = 'postgres';
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    const gid = Number((await run('id', ['-g', name])).stdout.trim());
    return { uid, gid, name };
  } catch {
    throw new Error(`tests run as root and there is no '${name}' user to run PostgreSQL as (install Debian's postgresql package)`);
  }
}

let databases = 0;

export async function startPostgres(): Promise<RunningPostgres> {
  const bin = await postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed (/usr/lib/postgresql/*/bin): run scripts/ensure-tools.sh');
  const account = await serverAccount();
  const root = await mkdtemp(path.join(tmpdir(), 'we-pg-'));
  const dataDir = path.join(root, 'data');
  const socketDir = root;
  const logFile = path.join(root, 'server.log');
  const user = 'wasm';
  const password = randomBytes(12).toString('hex');
  const pwFile = path.join(root, 'pwfile');
  await writeFile(pwFile, `${password}\n`);
  if (account) {
    await chown(root, account.uid, account.gid);
    await chown(pwFile, account.uid, account.gid);
  }
  await chmod(root, 0o700);
  await chmod(pwFile, 0o600);

  // As the unprivileged account when we are root; setpriv keeps the environment and needs no PAM.
  const asServer = (cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> => {
    const env = { ...process.env, LC_ALL: 'C.UTF-8', PGPASSWORD: password };
    if (!account) return run(path.join(bin, cmd), args, { env, maxBuffer: 64 * 1024 * 1024 });
    return run('setpriv', [`--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups', path.join(bin, cmd), ...args], {
      env,
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
    });
  };

  await asServer('initdb', ['-D', dataDir, '-U', user, '--pwfile', pwFile, '-A', 'scram-sha-256', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  // Tests start and drop many connections and databases; fsync is off, as the data is thrown away.
  const options = [
    `-c listen_addresses=127.0.0.1`,
    `-c port=${port}`,
    `-c unix_socket_directories='${socketDir}'`,
    `-c fsync=off`,
    `-c synchronous_commit=off`,
    `-c full_page_writes=off`,
    `-c max_connections=200`,
    `-c shared_buffers=16MB`,
  ].join(' ');
  let up = false;
  const startServer = async (): Promise<void> => {
    await asServer('pg_ctl', ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start']);
    up = true;
  };
  const stopServer = async (): Promise<void> => {
    await asServer('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    up = false;
  };
  await startServer();
  live.add(dataDir);

  const url = (database = 'postgres'): string => `postgresql://${user}:${password}@127.0.0.1:${port}/${database}`;
  const sql = async (query: string, database = 'postgres'): Promise<string> => {
    const { stdout } = await asServer('psql', [
      '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', database, '-c', query,
    ]);
    return stdout.trim();
  };
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    url,
    sql,
    async createDatabase(name) {
      databases += 1;
      const db = name ?? `we_${process.pid}_${databases}_${randomBytes(3).toString('hex')}`;
      await sql(`CREATE DATABASE "${db}"`);
      return url(db);
    },
    stopServer,
    startServer,
    async killServer() {
      const pid = postmasterPid(dataDir);
      if (pid !== undefined) {
        process.kill(pid, 'SIGKILL');
        // The backends notice their postmaster is gone and exit; a start then recovers from the WAL.
        for (let i = 0; i < 400 && alive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 25));
      }
      up = false;
    },
    running: () => up,
    async stop() {
      if (up) await stopServer().catch(() => undefined);
      live.delete(dataDir);
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Clusters still running, stopped (immediate mode) if the test process exits without stopping them. */
const live = new Set<string>();
process.once('exit', () => {
  for (const dataDir of live) {
    const pid = postmasterPid(dataDir);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // Already gone.
      }
    }
  }
});

/** The postmaster's pid: the first line of its lock file, while it runs. */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
