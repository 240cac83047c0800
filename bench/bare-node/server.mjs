// The per-core table's floor: a bare Node.js server (node:http) doing functions.mjs's work — no
// isolation, no limits, no queue, nothing but parse, call, answer on one thread.
//
//   node bench/bare-node/server.mjs --port N --wasm-dir DIR     prints "listening on URL" when ready
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { bareFunctions } from './functions.mjs';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'wasm-dir': { type: 'string' } } });
const answerFor = bareFunctions(values['wasm-dir']);

function answer(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/function/invoke') return answer(res, 404, 'not found');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const { status, text } = answerFor(Buffer.concat(chunks).toString('utf8'));
    answer(res, status, text);
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
