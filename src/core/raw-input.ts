/**
 * What a raw invocation (a request body, query parameters and extra environment, as the OpenFaaS
 * data plane gives them) means for each calling convention of SPEC §3:
 * - WASI: the body is stdin, argv is the usual JSON text of empty args, and the extra environment
 *   joins the function's own (which wins: a request must not override configured settings), less
 *   the variables of PRIVATE_VARIABLES.
 * - string ABI: the body, as UTF-8 text, is the input the function receives.
 * - numeric ABI: the query parameters, in order, are the arguments.
 */
import { EngineError } from '../errors.js';
import { normalizeArgs } from '../runtime/index.js';
import type { CancelSignal, FunctionArgs } from '../runtime/index.js';
import type { FunctionRecord } from '../store/index.js';

export interface RawInvokeRequest {
  name: string;
  body: Uint8Array;
  /** Query parameters in the order given. */
  params: [string, string][];
  /** Environment for a WASI function besides its own (the CGI-style variables). */
  env: Record<string, string>;
  signal?: CancelSignal;
}

export interface RawInput {
  args: FunctionArgs;
  stdin?: Uint8Array;
  env: Record<string, string>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Request headers that never reach a guest (SPEC §3a), as the CGI variables they would become:
 * they carry the caller's credentials — with --auth-invoke, the engine's own Basic password — and
 * a function that read them could replay them against the management routes.
 */
export const PRIVATE_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie']);
const PRIVATE_VARIABLES = ['Http_Authorization', 'Http_Proxy_Authorization', 'Http_Cookie'];

/** The request's variables without the private ones, whoever built them (the HTTP layer drops them too). */
function guestVariables(env: Record<string, string>): Record<string, string> {
  let out = env;
  for (const name of PRIVATE_VARIABLES) {
    if (Object.hasOwn(out, name)) {
      if (out === env) out = { ...env };
      delete out[name];
    }
  }
  return out;
}

export function rawInput(record: FunctionRecord, request: RawInvokeRequest): RawInput {
  switch (record.analysis.abi) {
    case 'wasi':
      return { args: normalizeArgs(undefined), stdin: request.body, env: { ...guestVariables(request.env), ...record.env } };
    case 'string': {
      let text: string;
      try {
        text = utf8.decode(request.body);
      } catch {
        throw new EngineError('INVALID_ARGS', `the body for ${record.name} is not UTF-8 text`);
      }
      return { args: { json: text, positional: null, values: [] }, env: record.env };
    }
    case 'numeric': {
      // No prototype: a parameter named __proto__ is an argument like any other.
      const args = Object.create(null) as Record<string, string>;
      for (const [key, value] of request.params) {
        if (Object.hasOwn(args, key)) throw new EngineError('INVALID_ARGS', `argument ${key} of ${record.name} is given twice`);
        args[key] = value;
      }
      return { args: normalizeArgs(args), env: record.env };
    }
  }
}
