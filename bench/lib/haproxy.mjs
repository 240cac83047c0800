// Debian's haproxy in front of engines for the cluster bench: round robin, /readyz health checks,
// the same configuration as test/support/balancer.ts (which the tests use), on a free loopback port.
import { execFile, spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, kill, tempDir } from './processes.mjs';

const run = promisify(execFile);

const showStat = (socket) =>
  new Promise((resolve, reject) => {
    const conn = connect(socket);
    let answer = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk) => (answer += chunk));
    conn.once('error', reject);
    conn.once('end', () => resolve(answer));
    conn.write('show stat\n');
  });

/** Starts haproxy over `backends` (http://127.0.0.1:PORT URLs); resolves once every server is UP. */
export async function startHaproxy(backends) {
  const bin = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));
  if (!bin) throw new Error('haproxy is not installed (/usr/sbin/haproxy): run scripts/ensure-tools.sh');
  const dir = tempDir('we-bench-haproxy-');
  const port = await freePort();
  const socket = join(dir, 'admin.sock');
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    [
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
      '  default-server inter 100ms fall 2 rise 2',
      ...backends.map((url, i) => `  server node${i} ${new URL(url).host} check`),
      '',
    ].join('\n'),
  );
  await run(bin, ['-c', '-q', '-f', config]);
  const child = spawn(bin, ['-db', '-f', config], { stdio: 'ignore' });
  const stop = async () => {
    await kill(child, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 400; i++) {
    const csv = await showStat(socket).catch(() => '');
    const up = csv.split('\n').filter((line) => line.startsWith('engines,node') && line.split(',')[17] === 'UP').length;
    if (up === backends.length) return { url: `http://127.0.0.1:${port}`, stop };
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  await stop();
  throw new Error('haproxy did not mark every engine UP');
}
