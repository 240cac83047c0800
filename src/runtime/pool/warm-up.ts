/**
 * Warm-up, the runtime's side: a cold start should cost the function's own instantiation, not the
 * engine's JIT warm-up (several milliseconds in a fresh thread). Here: each sandbox worker runs
 * each ABI once, on three tiny modules, when it starts (warmUp, from worker.ts), so that the call
 * path (InstanceRunner, the ABIs, the WASI host, snapshot and restore) is compiled before the first
 * real invocation; the pool runs one through its whole path once per worker (warmUpPool); the
 * preparation worker compiles one (prepare-worker.ts). The engine's HTTP path is warmed in
 * src/api/warm-up.ts, with the built-in function of warmUpFunction (Engine.beginWarmUp).
 *
 * The modules are embedded as bytes; their sources are test/fixtures/wat/warm-up-*.wat, and a test
 * checks that the bytes are what those sources assemble to.
 */
import { toSandboxCall } from '../abi/call.js';
import { normalizeArgs } from '../args.js';
import { InstanceRunner } from '../instance-runner.js';
import { prepareForReuse } from '../reuse/prepare.js';
import type { Abi, InvocationRequest, InvocationResult, ValType } from '../types.js';
import { wasm } from '../wasm-api.js';

/** (func (export "f") (param i32 i32) (result i32)) with a memory, a mutable global and a table. */
export const WARM_UP_NUMERIC = 'AGFzbQEAAAABBwFgAn9/AX8DAgEABAQBcAABBQMBAAEGBgF/AUEACwcFAQFmAAAJBwEAQQALAQAKFwEVACMAQQFqJABBACAANgIAIAAgAWoL';
/** String ABI: memory, __heap_base, f(ptr, len) answering its input. */
export const WARM_UP_STRING = 'AGFzbQEAAAABCAFgAn9/An9/AwIBAAUDAQABBgcBfwBBgAgLBxwDBm1lbW9yeQIAC19faGVhcF9iYXNlAwABZgAACggBBgAgACABCw==';
/** WASI command printing "ok". */
export const WARM_UP_WASI = 'AGFzbQEAAAABDAJgBH9/f38Bf2AAAAIjARZ3YXNpX3NuYXBzaG90X3ByZXZpZXcxCGZkX3dyaXRlAAADAgEBBQMBAAEHEwIGbWVtb3J5AgAGX3N0YXJ0AAEKHQEbAEEAQRA2AgBBBEECNgIAQQFBAEEBQQgQABoLCwgBAEEQCwJvaw==';

const CASES: { base64: string; abi: Abi; entrypoint: string; params?: ValType[]; args: unknown; expected: string }[] = [
  { base64: WARM_UP_NUMERIC, abi: 'numeric', entrypoint: 'f', params: ['i32', 'i32'], args: ['2', '3'], expected: '5' },
  { base64: WARM_UP_STRING, abi: 'string', entrypoint: 'f', args: { k: 'v' }, expected: '{"k":"v"}' },
  { base64: WARM_UP_WASI, abi: 'wasi', entrypoint: '_start', args: {}, expected: 'ok' },
];

/**
 * A module and a call of it that succeeds (`f(2, 3)` answers 5), for a whole engine to invoke
 * through its own HTTP path while it warms up: the numeric case above.
 */
export function warmUpFunction(): { bytes: Uint8Array; entrypoint: string; args: string[]; expected: string } {
  return { bytes: new Uint8Array(Buffer.from(WARM_UP_NUMERIC, 'base64')), entrypoint: 'f', args: ['2', '3'], expected: '5' };
}

/**
 * Returns what went wrong, or undefined when every ABI answered as expected (the worker starts
 * either way: warming up is an optimisation, and a test asserts it succeeds).
 */
export function warmUp(rounds = 3): string | undefined {
  try {
    for (const c of CASES) {
      const bytes = new Uint8Array(Buffer.from(c.base64, 'base64'));
      const exposed = prepareForReuse(bytes);
      const runners =
        'state' in exposed
          ? [new InstanceRunner(new wasm.Module(exposed.bytes), c.abi, exposed.state), new InstanceRunner(new wasm.Module(bytes), c.abi, undefined)]
          : [new InstanceRunner(new wasm.Module(bytes), c.abi, undefined)];
      const call = toSandboxCall({
        analysis: { abi: c.abi, entrypoint: c.entrypoint, exports: [], wasiCap: c.abi === 'wasi', ...(c.params ? { params: c.params, results: ['i32'] } : {}) },
        args: normalizeArgs(c.args),
        limits: { timeoutMs: 1000, memoryLimitMb: 1, maxOutputBytes: 1024 },
      });
      for (const runner of runners) {
        for (let i = 0; i < rounds; i++) {
          const { output } = runner.run(call);
          if (output !== c.expected) return `${c.abi} warm-up answered ${JSON.stringify(output)}`;
          runner.settle();
        }
        runner.dispose();
      }
    }
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** What warming up the pool's own side of a call needs of the pool. */
export interface PoolWarmUp {
  /**
   * Loads a module under a digest no function can have, marked known fast (so its calls spread
   * over every worker at once); undefined when the compiled cache has no room for it.
   */
  loadFast(digest: string, bytes: Uint8Array): Promise<boolean>;
  invoke(req: InvocationRequest): Promise<InvocationResult>;
  unload(digest: string): void;
  /** Workers up now. */
  workersUp(): number;
}

/**
 * Runs the string-ABI module above once on every worker through the whole pool path (queue,
 * messages, answers), so that the pool's side of a call, on the engine's thread, is compiled before
 * the first real invocation; unloaded after. Never throws: only speed is at stake.
 */
export async function warmUpPool(pool: PoolWarmUp): Promise<void> {
  const bytes = new Uint8Array(Buffer.from(WARM_UP_STRING, 'base64'));
  const digest = 'wasm-engine:warm-up';
  try {
    if (!(await pool.loadFast(digest, bytes))) return;
    const req: InvocationRequest = {
      digest,
      analysis: { abi: 'string', entrypoint: 'f', exports: [], wasiCap: false },
      args: normalizeArgs({ k: 'v' }),
      limits: { timeoutMs: 1_000, memoryLimitMb: 1, maxOutputBytes: 1024 },
    };
    await Promise.allSettled(Array.from({ length: pool.workersUp() }, () => pool.invoke(req)));
  } catch {
    // Only speed is at stake.
  } finally {
    pool.unload(digest);
  }
}
