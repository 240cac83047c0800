// A second floor for the per-core table: functions.mjs's work served straight from the socket
// (raw-http.mjs: Node's own parser, no node:http). It shows what node:http itself costs per
// request on this machine, and so how far any server built on node:http can go.
//
//   node bench/bare-node/raw-server.mjs --port N --wasm-dir DIR     prints "listening on URL" when ready
import { parseArgs } from 'node:util';
import { bareFunctions } from './functions.mjs';
import { serveRaw } from './raw-http.mjs';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'wasm-dir': { type: 'string' } } });
const port = await serveRaw(Number(values.port), bareFunctions(values['wasm-dir']));
process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
