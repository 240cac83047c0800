/**
 * An HTTP thread (a worker_thread started by http-threads.ts): a node:http server on each address
 * the engine listens on (reusePort: the kernel spreads connections over every thread that listens), with
 * the main thread's server settings and the same connection guards. `POST /function/invoke` is
 * answered by the one invocation route (invoke-route.ts) over this thread's invoker
 * (thread-invoker.ts); every other request goes to the main thread's server (proxy.ts).
 */
import { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { InlineExecutor } from '../../runtime/inline/inline-executor.js';
import { onClientError, refuseRequestsWithoutHost } from '../client-errors.js';
import { invokeRoute, isInvokeRequest } from '../invoke-route.js';
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
const direct = invokeRoute({
  engine: invoker,
  bodyLimitBytes: data.bodyLimitBytes,
  logError,
  closing: () => closing,
  observe: (status, seconds) => reports.answered(status, seconds),
});
const agent = new Agent({ keepAlive: true, timeout: 30_000 });
const proxy = proxyToMain({ agent, socketPath: data.upstreamPath, bodyLimitBytes: data.bodyLimitBytes, closing: () => closing, logError });

/** One server per address the main thread listens on, each with its settings and guards. */
function serve(): Server {
  const server = createServer();
  const settings = data.server;
  server.keepAliveTimeout = settings.keepAliveTimeout;
  server.requestTimeout = settings.requestTimeout;
  server.headersTimeout = settings.headersTimeout;
  server.timeout = settings.timeout;
  server.maxRequestsPerSocket = settings.maxRequestsPerSocket;
  server.maxHeadersCount = settings.maxHeadersCount;
  server.on('clientError', onClientError);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!data.proxyInvocations && isInvokeRequest(req)) direct(req, res);
    else proxy(req, res);
  });
  gatePipelinedRequests(server);
  refuseRequestsWithoutHost(server);
  alsoOnRequest(server, () => reports.request(), 'after');
  return server;
}
const servers = data.listen.map(serve);

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
  let open = servers.length;
  for (const server of servers) {
    server.close(() => {
      if (--open > 0) return;
      reports.flush();
      invoker.dispose();
      agent.destroy();
      post({ type: 'closed' });
    });
    server.closeIdleConnections();
  }
}

let listening = 0;
data.listen.forEach(({ host, port: at }, i) =>
  servers[i]!.listen({ host, port: at, reusePort: true }, () => {
    if (++listening === servers.length) post({ type: 'listening' });
  }),
);
