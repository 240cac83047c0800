/**
 * What crosses to a sandbox worker for one invocation, and what comes back. Built once on the HTTP
 * thread from an InvocationRequest (toSandboxCall): each ABI gets exactly the input it consumes —
 * numeric arguments already parsed (a bad one is refused there, without a trip to a worker), the
 * JSON text for the string ABI, argv for WASI — so the hot path's message stays small.
 */
import type { InvocationRequest } from '../types.js';
import { parseNumericArgs } from './numeric.js';

export type SandboxCall =
  | { abi: 'numeric'; entrypoint: string; values: (number | bigint)[]; maxOutputBytes: number }
  | { abi: 'string'; entrypoint: string; json: string; maxOutputBytes: number }
  | {
      abi: 'wasi';
      argv: string[];
      maxOutputBytes: number;
      /** Omitted when empty. */
      env?: Record<string, string>;
      /** Omitted when empty. */
      stdin?: Uint8Array;
    };

export interface AbiOutput {
  output: string;
  stderr: string;
}

/** Throws INVALID_ARGS for numeric arguments that do not fit the entry's parameters. */
export function toSandboxCall(req: Pick<InvocationRequest, 'analysis' | 'args' | 'limits' | 'env' | 'stdin'>): SandboxCall {
  const { analysis, args } = req;
  const maxOutputBytes = req.limits.maxOutputBytes;
  switch (analysis.abi) {
    case 'numeric':
      return {
        abi: 'numeric',
        entrypoint: analysis.entrypoint,
        values: parseNumericArgs(args, analysis.params ?? [], analysis.entrypoint),
        maxOutputBytes,
      };
    case 'string':
      return { abi: 'string', entrypoint: analysis.entrypoint, json: args.json, maxOutputBytes };
    case 'wasi': {
      const call: SandboxCall = { abi: 'wasi', argv: args.positional ?? [args.json], maxOutputBytes };
      if (req.env && Object.keys(req.env).length > 0) call.env = req.env;
      if (req.stdin && req.stdin.length > 0) call.stdin = req.stdin;
      return call;
    }
  }
}
