#!/usr/bin/env -S node --max-semi-space-size=64
// Runs the compiled CLI; `npm run build` produces dist/.
// The flag on the first line: with V8's default young generation (16 MB semi-spaces, full under
// load) the HTTP thread's scavenges took about 3 ms each and set the invocation route's p99; with
// room to grow they take about 0.6 ms (docs/runtime.md). Heap sizes cannot be set once Node runs, so
// `npm start`, the package's bin and the bench run this file directly; `node bin/wasm-engine.js`
// works the same, without the flag.
import { setFlagsFromString } from 'node:v8';

// V8 compiles WebAssembly functions lazily, on their first call, by default: that first call of
// every function would then pay its compile inside an invocation (about 1 ms for `authentication`).
// Compiled up front instead, when the module is deployed or restored, before the engine listens.
// Set before anything is compiled (the flag is process-wide, worker threads included).
setFlagsFromString('--no-wasm-lazy-compilation');
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
