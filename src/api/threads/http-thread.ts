/**
 * An HTTP thread (a worker_thread started by http-threads.ts): one node:http server on every
 * address the engine listens on (with reusePort when there are several threads: the kernel spreads
 * connections over them), with the engine's server settings and connection guards. The main
 * thread listens on no public address: every connection is read by a thread like this one.
 * `POST /function/invoke` is answered here by the one invocation route (invoke-route.ts) over this
 * thread's invoker (thread-invoker.ts); every other request goes to the main thread's server
 * (proxy.ts).
 */
import { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { InlineExecutor } from '../../runtime/inline/inline-executor.js';
import { basicAuthChecker } from '../basic-auth.js';
import { onClientError, refuseRequestsWithoutHost } from '../client-errors.js';
import { InvokeConnections } from '../invoke-connection.js';
import { InvokeCalls, invokeRoute, isInvokeRequest } from '../invoke-route.js';
import { listenOnEveryAddress, type Listening } from '../listen.js';
import { connectionsCheckingInterval } from '../request-timeout.js';
import { gatePipelinedRequests } from '../pipeline-gate.js';
import { alsoOnRequest } from '../request-listener.js';
import type { ThreadData, ToMain, ToThread } from './protocol.js';
import { proxyToMain } from './proxy.js';
import { Reports } from './reports.js';
import { ThreadInvoker } from './thread-invoker.js';

const port = parentPort;
if (port === null) throw new Error('http-thread.js runs as a worker thread');
const data = workerData as ThreadData;
const post = (message: ToMain): void => port.postMessage(message);
const describe = (err: unknown): string => (err instanceof Error ? (err.stack ?? err.message) : String(err));
const logError = (err: unknown): void => post({ type: 'log', level: 'error', err: describe(err), msg: 'unexpected error' });

// A budget of 0 turns inline running off; the main thread then shares no function (runtime.portable).
const executor = new InlineExecutor({ budgetMs: Math.max(1, data.inlineBudgetMs), reuseInstances: data.reuseInstances, heavyMs: data.inlineHeavyUs / 1000 });
const reports = new Reports(post, executor.stats, () => executor.idleInstanceBytes);
const invoker = new ThreadInvoker({
  control: new Int32Array(data.control),
  tablePort: data.tablePort,
  functions: data.functions,
  epoch: data.epoch,
  executor,
  reports,
  post,
});

let closing = false;
const calls = new InvokeCalls({ engine: invoker, logError, observe: (status, seconds) => reports.answered(status, seconds) });
const direct = invokeRoute({ engine: invoker, bodyLimitBytes: data.bodyLimitBytes, logError, closing: () => closing }, calls);
// With Basic auth on invocations, one without the credentials goes on to the main thread's server,
// whose hook gives the refusal (one implementation of it).
const allowed = data.invokeCredentials ? basicAuthChecker(data.invokeCredentials) : undefined;
let connections: InvokeConnections | undefined;
const agent = new Agent({ keepAlive: true, timeout: 30_000 });
const proxy = proxyToMain({ agent, socketPath: data.upstreamPath, bodyLimitBytes: data.bodyLimitBytes, closing: () => closing, logError });

/** The server of every address, with the engine's settings and guards. */
function serve(): Server {
  const settings = data.server;
  const server = createServer({ connectionsCheckingInterval: connectionsCheckingInterval(settings.requestTimeout) });
  server.keepAliveTimeout = settings.keepAliveTimeout;
  server.requestTimeout = settings.requestTimeout;
  server.headersTimeout = settings.headersTimeout;
  server.timeout = settings.timeout;
  server.maxRequestsPerSocket = settings.maxRequestsPerSocket;
  server.maxHeadersCount = settings.maxHeadersCount;
  // Checked as a connection is accepted, before anything reads it: the reader's connections count too.
  if (data.maxConnections !== undefined) server.maxConnections = data.maxConnections;
  server.on('clientError', onClientError);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (isInvokeRequest(req) && (allowed === undefined || allowed(req.headers.authorization))) direct(req, res);
    else proxy(req, res);
  });
  gatePipelinedRequests(server);
  refuseRequestsWithoutHost(server);
  alsoOnRequest(server, () => reports.request(), 'after');
  // Installed last: it takes the connection listener the server has by now.
  connections = new InvokeConnections({
    server,
    calls,
    bodyLimitBytes: data.bodyLimitBytes,
    active: () => !closing,
    ...(allowed ? { allowed } : {}),
    onRequest: () => reports.request(),
    logError,
  });
  connections.install();
  return server;
}
const server = serve();
let further: Listening['further'] = [];

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'result':
    case 'failure':
      invoker.settle(message);
      return;
    case 'flush':
      reports.flush();
      post({ type: 'flushed', seq: message.seq });
      return;
    case 'close':
      close();
      return;
  }
});

/** Stops accepting; once the connections end (answers now close them), reports and says so. */
function close(): void {
  if (closing) return;
  closing = true;
  for (const extra of further) extra.close();
  const ended = (): void => {
    reports.flush();
    invoker.dispose();
    agent.destroy();
    post({ type: 'closed' });
  };
  if (server.listening) server.close(ended);
  else ended();
  server.closeIdleConnections();
  connections?.closeIdle();
}

listenOnEveryAddress(server, data.addresses, data.port, data.reusePort, (address, err, msg) =>
  post({ type: 'log', level: 'warn', err: `${address}: ${describe(err)}`, msg }),
).then(
  (listening) => {
    further = listening.further;
    post({ type: 'listening', addresses: listening.addresses });
  },
  // The reason alone (the port is taken, say): the stack says nothing more to an operator.
  (err: unknown) => post({ type: 'listen-failed', err: err instanceof Error ? err.message : String(err) }),
);
