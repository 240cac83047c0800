/** SPEC §3a: a WASI command, run through `_start` with the engine's own WASI host. */
import { EngineError } from '../../errors.js';
import { STDERR_TAIL_BYTES, guestFailure, withStderr } from '../traps.js';
import type { FunctionArgs } from '../types.js';
import { WASI_MODULE } from '../wasi/signatures.js';
import { WasiHost } from '../wasi/host.js';
import { STDERR_LOG_BYTES } from '../wasi/output.js';
import type { WasmImportObject } from '../wasm-api.js';
import type { AbiOutput } from './call.js';

const EMPTY = new Uint8Array(0);
const NO_ENV: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** argv (SPEC §3a): the positional values, or exactly one string, the JSON text of args. */
export function wasiArgv(args: FunctionArgs): string[] {
  return args.positional ?? [args.json];
}

export interface WasiCallInput {
  argv: string[];
  maxOutputBytes: number;
  env?: Record<string, string>;
  stdin?: Uint8Array;
}

/** A host for an instance about to be made; its imports go into the instance's import object. */
export function wasiHost(): { host: WasiHost; imports: WasmImportObject } {
  const host = new WasiHost({ args: [], env: NO_ENV, stdin: EMPTY, maxOutputBytes: 0 });
  return { host, imports: { [WASI_MODULE]: host.imports } };
}

/** Lets go of a finished call's output and input, so that an idle instance holds none of it. */
export function releaseWasiHost(host: WasiHost): void {
  host.reset({ args: [], env: NO_ENV, stdin: EMPTY, maxOutputBytes: 0 });
}

/** Runs `_start` with the call's argv, environment and stdin; never throws a raw trap. The host has the instance's memory already. */
export function callWasi(exports: Readonly<Record<string, unknown>>, host: WasiHost, call: WasiCallInput): AbiOutput {
  host.reset({ args: call.argv, env: call.env ?? NO_ENV, stdin: call.stdin ?? EMPTY, maxOutputBytes: call.maxOutputBytes });
  let thrown: unknown;
  let returned = false;
  try {
    (exports['_start'] as () => void)();
    returned = true;
  } catch (err) {
    thrown = err;
  }
  const stderr = host.stderr.boundedText(STDERR_LOG_BYTES);
  const tail = host.stderr.tail(STDERR_TAIL_BYTES);
  // The host's record decides, not what reached us: the guest may have caught the unwinding.
  if (host.budget.exceeded) {
    throw new EngineError(
      'FUNCTION_FAILED',
      `output limit exceeded: the function wrote more than ${call.maxOutputBytes} bytes to stdout and stderr`,
    );
  }
  if (host.exitCode === undefined && !returned) throw guestFailure(thrown, tail);
  const code = host.exitCode ?? 0;
  if (code !== 0) throw new EngineError('FUNCTION_FAILED', withStderr(`the function exited with exit code ${code}`, tail));
  const output = host.stdout.text();
  return { output: output.endsWith('\n') ? output.slice(0, -1) : output, stderr };
}
