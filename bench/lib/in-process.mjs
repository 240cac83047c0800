// Part 1: the cost of one invocation inside the process, no HTTP. For each example: raw V8 (a
// fresh `new WebAssembly.Instance(module)` plus the call, what the issue names as the baseline),
// the engine's sandbox on the same thread (InstanceRunner: run + settle, i.e. all the CPU a worker
// spends per call, restore or re-instantiation included), the same with instance reuse off (the
// engine before reuse), and the engine's WorkerPoolRuntime (invoke() → worker → answer), one call
// at a time (latency) and 64 at a time (throughput), with pipelining on and off.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  InstanceRunner,
  WorkerPoolRuntime,
  DEFAULT_PIPELINE_DEPTH,
  analyzeModule,
  prepareForReuse,
  normalizeArgs,
  toSandboxCall,
  withMemoryMaximum,
} from '../../dist/runtime/index.js';
import { WasiHost } from '../../dist/runtime/wasi/host.js';
import { median, microsPerCall } from './stats.mjs';

export const AUTH_ARGS = { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' };
export const CASES = [
  { name: 'gcd', args: { a: '12', b: '18' }, wasmtimeUs: 2.49 },
  { name: 'echo-string', args: AUTH_ARGS, wasmtimeUs: 29.3 },
  { name: 'authentication', args: AUTH_ARGS, wasmtimeUs: 26.0 },
  { name: 'authentication-wasi', args: AUTH_ARGS, wasmtimeUs: 33.2 },
];

const LIMITS = { timeoutMs: 10_000, memoryLimitMb: 128, maxOutputBytes: 4 * 1024 * 1024 };
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The baseline: what a fresh-instance engine does per call, written directly against V8. */
function rawCall(module, analysis, call) {
  const entry = analysis.entrypoint;
  switch (analysis.abi) {
    case 'numeric':
      return () => new WebAssembly.Instance(module, {}).exports[entry](...call.values);
    case 'string':
      return () => {
        const inst = new WebAssembly.Instance(module, {});
        const mem = inst.exports.memory;
        const hb = inst.exports.__heap_base.value;
        const input = enc.encode(call.json);
        mem.grow(1);
        new Uint8Array(mem.buffer, hb, input.length).set(input);
        const [ptr, len] = inst.exports[entry](hb, input.length);
        return dec.decode(new Uint8Array(mem.buffer, ptr, len));
      };
    case 'wasi':
      return () => {
        const host = new WasiHost({ args: call.argv, env: {}, stdin: new Uint8Array(0), maxOutputBytes: LIMITS.maxOutputBytes });
        const inst = new WebAssembly.Instance(module, { wasi_snapshot_preview1: host.imports });
        host.attach(inst.exports.memory);
        inst.exports._start();
        return host.stdout.text();
      };
  }
}

async function poolMicros(pool, req, { inflight, calls }) {
  // warm-up: every worker gets the module and readies an instance
  await Promise.all(Array.from({ length: 64 }, () => pool.invoke(req)));
  const runs = [];
  for (let b = 0; b < 5; b++) {
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (next++ < calls) await pool.invoke(req);
      }),
    );
    runs.push(((performance.now() - t) * 1000) / calls);
  }
  return median(runs);
}

export async function inProcess({ examplesDir, quick, log }) {
  const results = [];
  const n = quick ? 300 : 2000;
  for (const c of CASES) {
    log(`in-process: ${c.name}`);
    const bytes = new Uint8Array(readFileSync(join(examplesDir, `${c.name}.wasm`)));
    const analysis = analyzeModule(bytes, { functionName: c.name });
    const capped = withMemoryMaximum(bytes, LIMITS.memoryLimitMb * 16);
    const exposed = prepareForReuse(capped);
    const req = { digest: `sha256:bench-${c.name}`, analysis, args: normalizeArgs(c.args), limits: LIMITS };
    const call = toSandboxCall(req);
    const rawModule = new WebAssembly.Module(capped);
    const raw = microsPerCall(rawCall(rawModule, analysis, call), c.name === 'gcd' ? n * 4 : n);
    const reuse = new InstanceRunner(new WebAssembly.Module(exposed.bytes), analysis.abi, exposed.state, exposed.reason);
    const sandbox = microsPerCall(() => {
      reuse.run(call);
      reuse.settle();
    }, c.name === 'gcd' ? n * 4 : n);
    const freshRunner = new InstanceRunner(rawModule, analysis.abi, undefined);
    const fresh = microsPerCall(() => {
      freshRunner.run(call);
      freshRunner.settle();
    }, n);
    const pool = {};
    // Without pipelining (depth 1), and with the engine's default depth.
    for (const [key, depth] of [['Off', 1], ['On', DEFAULT_PIPELINE_DEPTH]]) {
      const p = new WorkerPoolRuntime({ pipelineDepth: depth, maxQueue: 100_000 });
      await p.load(req.digest, bytes, LIMITS.memoryLimitMb);
      pool[`latency${key}`] = await poolMicros(p, req, { inflight: 1, calls: quick ? 200 : 2000 });
      pool[`throughput${key}`] = await poolMicros(p, req, { inflight: 64, calls: quick ? 1000 : 10_000 });
      await p.close();
    }
    results.push({
      ...c,
      raw,
      sandbox,
      fresh,
      pool,
      reused: reuse.stats.reused > 0,
      why: reuse.reuseRefused ?? (reuse.stats.reused === 0 ? 'its calls grow memory (Rust dlmalloc): a fresh instance each call' : ''),
    });
  }
  return results;
}
