/**
 * Generated modules over HTTP, against a real engine process: each module's exports deployed as
 * functions (small limits), each called with random arguments, every call repeated on the spot so
 * that the engine's workers really reuse their instances. Every answer must be 200 or a §2 error
 * with its status (never INTERNAL), a call repeated must answer what it answered the first time
 * (every call observes the initial state), and the engine must stay up.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_STATUS, analyzeModule } from './dist.mjs';
import { callJson, startEngine } from './engine.mjs';
import { generateModule } from './modules.mjs';
import { Rng } from './prng.mjs';

const ARG_TEXTS = ['0', '1', '-1', '7', '65536', '1048576', '1114112', '2147483647', '-2147483648', '4294967295', '1.5', 'NaN', '-0', '1e308', '9223372036854775807', 'x'];

/** The number of parameters of a numeric target (0 when the engine will refuse it anyway). */
function paramCount(bytes, target) {
  try {
    return analyzeModule(bytes, { functionName: 'f', wasiCap: false, entrypoint: target.entrypoint }).params?.length ?? 0;
  } catch {
    return 0;
  }
}

function randomArgs(target, rng) {
  if (target.abi === 'numeric') {
    const count = rng.chance(0.9) ? target.params : rng.int(0, 3);
    return Array.from({ length: count }, () => rng.pick(ARG_TEXTS));
  }
  const value = 'v'.repeat(rng.chance(0.1) ? rng.int(1000, 100_000) : rng.int(0, 40));
  return rng.chance(0.5) ? { k: value } : [value, String(rng.int(0, 9))];
}

/** Why an answer breaks the contract, or undefined. */
function contractBreach(answer, what) {
  const { status, json } = answer;
  if (!json || typeof json !== 'object') return `${what}: ${status} with a body that is not JSON: ${answer.text.slice(0, 200)}`;
  if (status === 200) return json.status === 200 ? undefined : `${what}: 200 with status ${json.status} in the body`;
  const code = json.error?.code;
  if (code === undefined || !(code in ERROR_STATUS)) return `${what}: ${status} without a §2 error: ${answer.text.slice(0, 200)}`;
  if (code === 'INTERNAL') return `${what}: INTERNAL: ${json.error.message}`;
  const expected = code === 'OVERLOADED' ? [429, 503] : [ERROR_STATUS[code]];
  if (!expected.includes(status)) return `${what}: ${code} answered with status ${status}`;
  return undefined;
}

const key = (answer) => JSON.stringify(answer.status === 200 ? { output: answer.json?.output } : { code: answer.json?.error?.code, message: answer.json?.error?.message });
const isOobTrap = (answer) => /out-of-bounds memory access/.test(answer.json?.error?.message ?? '');

/**
 * @param {{ seeds: Iterable<number>, outDir: string, until?: number, skip?: Set<number>,
 *           log?: (line: string) => void, maxTargets?: number }} options
 */
export async function runHttpModuleFuzz(options) {
  const { outDir, until = Infinity, skip = new Set(), log = () => {}, maxTargets = 6 } = options;
  const workDir = join(outDir, 'work');
  mkdirSync(workDir, { recursive: true });
  const stats = { modules: 0, skipped: 0, deploys: 0, deployRefused: 0, invocations: 0, answers: {}, failures: [] };
  // One worker: every call of a module runs on it, so instances are reused from call to call.
  const engine = await startEngine({ args: ['--workers', '1', '--timeout-ms', '3000', '--memory-limit-mb', '64'] });
  try {
    for (const seed of options.seeds) {
      if (Date.now() >= until || !engine.alive) break;
      if (skip.has(seed)) continue;
      const mod = generateModule(seed, workDir);
      if ('skipped' in mod) {
        stats.skipped++;
        continue;
      }
      stats.modules++;
      const rng = new Rng(seed ^ 0x4777);
      const file = join(workDir, `http-${seed}.wasm`);
      writeFileSync(file, mod.bytes);
      const problems = [];
      const log2 = [];
      const deployed = [];
      // Up to maxTargets exports, drawn at random (the probes the generator adds come last).
      const pool = [...mod.targets];
      const chosen = [];
      while (pool.length > 0 && chosen.length < maxTargets) chosen.push(...pool.splice(rng.int(0, pool.length - 1), 1));
      for (const [i, target] of chosen.entries()) {
        const name = `m${seed}-${i}`;
        const body = {
          function_name: name,
          function_image: `file:${file}`,
          wasi_cap: target.abi === 'wasi',
          ...(target.entrypoint === undefined ? {} : { entrypoint: target.entrypoint }),
          timeout_ms: 3000,
          memory_limit_mb: mod.memoryLimitMb,
          max_output_bytes: rng.pick([16, 4096, 1 << 20]),
        };
        let answer;
        try {
          answer = await callJson(engine.url, 'POST', '/function/deploy', body);
        } catch (err) {
          problems.push(`deploy ${name}: no answer (${err instanceof Error ? err.message : String(err)})`);
          break;
        }
        stats.deploys++;
        log2.push({ deploy: body, status: answer.status, answer: answer.json ?? answer.text });
        const breach = contractBreach(answer, `deploy ${name}`);
        if (breach) problems.push(breach);
        if (answer.status === 200) deployed.push({ name, target: { ...target, params: target.abi === 'numeric' ? paramCount(mod.bytes, target) : 0 } });
        else stats.deployRefused++;
      }
      for (let c = 0; c < rng.int(4, 12) && deployed.length > 0; c++) {
        const { name, target } = rng.pick(deployed);
        const args = randomArgs(target, rng);
        const answers = [];
        for (let r = rng.int(2, 4); r > 0; r--) {
          let answer;
          try {
            answer = await callJson(engine.url, 'POST', '/function/invoke', { function_name: name, args });
          } catch (err) {
            // The engine's own deadline (3 s here) answers long before the client's (60 s).
            problems.push(`invoke ${name}: no answer (${err instanceof Error ? err.message : String(err)})`);
            break;
          }
          stats.invocations++;
          const code = answer.status === 200 ? 'ok' : (answer.json?.error?.code ?? String(answer.status));
          stats.answers[code] = (stats.answers[code] ?? 0) + 1;
          log2.push({ invoke: name, args: typeof args === 'object' ? JSON.stringify(args).slice(0, 200) : args, status: answer.status, answer: (answer.json ?? answer.text) });
          const breach = contractBreach(answer, `invoke ${name}`);
          if (breach) problems.push(breach);
          answers.push(answer);
        }
        // The one difference reuse/virtual-size.ts documents: an out-of-bounds trap may not recur.
        if (!answers.some(isOobTrap) && new Set(answers.map(key)).size > 1) {
          problems.push(`invoke ${name}: the same call answered differently: ${answers.map(key).join(' / ')}`);
        }
      }
      for (const { name } of deployed) {
        const answer = await callJson(engine.url, 'POST', '/function/delete', { function_name: name });
        const breach = contractBreach(answer, `delete ${name}`);
        if (breach) problems.push(breach);
      }
      if (!engine.alive) problems.push(`the engine exited (${await engine.exited}): ${engine.output.slice(-20).join('\n')}`);
      if (problems.length > 0) {
        const base = join(outDir, `http-module-${seed}`);
        writeFileSync(`${base}.wasm`, mod.bytes);
        writeFileSync(`${base}.json`, JSON.stringify({ seed, problems, about: { ...mod, bytes: undefined }, exchanges: log2, replay: `npm run fuzz -- --only http-modules --case ${seed}` }, null, 2));
        stats.failures.push({ seed, problems, files: [`${base}.wasm`, `${base}.json`] });
        log(`http module case ${seed}: ${problems[0]} (reproduction in ${base}.json)`);
      }
    }
    if (engine.alive) {
      const health = await callJson(engine.url, 'GET', '/healthz');
      if (health.status !== 200) stats.failures.push({ problems: [`healthz answered ${health.status} after the run`] });
    }
  } finally {
    const alive = engine.alive;
    const code = alive ? await engine.stop() : await engine.exited;
    if (!alive || code !== 0) stats.failures.push({ problems: [`the engine ${alive ? 'stopped' : 'died'} with ${code}: ${engine.output.slice(-20).join('\n')}`] });
  }
  return stats;
}
