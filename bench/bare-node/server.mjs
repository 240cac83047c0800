// The per-core table's floor: a bare Node.js server (node:http) serving the same two .wasm files,
// ONE instance of each made at start and called for every request — no isolation, no limits, no
// queue, nothing but parse, call, answer on one thread. Same request body and same text answer as
// WasmEngine's POST /function/invoke ("status code: 200, message: OUTPUT"), as bench/workerd does.
//
//   node bench/bare-node/server.mjs --port N --wasm-dir DIR     prints "listening on URL" when ready
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'wasm-dir': { type: 'string' } } });
const load = (file) => new WebAssembly.Instance(new WebAssembly.Module(readFileSync(join(values['wasm-dir'], file))), {}).exports;
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
function compactArgs(args) {
  const parts = Object.entries(args ?? {}).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(typeof v === 'string' ? v : JSON.stringify(v))}`);
  return `{${parts.join(',')}}`;
}

function callString(exports, entry, json) {
  const input = enc.encode(json);
  new Uint8Array(exports.memory.buffer, heapBase, input.length).set(input);
  const [ptr, len] = exports[entry](heapBase, input.length);
  return dec.decode(new Uint8Array(exports.memory.buffer, ptr, len));
}

function answer(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/function/invoke') return answer(res, 404, 'not found');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(res, 400, 'status code: 400, message: the body is not JSON');
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
        return answer(res, 404, `status code: 404, message: function ${body.function_name} is not deployed`);
    }
    answer(res, 200, `status code: 200, message: ${output}`);
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
