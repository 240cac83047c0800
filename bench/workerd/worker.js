// The peer for the HTTP comparison: Cloudflare's workerd serving the same .wasm files, a fresh
// instance per request (as the issue asks), the same request body and the same text answer as
// WasmEngine's POST /function/invoke ("status code: 200, message: OUTPUT").
import gcd from './gcd.wasm';
import authentication from './authentication.wasm';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The compact JSON of the args with string values, as WasmEngine writes it (SPEC §3b). */
function compactArgs(args) {
  const parts = Object.entries(args ?? {}).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(typeof v === 'string' ? v : JSON.stringify(v))}`);
  return `{${parts.join(',')}}`;
}

function stringAbi(module, entry, json) {
  const instance = new WebAssembly.Instance(module, {});
  const memory = instance.exports.memory;
  const heapBase = instance.exports.__heap_base.value;
  const input = enc.encode(json);
  memory.grow(Math.max(1, Math.ceil((heapBase + input.length - memory.buffer.byteLength) / 65536)));
  new Uint8Array(memory.buffer, heapBase, input.length).set(input);
  const [ptr, len] = instance.exports[entry](heapBase, input.length);
  return dec.decode(new Uint8Array(memory.buffer, ptr, len));
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (request.method !== 'POST' || url.pathname !== '/function/invoke') return new Response('not found', { status: 404 });
    const body = await request.json();
    let output;
    switch (body.function_name) {
      case 'gcd': {
        const [a, b] = Object.values(body.args ?? {}).map(Number);
        output = String(new WebAssembly.Instance(gcd, {}).exports.gcd(a, b));
        break;
      }
      case 'authentication':
        output = stringAbi(authentication, 'authentication', compactArgs(body.args));
        break;
      default:
        return new Response(`status code: 404, message: function ${body.function_name} is not deployed`, { status: 404 });
    }
    return new Response(`status code: 200, message: ${output}`);
  },
};
