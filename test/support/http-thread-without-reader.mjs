// The real HTTP thread (the compiled dist/api/threads/http-thread.js) with its connection reader
// left out, so that Node's own parser reads every request, invocations included: the other side
// of the differential HTTP fuzzing (test/fuzz/harness/http-parser.mjs). The engine has no such mode.
import { InvokeConnections } from '../../dist/api/invoke-connection.js';

InvokeConnections.prototype.install = () => false;
await import('../../dist/api/threads/http-thread.js');
