#!/usr/bin/env -S node --max-semi-space-size=8
// Runs the compiled CLI; `npm run build` produces dist/.
// The flag on the first line: under load V8 grows the young generation to 16 MB semi-spaces, and
// the HTTP thread's scavenges then took about 3 ms each (most survivors promoted) and set the
// invocation route's p99; with 8 MB they come more often and cost less in all, p99 at 32
// connections fell by 10–50% over runs, and RSS under load by about 50 MB (64 MB was better until the
// heap had grown, then worse: 13–20 ms scavenges). docs/runtime.md has the figures. Heap sizes
// cannot be set once Node runs, so `npm start`, the package's bin and the bench run this file
// directly; `node bin/wasm-engine.js` works the same, without the flag.
import { setFlagsFromString } from 'node:v8';

// V8 compiles WebAssembly functions lazily, on their first call, by default: that first call of
// every function would then pay its compile inside an invocation (about 1 ms for `authentication`).
// Compiled up front instead, when the module is deployed or restored, before the engine listens.
// Set before anything is compiled (the flag is process-wide, worker threads included).
setFlagsFromString('--no-wasm-lazy-compilation');
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
