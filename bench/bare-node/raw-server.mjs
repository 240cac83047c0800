// A second floor for the per-core table: functions.mjs's work served straight from the socket,
// parsed by Node's own HTTP parser (llhttp, as node:http uses it) with no IncomingMessage, no
// ServerResponse and no stream machinery; one answer written per request. It shows what node:http
// itself costs per request on this machine, and so how far any server built on node:http can go.
// Bench only: it keeps just what the bench's requests need (no chunked answers, no timeouts, no
// bounds), and it reaches llhttp through `_http_common`, an internal module of Node's.
//
//   node bench/bare-node/raw-server.mjs --port N --wasm-dir DIR     prints "listening on URL" when ready
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { bareFunctions } from './functions.mjs';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'wasm-dir': { type: 'string' } } });
const answerFor = bareFunctions(values['wasm-dir']);
const REASONS = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found' };

const server = createServer({ noDelay: true }, (socket) => {
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
  let chunks = [];
  let target = '';
  let method = 0;
  let keepAlive = true;
  parser[HTTPParser.kOnHeadersComplete] = (_major, _minor, _headers, m, url, _code, _msg, _upgrade, shouldKeepAlive) => {
    method = m;
    target = url;
    keepAlive = shouldKeepAlive;
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b) => {
    chunks.push(Buffer.from(b));
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    const body = Buffer.concat(chunks).toString('utf8');
    chunks = [];
    const { status, text } = methods[method] === 'POST' && target === '/function/invoke' ? answerFor(body) : { status: 404, text: 'not found' };
    socket.write(
      `HTTP/1.1 ${status} ${REASONS[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
        `Date: ${new Date().toUTCString()}\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n${text}`,
    );
    if (!keepAlive) socket.end();
  };
  socket.on('data', (data) => {
    if (parser.execute(data) instanceof Error) socket.destroy();
  });
  socket.on('error', () => {});
  socket.on('close', () => parser.close());
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
