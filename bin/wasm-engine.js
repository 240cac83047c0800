#!/usr/bin/env node
// Runs the compiled CLI; `npm run build` produces dist/.
import { setFlagsFromString } from 'node:v8';

// V8 compiles WebAssembly functions lazily, on their first call, by default: that first call of
// every function would then pay its compile inside an invocation (about 1 ms for `authentication`).
// Compiled up front instead, when the module is deployed or restored, before the engine listens.
// Set before anything is compiled (the flag is process-wide, worker threads included).
setFlagsFromString('--no-wasm-lazy-compilation');
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
