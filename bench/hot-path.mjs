// The engine's own CPU per invocation on its HTTP thread, without the kernel: what the hot path's
// code costs, apart from the socket write every server pays (docs/hot-path.md).
//
//   node bench/hot-path.mjs [--base DIR] [--rounds N]
//
// For gcd and authentication, in a fresh process each (pinned to CPU 0 with taskset when there is
// one), two figures per build:
//   invoke   µs per `await engine.invoke(...)`, one call at a time (startEngine from dist/app.js);
//   http     CPU µs of this thread per POST /function/invoke answered by the invocation route
//            behind a node:http server with the guards an HTTP thread puts before it (over this
//            thread's engine), fed by 32 in-memory connections (no socket, no kernel), each
//            sending its next request once its answer is written;
// and the http figure of a bare node:http server doing the same call (bench/bare-node). With
// --base DIR (another checkout, built), that build is measured too, alternating with this one
// round after round, and the ratios are printed. Medians of 7 batches per figure.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CASES = {
  gcd: { args: { a: '12', b: '18' } },
  authentication: { args: { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' } },
};
const BATCHES = 7;

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'string' },
    fn: { type: 'string' },
  },
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (values.child !== undefined) {
  const result = await child(values.child, values.fn);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} else {
  parent();
}

function parent() {
  const builds = [['this', HERE], ...(values.base ? [['base', resolve(values.base)]] : [])];
  const rounds = Number(values.rounds);
  const pin = hasTaskset() ? ['taskset', '-c', '0'] : [];
  const figures = {}; // `${build} ${fn} ${what}` → [values]
  const add = (key, value) => (figures[key] ??= []).push(value);
  for (let round = 1; round <= rounds; round++) {
    for (const [label, root] of [...builds, ['bare', 'bare']]) {
      for (const fn of Object.keys(CASES)) {
        const [command, ...rest] = [...pin, process.execPath, '--max-semi-space-size=8', '--no-wasm-lazy-compilation', fileURLToPath(import.meta.url), '--child', root, '--fn', fn];
        const run = spawnSync(command, rest, { encoding: 'utf8', timeout: 300_000 });
        const line = run.stdout.trim().split('\n').pop() ?? '';
        if (run.status !== 0 || !line.startsWith('{')) throw new Error(`${label} ${fn} failed: ${run.stderr || run.stdout}`);
        const result = JSON.parse(line);
        if (result.invokeUs !== undefined) add(`${label} ${fn} invoke`, result.invokeUs);
        add(`${label} ${fn} http`, result.httpUs);
        process.stdout.write(`round ${round} ${label.padEnd(4)} ${fn.padEnd(14)} ${result.invokeUs === undefined ? '' : `invoke ${result.invokeUs.toFixed(2)} µs  `}http ${result.httpUs.toFixed(2)} CPU µs/request\n`);
      }
    }
  }
  process.stdout.write('\nmedian of the rounds\n');
  for (const fn of Object.keys(CASES)) {
    for (const what of ['invoke', 'http']) {
      const row = [`${fn.padEnd(14)} ${what.padEnd(6)}`];
      const m = (label) => (figures[`${label} ${fn} ${what}`] ? median(figures[`${label} ${fn} ${what}`]) : undefined);
      for (const label of ['this', 'base', 'bare']) if (m(label) !== undefined) row.push(`${label} ${m(label).toFixed(2)}`);
      if (m('base') !== undefined) row.push(`this/base ${(m('this') / m('base')).toFixed(3)}`);
      if (m('bare') !== undefined) row.push(`this/bare ${(m('this') / m('bare')).toFixed(2)}`);
      process.stdout.write(`${row.join('   ')}\n`);
    }
  }
}

function hasTaskset() {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function child(root, fn) {
  const body = JSON.stringify({ function_name: fn, args: CASES[fn].args });
  if (root === 'bare') {
    const { bareFunctions } = await import(join(HERE, 'bench/bare-node/functions.mjs'));
    const answerFor = bareFunctions(join(HERE, 'examples/build/wasm'));
    // As bench/bare-node/server.mjs answers.
    const server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const { status, text } = answerFor(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
    });
    return { httpUs: await httpCpuPerRequest(server, body) };
  }
  const { startEngine, createLogger } = await import(join(root, 'dist/app.js'));
  const { resolveConfig } = await import(join(root, 'dist/config/settings.js'));
  const dir = mkdtempSync(join(tmpdir(), 'hot-path-'));
  try {
    const config = resolveConfig({ port: '0', host: '127.0.0.1', 'data-dir': dir, 'log-level': 'warn', 'http-threads': '1', workers: '1' }, {});
    const running = await startEngine(config, createLogger(config));
    try {
      await running.engine.deploy({ name: fn, image: `file:${join(root, 'examples/build/wasm', `${fn}.wasm`)}` });
      const invokeUs = await invokePerCall(running.engine, fn);
      const httpUs = await httpCpuPerRequest(await routeServer(root, running), body);
      return { invokeUs, httpUs };
    } finally {
      await running.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The server an HTTP thread puts in front of the invocation route (threads/http-thread.ts): the
 * route, the connection guards and, in builds that have it, the connection reader in front of
 * them all, here over this thread's engine. Builds from before the main thread stopped accepting
 * connections answered invocations on the main server itself; theirs is measured as it was.
 */
async function routeServer(root, running) {
  const { invokeRoute, isInvokeRequest, InvokeCalls } = await import(join(root, 'dist/api/invoke-route.js'));
  const { gatePipelinedRequests } = await import(join(root, 'dist/api/pipeline-gate.js'));
  const { refuseRequestsWithoutHost } = await import(join(root, 'dist/api/client-errors.js'));
  // hostAddresses came with the threads reading every connection.
  if ((await import(join(root, 'dist/api/listen.js'))).hostAddresses === undefined) return running.app.server;
  const options = { engine: running.engine, bodyLimitBytes: 1024 * 1024, logError: () => {} };
  // InvokeCalls came with the connection reader on the threads.
  const calls = InvokeCalls === undefined ? undefined : new InvokeCalls(options);
  const route = invokeRoute(options, calls);
  const server = createServer((req, res) => {
    if (isInvokeRequest(req)) route(req, res);
    else res.writeHead(404).end();
  });
  gatePipelinedRequests(server);
  refuseRequestsWithoutHost(server);
  if (calls !== undefined) {
    const { InvokeConnections } = await import(join(root, 'dist/api/invoke-connection.js'));
    new InvokeConnections({ server, calls, bodyLimitBytes: options.bodyLimitBytes, active: () => true, logError: () => {} }).install();
  }
  return server;
}

async function invokePerCall(engine, name) {
  const { args } = CASES[name];
  for (let i = 0; i < 20_000; i++) await engine.invoke({ name, args });
  const batches = [];
  for (let b = 0; b < BATCHES; b++) {
    const n = 40_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await engine.invoke({ name, args });
    batches.push(((performance.now() - started) * 1000) / n);
  }
  return median(batches);
}

/** CPU µs of this thread per request answered by `server`, on 32 in-memory keep-alive connections. */
async function httpCpuPerRequest(server, body) {
  const request = Buffer.from(
    `POST /function/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  const answerStart = Buffer.from('HTTP/1.1 ');
  let answered = 0;
  let target = Infinity;
  let reached = () => {};
  /** A connection as Node's server sees one: bytes in, answers out; the next request once an answer is written. */
  class Connection extends Duplex {
    constructor() {
      super();
      Object.assign(this, { remoteAddress: '127.0.0.1', remotePort: 40000, remoteFamily: 'IPv4', localAddress: '127.0.0.1', localPort: 8080 });
    }
    _read() {}
    _write(chunk, _encoding, done) {
      this.written(chunk);
      done();
    }
    _writev(chunks, done) {
      for (const { chunk } of chunks) this.written(chunk);
      done();
    }
    written(chunk) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (bytes.indexOf(answerStart) !== 0) return;
      if (!bytes.includes(' 200 ')) throw new Error(`not a success: ${bytes.toString().slice(0, 200)}`);
      if (++answered === target) reached();
      // The next request comes in a later turn of the event loop, as a socket's next read would.
      setImmediate(() => this.push(request));
    }
    setTimeout() {
      return this;
    }
    setNoDelay() {
      return this;
    }
    setKeepAlive() {
      return this;
    }
  }
  const connections = Array.from({ length: 32 }, () => new Connection());
  const until = (n) =>
    new Promise((resolve) => {
      target = answered + n;
      reached = resolve;
    });
  const warm = until(20_000);
  for (const connection of connections) {
    server.emit('connection', connection);
    connection.push(request);
  }
  await warm;
  const cpu = () => {
    const usage = process.threadCpuUsage();
    return usage.user + usage.system;
  };
  const batches = [];
  for (let b = 0; b < BATCHES; b++) {
    const n = 40_000;
    const started = cpu();
    await until(n);
    batches.push((cpu() - started) / n);
  }
  for (const connection of connections) connection.destroy();
  return median(batches);
}
