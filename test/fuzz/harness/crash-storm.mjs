/**
 * kill -9 during a storm of deploys, updates and deletes, then a restart on the same data
 * directory: every change the engine acknowledged (answered 2xx) must be there, a change cut short
 * must be whole or absent, every listed function must answer, and the data directory must hold
 * nothing but the index, the lock and the blobs of listed functions.
 *
 * Each function name has its own stream of operations, one at a time, so the state of a name is
 * known exactly but for the one operation that was in flight when the process died: either its
 * before or its after is then right.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { callJson, makeDataDir, startEngine } from './engine.mjs';
import { REPO_ROOT } from './dist.mjs';
import { Rng } from './prng.mjs';

const WASM = join(REPO_ROOT, 'examples', 'build', 'wasm');
/** Images with the call that must answer what is given. */
const IMAGES = {
  gcd: { file: join(WASM, 'gcd.wasm'), entrypoint: 'gcd', args: ['12', '18'], output: '6' },
  'add-one': { file: join(WASM, 'add-one.wasm'), entrypoint: 'add-one', args: ['41'], output: '42' },
  hello: { file: join(WASM, 'hello.wasm'), entrypoint: undefined, args: [], output: 'Hello, Budda!' },
};
const ABSENT = 'absent';

async function operate(url, name, op, image) {
  const img = IMAGES[image];
  switch (op) {
    case 'deploy':
      return callJson(url, 'POST', '/function/deploy', {
        function_name: name,
        function_image: `file:${img.file}`,
        ...(img.entrypoint ? { entrypoint: img.entrypoint } : {}),
      });
    case 'update':
      return callJson(url, 'PUT', '/system/functions', {
        service: name,
        image: `file:${img.file}`,
        ...(img.entrypoint ? { annotations: { 'com.wasmengine.entrypoint': img.entrypoint } } : {}),
      });
    default:
      return callJson(url, 'POST', '/function/delete', { function_name: name });
  }
}

/** The state of `name` after `op` answered `status`. */
function next(state, op, image, status) {
  if (status < 200 || status > 299) return state;
  return op === 'delete' ? ABSENT : image;
}

/** Everything under `dir`, as paths relative to it. */
function walk(dir, prefix = '') {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(path).isDirectory()) out.push(`${rel}/`, ...walk(path, rel));
    else out.push(rel);
  }
  return out;
}

/**
 * Checks a restarted engine against the model; returns the problems, the stray temp files apart
 * (see the bounded test), and the model resolved to what the engine holds.
 */
async function verify(engine, model) {
  const problems = [];
  const list = await callJson(engine.url, 'GET', '/function/list');
  const listed = new Map((list.json?.functions ?? []).map((f) => [f.func_name, f]));
  const resolved = new Map();
  for (const [name, possible] of model) {
    const entry = listed.get(name);
    const actual = entry ? Object.keys(IMAGES).find((img) => entry.func_image_name === `file:${IMAGES[img].file}`) ?? entry.func_image_name : ABSENT;
    if (!possible.includes(actual)) problems.push(`${name} is ${actual} after the restart, but must be ${possible.join(' or ')}`);
    resolved.set(name, [actual]);
  }
  for (const name of listed.keys()) if (!model.has(name)) problems.push(`${name} is listed but was never deployed`);
  let invoked = 0;
  for (const [name, entry] of listed) {
    const image = Object.keys(IMAGES).find((img) => entry.func_image_name === `file:${IMAGES[img].file}`);
    if (!image) continue;
    const answer = await callJson(engine.url, 'POST', '/function/invoke', { function_name: name, args: IMAGES[image].args });
    invoked++;
    if (answer.status !== 200 || answer.json?.output !== IMAGES[image].output) {
      problems.push(`${name} (${image}) answered ${answer.status} ${answer.text.slice(0, 200)} after the restart`);
    }
  }
  const digests = new Set([...listed.values()].map((f) => String(f.digest).replace(/^sha256:/, '')));
  const strayTemp = [];
  for (const path of walk(engine.dataDir)) {
    if (path === 'functions.json' || path === 'blobs/' || path === 'blobs/sha256/') continue;
    // The lock is a directory with its owner file; a lock taken over from a killed engine is kept
    // as engine.lock.dead-<token> for a minute (src/store/data-dir-lock.ts says why).
    if (/^engine\.lock(\.dead-[0-9a-f]+)?\/(owner)?$/.test(path)) continue;
    const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(path);
    if (blob && digests.has(blob[1])) continue;
    if (/(^|\/)\.tmp-/.test(path)) strayTemp.push(path);
    else problems.push(`stray file in the data directory: ${path}`);
  }
  return { problems, strayTemp, resolved, invoked };
}

/**
 * @param {{ seed: number, kills: number, names?: number, log?: (line: string) => void }} options
 */
export async function runCrashStorm(options) {
  const { seed, kills, names = 5, log = () => {} } = options;
  const rng = new Rng(seed);
  const dataDir = makeDataDir();
  const stats = { kills: 0, operations: 0, acknowledged: 0, cutShort: 0, restarts: 0, invokedAfterRestart: 0, problems: [], strayTemp: [] };
  /** name → the states it may be in. */
  let model = new Map(Array.from({ length: names }, (_, i) => [`f${i}`, [ABSENT]]));
  const args = ['--workers', '1'];
  for (let round = 0; round <= kills; round++) {
    const engine = await startEngine({ dataDir, args });
    try {
      await stormRound(engine, round);
    } finally {
      // Whatever failed, no engine is left running.
      if (engine.alive) await engine.kill();
    }
    if (round === kills) break;
  }
  return { ...stats, dataDir };

  async function stormRound(engine, round) {
    if (round > 0) {
      stats.restarts++;
      const checked = await verify(engine, model);
      stats.invokedAfterRestart += checked.invoked;
      for (const p of checked.problems) stats.problems.push(`seed ${seed}, after kill ${round}: ${p}`);
      for (const p of checked.strayTemp) stats.strayTemp.push(`seed ${seed}, after kill ${round}: ${p}`);
      model = checked.resolved;
    }
    if (round === kills) {
      const code = await engine.stop();
      if (code !== 0) stats.problems.push(`the engine stopped with ${code}`);
      return;
    }
    // One stream of operations per name, until the kill.
    let killed = false;
    // The kill comes after a random number of acknowledged operations of this round, then a
    // random few milliseconds more: a moment inside the storm, however slow the machine is.
    const ackTarget = stats.acknowledged + rng.int(1, 8);
    let ackReached;
    const acked = new Promise((resolve) => {
      ackReached = resolve;
    });
    const streams = [...model.keys()].map(async (name) => {
      const nameRng = rng.fork(name.length + Number(name.slice(1)));
      while (!killed) {
        const state = model.get(name)[0];
        const op = state === ABSENT ? (nameRng.chance(0.8) ? 'deploy' : nameRng.pick(['update', 'delete'])) : nameRng.pick(['update', 'update', 'delete', 'deploy']);
        const image = nameRng.pick(Object.keys(IMAGES));
        stats.operations++;
        let answer;
        try {
          answer = await operate(engine.url, name, op, image);
        } catch {
          // No answer: the process died with the operation in flight. Before or after are both right.
          const after = op === 'delete' ? ABSENT : image;
          model.set(name, [...new Set([state, after])]);
          stats.cutShort++;
          return;
        }
        if (answer.status >= 500 && !killed) stats.problems.push(`seed ${seed}: ${op} ${name} ${image} answered ${answer.status} ${answer.text.slice(0, 200)}`);
        if (answer.status >= 200 && answer.status < 300 && !killed) {
          stats.acknowledged++;
          if (stats.acknowledged >= ackTarget) ackReached();
        }
        model.set(name, [next(state, op, image, answer.status)]);
      }
    });
    const delay = rng.int(0, 60);
    // Bounded: a storm that acknowledges nothing in a minute is killed all the same (and says so).
    let stalled;
    await Promise.race([acked, new Promise((resolve) => { stalled = setTimeout(resolve, 60_000); })]);
    clearTimeout(stalled);
    if (stats.acknowledged < ackTarget) stats.problems.push(`seed ${seed}: the storm did not reach ${ackTarget} acknowledged operations in a minute`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    killed = true;
    await engine.kill();
    stats.kills++;
    await Promise.all(streams);
    log(`kill ${stats.kills} at ${ackTarget} acknowledged + ${delay} ms: ${stats.operations} operations so far`);
  }
}
