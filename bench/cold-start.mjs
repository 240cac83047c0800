// Cold start of a real engine process for one example: deploy answered → first invocation
// answered, and engine restart (after kill -9) → first invocation answered. Prints medians.
// Usage: node bench/cold-start.mjs [example] [trials]   (after npm run build && npm run examples)
// `npm run bench` runs this for a small and a 2 MB module as part of its table.
import { join } from 'node:path';
import { coldStart } from './lib/cold-start.mjs';
import { EXAMPLES_WASM } from './lib/processes.mjs';

const example = process.argv[2] ?? 'authentication';
const trials = Number(process.argv[3] ?? 10);
const ARGS = {
  authentication: { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' },
  gcd: { a: '12', b: '18' },
  hello: {},
}[example] ?? {};

const r = await coldStart({ name: example, image: `file:${join(EXAMPLES_WASM, `${example}.wasm`)}`, args: ARGS, trials });
const ms = (x) => `${x.toFixed(2)} ms`;
console.log(`cold start, ${example}, ${trials} trials (median)`);
console.log(`  deploy answered → first invoke answered:          ${ms(r.deploy)}`);
console.log(`  engine listening after restart → first invoke:   ${ms(r.listen)}`);
console.log(`  process spawn after kill -9 → first invoke:      ${ms(r.spawn)}`);
