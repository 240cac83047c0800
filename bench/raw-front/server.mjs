// One engine process (dist/app.js's startEngine, --http-threads 1), its Engine.invoke reached two
// ways: through its own HTTP layer (node:http) on --port, and behind raw-http.mjs's reader (no
// node:http) on --raw-port. What the engine would serve per core with a front that skips node:http
// — a measurement for bench/raw-front.mjs, not a way the engine runs: the raw side has none of the
// HTTP layer's bounds and answers only the text form.
//
//   node --max-semi-space-size=8 --no-wasm-lazy-compilation bench/raw-front/server.mjs --port N --raw-port M --data-dir DIR --wasm-dir DIR
import { parseArgs } from 'node:util';
import { createLogger, startEngine } from '../../dist/app.js';
import { loadConfig } from '../../dist/config/config-file.js';
import { serveRaw } from '../bare-node/raw-http.mjs';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'raw-port': { type: 'string' }, 'data-dir': { type: 'string' }, 'wasm-dir': { type: 'string' } } });
const config = loadConfig({ port: values.port, 'data-dir': values['data-dir'], 'log-level': 'warn', 'http-threads': '1' }, {});
const { engine } = await startEngine(config, createLogger(config));
for (const name of ['gcd', 'authentication']) await engine.deploy({ name, image: `file:${values['wasm-dir']}/${name}.wasm` });
const rawPort = await serveRaw(Number(values['raw-port']), (bodyText) => {
  const body = JSON.parse(bodyText);
  return engine.invoke({ name: body.function_name, args: body.args }).then((r) => ({ status: 200, text: `status code: 200, message: ${r.output}` }));
});
process.stdout.write(`ready http://127.0.0.1:${values.port} raw http://127.0.0.1:${rawPort}\n`);
