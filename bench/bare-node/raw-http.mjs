// Requests read straight from the socket by Node's own HTTP parser (llhttp, which node:http uses,
// reached through `_http_common`, an internal module of Node's), with no IncomingMessage, no
// ServerResponse and no stream machinery, and one write per answer. Bench only: it keeps just what
// the bench's requests need (no chunked answers, no timeouts, no bounds, answers in order only
// because wrk waits for each one).
import { createRequire } from 'node:module';
import { createServer } from 'node:net';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const REASONS = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 500: 'Internal Server Error' };

/**
 * Listens on 127.0.0.1:`port` (0: any) and answers POST /function/invoke with `answer(bodyText)`
 * ({ status, text }, or a promise of one); resolves with the port once listening.
 */
export function serveRaw(port, answer) {
  const server = createServer({ noDelay: true }, (socket) => {
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    let chunks = [];
    let target = '';
    let method = 0;
    let keepAlive = true;
    const write = ({ status, text }) => {
      socket.write(
        `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
          `Date: ${new Date().toUTCString()}\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n${text}`,
      );
      if (!keepAlive) socket.end();
    };
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
      if (methods[method] !== 'POST' || target !== '/function/invoke') return write({ status: 404, text: 'not found' });
      const answered = answer(body);
      if (typeof answered?.then === 'function') answered.then(write, () => write({ status: 500, text: 'failed' }));
      else write(answered);
    };
    socket.on('data', (data) => {
      if (parser.execute(data) instanceof Error) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => parser.close());
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server.address().port)));
}
