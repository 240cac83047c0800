/** SPEC §3a: a WASI command, run through `_start` with the engine's own WASI host. */
import { EngineError } from '../../errors.js';
import { STDERR_TAIL_BYTES, guestFailure, withStderr } from '../traps.js';
import type { FunctionArgs } from '../types.js';
import { WASI_MODULE } from '../wasi/signatures.js';
import { WasiHost } from '../wasi/host.js';
import { wasm, type WasmMemory, type WasmModule } from '../wasm-api.js';
import type { AbiOutput, SandboxCall } from './call.js';

const EMPTY = new Uint8Array(0);

/** argv (SPEC §3a): the positional values, or exactly one string, the JSON text of args. */
export function wasiArgv(args: FunctionArgs): string[] {
  return args.positional ?? [args.json];
}

export function runWasi(module: WasmModule, call: SandboxCall): AbiOutput {
  const host = new WasiHost({
    args: wasiArgv(call.args),
    env: call.env ?? {},
    stdin: call.stdin ?? EMPTY,
    maxOutputBytes: call.limits.maxOutputBytes,
  });
  let thrown: unknown;
  let returned = false;
  try {
    const instance = new wasm.Instance(module, { [WASI_MODULE]: host.imports });
    host.attach(instance.exports['memory'] as WasmMemory);
    (instance.exports['_start'] as () => void)();
    returned = true;
  } catch (err) {
    thrown = err;
  }
  const stderr = host.stderr.text();
  const tail = host.stderr.tail(STDERR_TAIL_BYTES);
  // The host's record decides, not what reached us: the guest may have caught the unwinding.
  if (host.budget.exceeded) {
    throw new EngineError(
      'FUNCTION_FAILED',
      `output limit exceeded: the function wrote more than ${call.limits.maxOutputBytes} bytes to stdout and stderr`,
    );
  }
  if (host.exitCode === undefined && !returned) throw guestFailure(thrown, tail);
  const code = host.exitCode ?? 0;
  if (code !== 0) throw new EngineError('FUNCTION_FAILED', withStderr(`the function exited with exit code ${code}`, tail));
  const output = host.stdout.text();
  return { output: output.endsWith('\n') ? output.slice(0, -1) : output, stderr };
}
