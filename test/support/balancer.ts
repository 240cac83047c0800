/**
 * A REAL load balancer in front of several engines: Debian's `haproxy` (/usr/sbin/haproxy), its
 * configuration written to a temporary directory, listening on a free 127.0.0.1 port, checking every
 * engine's GET /readyz so that it stops sending requests to one that is dead or not ready. The
 * admin socket in the same directory tells the tests when haproxy has marked a server down or up.
 * Only ever talks to 127.0.0.1.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
export { freePort } from './free-port.js';
import { freePort } from './free-port.js';

const run = promisify(execFile);

/** Where Debian installs haproxy; /usr/sbin is not on every user's PATH. */
export const HAPROXY_CANDIDATES = ['/usr/sbin/haproxy', '/usr/bin/haproxy'];

export function haproxyBinary(): string {
  const found = HAPROXY_CANDIDATES.find((path) => existsSync(path));
  if (found === undefined) throw new Error(`haproxy not found in ${HAPROXY_CANDIDATES.join(', ')}: run scripts/ensure-tools.sh (Debian package haproxy)`);
  return found;
}

export interface BalancerOptions {
  /** Milliseconds between two health checks of a server (default 100). */
  checkIntervalMs?: number;
  /** Failed checks before a server is marked down (default 2). */
  fall?: number;
  /** Passed checks before a server is marked up again (default 2). */
  rise?: number;
}

export type ServerState = 'UP' | 'DOWN' | 'MAINT' | string;

export interface RunningBalancer {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The server names, in the order of the backends given: `node0`, `node1`, … */
  servers: string[];
  /** Each server's state as haproxy sees it now (`UP`, `DOWN`, `UP 1/2`, `DOWN 1/2` while changing). */
  states(): Promise<Record<string, ServerState>>;
  /** Resolves when `server` is in `state` (polls the admin socket, bounded). */
  waitFor(server: string, state: 'UP' | 'DOWN'): Promise<void>;
  /** Everything haproxy wrote. */
  output: string[];
  stop(): Promise<void>;
}

/** Children still running, killed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});


/** `http://127.0.0.1:PORT` → `127.0.0.1:PORT`; anything but loopback is refused. */
function hostPort(url: string): string {
  const parsed = new URL(url);
  if (parsed.hostname !== '127.0.0.1') throw new Error(`balancer backends must be on 127.0.0.1, not ${url}`);
  return `${parsed.hostname}:${parsed.port}`;
}

/**
 * The configuration: round robin over the engines, a server is taken out after `fall` failed
 * /readyz checks and back after `rise` good ones. A connection refused by a server (the engine is
 * dead but not marked down yet) is retried on another one (`retries` + `redispatch`); a request
 * already sent is never replayed, since a management POST is not idempotent.
 */
export function haproxyConfig(port: number, backends: string[], socket: string, options: BalancerOptions = {}): string {
  const inter = options.checkIntervalMs ?? 100;
  return [
    'global',
    '  maxconn 4096',
    `  stats socket ${socket} mode 600 level admin`,
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout check 1s',
    '  retries 3',
    '  option redispatch 1',
    'frontend engines_in',
    `  bind 127.0.0.1:${port}`,
    '  default_backend engines',
    'backend engines',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall ${options.fall ?? 2} rise ${options.rise ?? 2}`,
    ...backends.map((url, i) => `  server node${i} ${hostPort(url)} check`),
    '',
  ].join('\n');
}

/** One command on the admin socket; resolves with haproxy's whole answer. */
async function admin(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const conn = connect(socket);
    let answer = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => (answer += chunk));
    conn.once('error', reject);
    conn.once('end', () => resolve(answer));
    conn.write(`${command}\n`);
  });
}

export async function startBalancer(backends: string[], options: BalancerOptions = {}): Promise<RunningBalancer> {
  const bin = haproxyBinary();
  const dir = await mkdtemp(join(tmpdir(), 'we-haproxy-'));
  const port = await freePort();
  const socket = join(dir, 'admin.sock');
  const config = join(dir, 'haproxy.cfg');
  await writeFile(config, haproxyConfig(port, backends, socket, options));
  await run(bin, ['-c', '-q', '-f', config]);
  // -db: stay in the foreground, so that the child is haproxy itself and SIGTERM stops it.
  const child = spawn(bin, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const output: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') output.push(line);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const servers = backends.map((_, i) => `node${i}`);

  const states = async (): Promise<Record<string, ServerState>> => {
    // `show stat` is CSV: pxname,svname,…,status (column 18) …
    const csv = await admin(socket, 'show stat');
    const header = csv.split('\n')[0]!.replace(/^# /, '').split(',');
    const status = header.indexOf('status');
    const result: Record<string, ServerState> = {};
    for (const line of csv.split('\n').slice(1)) {
      const cells = line.split(',');
      if (cells[0] === 'engines' && servers.includes(cells[1]!)) result[cells[1]!] = cells[status]!;
    }
    return result;
  };

  // Ready once the admin socket answers and the port accepts (haproxy binds both before serving).
  let ready = false;
  for (let i = 0; i < 200 && !ready && child.exitCode === null; i++) {
    try {
      await states();
      ready = true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  if (!ready) {
    child.kill('SIGKILL');
    throw new Error(`haproxy did not start:\n${output.join('\n')}`);
  }

  return {
    url: `http://127.0.0.1:${port}`,
    servers,
    output,
    states,
    async waitFor(server, state) {
      // Bounded: 600 polls 25 ms apart, far beyond fall × inter.
      for (let i = 0; i < 600; i++) {
        const now = (await states())[server];
        if (now === state) return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`haproxy never marked ${server} ${state}: ${JSON.stringify(await states())}`);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      live.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
