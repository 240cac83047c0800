/**
 * Several engines sharing one REAL PostgreSQL store, behind a REAL haproxy: what a user runs to
 * scale out (`wasm-engine serve --store postgresql://… --node-name NAME`, one process per port).
 * Each engine has its own data directory (its verified local copies of modules) and a fixed
 * loopback port, so that a restarted engine comes back where the balancer expects it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { startBalancer, freePort, type BalancerOptions, type RunningBalancer } from './balancer.js';
import { CLI, REPO_ROOT, makeDataDir, startEngineProcess, type EngineProcess } from './engine-process.js';
import { call, type Answer } from './http.js';
import { startPostgres, type RunningPostgres } from './postgres.js';

export interface ClusterNode {
  name: string;
  port: number;
  url: string;
  dataDir: string;
  /** The running process; replaced by restart(). */
  engine: EngineProcess;
}

export interface Cluster {
  pg: RunningPostgres;
  /** The `--store` URL every node was given. */
  store: string;
  nodes: ClusterNode[];
  /** haproxy over every node, when asked for. */
  balancer?: RunningBalancer;
  /** Starts node i again (after kill or stop): same port, data directory and node name. */
  restart(i: number): Promise<ClusterNode>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  balancer?: boolean | BalancerOptions;
  /** Extra `serve` flags for every node. */
  args?: string[];
}

/** The flags that make an engine a member of the cluster: one worker each, as 3 share 2 cores. */
export function memberArgs(store: string, name: string, port: number, extra: string[] = []): string[] {
  return ['--store', store, '--node-name', name, '--port', String(port), '--workers', '1', ...extra];
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const pg = await startPostgres();
  const store = await pg.createDatabase();
  const count = options.nodes ?? 3;
  const nodes: ClusterNode[] = [];
  const start = async (name: string, port: number, dataDir: string): Promise<EngineProcess> =>
    startEngineProcess({ dataDir, args: memberArgs(store, name, port, options.args) });
  try {
    // One after the other: the first creates the schema, and two cores are shared.
    for (let i = 0; i < count; i++) {
      const name = `node-${i}`;
      const port = await freePort();
      const dataDir = await makeDataDir();
      const engine = await start(name, port, dataDir);
      nodes.push({ name, port, url: engine.url, dataDir, engine });
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.engine.kill()));
    await pg.stop();
    throw err;
  }
  let balancer: RunningBalancer | undefined;
  if (options.balancer) {
    balancer = await startBalancer(
      nodes.map((n) => n.url),
      typeof options.balancer === 'object' ? options.balancer : {},
    );
    for (const server of balancer.servers) await balancer.waitFor(server, 'UP');
  }
  return {
    pg,
    store,
    nodes,
    balancer,
    async restart(i) {
      const node = nodes[i]!;
      node.engine = await start(node.name, node.port, node.dataDir);
      return node;
    },
    async stop() {
      await balancer?.stop();
      await Promise.all(nodes.map((n) => n.engine.kill()));
      await pg.stop();
      await Promise.all(nodes.map((n) => rm(n.dataDir, { recursive: true, force: true })));
    },
  };
}

/**
 * An engine started without waiting for it to listen: for a node started while the database is
 * down, whose log must say so before it can serve.
 */
export interface LaunchedEngine {
  child: ChildProcess;
  output: string[];
  /** Resolves with the first output line matching `pattern` (bounded by `ms`). */
  waitForLine(pattern: RegExp, ms?: number): Promise<string>;
  kill(): Promise<void>;
}

export function launchEngine(dataDir: string, args: string[]): LaunchedEngine {
  const child = spawn(process.execPath, [CLI, 'serve', '--data-dir', dataDir, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line === '') continue;
      output.push(line);
      for (const waiter of waiters) {
        if (waiter.pattern.test(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output,
    waitForLine(pattern, ms = 30_000) {
      const seen = output.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = { pattern, resolve: (line: string) => (clearTimeout(timer), resolve(line)) };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no line matching ${pattern} within ${ms} ms:\n${output.join('\n')}`));
        }, ms);
        waiters.add(waiter);
        void exited.then(() => {
          if (!waiters.has(waiter)) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(new Error(`engine exited before a line matching ${pattern}:\n${output.join('\n')}`));
        });
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * Polls `probe` until it returns something other than undefined: a bounded number of tries a few
 * milliseconds apart, never a sleep standing in for the event.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, tries = 1200, everyMs = 10): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export const deployBody = (name: string, image: string, extra: Record<string, unknown> = {}) => ({
  function_name: name,
  function_image: image,
  ...extra,
});

/** POST /function/invoke with the JSON answer. */
export async function invoke(base: string, name: string, args: Record<string, unknown> = {}): Promise<Answer> {
  return call(base, 'POST', '/function/invoke', { function_name: name, args }, { json: true });
}

/** The function names a node lists (GET /function/list, JSON). */
export async function listed(base: string): Promise<string[]> {
  const answer = await call(base, 'GET', '/function/list', undefined, { json: true });
  if (answer.status !== 200) throw new Error(`list: ${answer.status} ${answer.text}`);
  return (answer.json.functions as { func_name: string }[]).map((f) => f.func_name).sort();
}

/** One request made by a load loop: when it started and ended (performance.now()), how it ended. */
export interface Outcome {
  start: number;
  end: number;
  /** The HTTP status, or 0 when the connection failed. */
  status: number;
  text: string;
}

export interface Load {
  outcomes: Outcome[];
  /** Resolves once at least `count` more requests have ended (bounded by `ms`). */
  more(count: number, ms?: number): Promise<void>;
  /** Ends the loops after their current request; resolves with every outcome. */
  stop(): Promise<Outcome[]>;
}

/**
 * `loops` clients each sending one request after the other (never more in flight than `loops`), as
 * long as the test runs: load enough to cross a failure, small enough for two shared cores.
 */
export function startLoad(send: (loop: number, i: number) => Promise<Answer>, loops = 4): Load {
  const outcomes: Outcome[] = [];
  let running = true;
  const waiters = new Set<{ target: number; resolve: () => void }>();
  const record = (outcome: Outcome): void => {
    outcomes.push(outcome);
    for (const w of waiters) {
      if (outcomes.length >= w.target) {
        waiters.delete(w);
        w.resolve();
      }
    }
  };
  const loop = async (n: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const start = performance.now();
      try {
        const answer = await send(n, i);
        record({ start, end: performance.now(), status: answer.status, text: answer.text });
      } catch (err) {
        record({ start, end: performance.now(), status: 0, text: String(err) });
      }
    }
  };
  const all = Promise.all(Array.from({ length: loops }, (_, n) => loop(n)));
  return {
    outcomes,
    more(count, ms = 30_000) {
      const target = outcomes.length + count;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`load: ${count} more requests did not end within ${ms} ms`)), ms);
        waiters.add({ target, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    async stop() {
      running = false;
      await all;
      return outcomes;
    },
  };
}

/** Counts by status, for messages: `{"200": 812, "0": 2}`. */
export function byStatus(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.status] = (counts[o.status] ?? 0) + 1;
  return counts;
}

/**
 * Bounds for a cluster file's set-up and tests: PostgreSQL, three engines and haproxy start one
 * after the other on two shared cores, beside other test files; each wait inside is bounded itself.
 */
export const CLUSTER_START_MS = 180_000;
export const CLUSTER_TEST_MS = 180_000;
