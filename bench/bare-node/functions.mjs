// The work of the bare servers (server.mjs on node:http, raw-server.mjs on a socket): the same two
// .wasm files, ONE instance of each made at start and called for every request — no isolation, no
// limits, no queue. Same request body and same text answer as WasmEngine's POST /function/invoke
// ("status code: 200, message: OUTPUT"), as bench/workerd does.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The answer ({ status, text }) to an invocation body, for the modules in `wasmDir`. */
export function bareFunctions(wasmDir) {
  const load = (file) => new WebAssembly.Instance(new WebAssembly.Module(readFileSync(join(wasmDir, file))), {}).exports;
  const gcd = load('gcd.wasm');
  const authentication = load('authentication.wasm');
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const heapBase = authentication.__heap_base.value;
  // One page above __heap_base for the input, grown once: the module's own allocator grows past it.
  // Nothing is restored between calls (no isolation): `authentication` keeps each output, about
  // 240 bytes a call, so its memory grows by some 36 MB over a 10 s run; bounded by the run.
  authentication.memory.grow(1);

  /** The compact JSON of the args with string values, as WasmEngine writes it (SPEC §3b). */
  const compactArgs = (args) => {
    const parts = Object.entries(args ?? {}).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(typeof v === 'string' ? v : JSON.stringify(v))}`);
    return `{${parts.join(',')}}`;
  };
  const callString = (exports, entry, json) => {
    const input = enc.encode(json);
    new Uint8Array(exports.memory.buffer, heapBase, input.length).set(input);
    const [ptr, len] = exports[entry](heapBase, input.length);
    return dec.decode(new Uint8Array(exports.memory.buffer, ptr, len));
  };

  return (bodyText) => {
    let body;
    try {
      body = JSON.parse(bodyText);
    } catch {
      return { status: 400, text: 'status code: 400, message: the body is not JSON' };
    }
    let output;
    switch (body.function_name) {
      case 'gcd': {
        const [a, b] = Object.values(body.args ?? {}).map(Number);
        output = String(gcd.gcd(a, b));
        break;
      }
      case 'authentication':
        output = callString(authentication, 'authentication', compactArgs(body.args));
        break;
      default:
        return { status: 404, text: `status code: 404, message: function ${body.function_name} is not deployed` };
    }
    return { status: 200, text: `status code: 200, message: ${output}` };
  };
}
