/**
 * The main thread's side of the HTTP threads: starts the N threads that listen on the engine's
 * addresses and read every connection (the main thread listens on no public address), keeps
 * each one's copy of the function table exact (a change is posted to every thread, and the shared
 * epoch moved, before the engine's caller answers: Engine.watchFunctions), runs the calls they
 * forward, takes their reports (counted as the engine's own calls), serves the requests they pass
 * on through a private unix socket into the main thread's own server, and has them report before
 * it answers any read of counts. A thread that dies is logged and started again.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import type { BasicCredentials } from '../../config/credentials.js';
import type { Engine } from '../../core/engine.js';
import type { DurationCounts } from '../../core/events.js';
import type { InvocableFunction } from '../../core/function-table.js';
import { toEngineError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { ClientGone } from '../invoke-route.js';
import { INVOKE_ROUTE } from '../reply.js';
import type { ListenAddress } from '../listen.js';
import { CONTROL_CELLS, CONTROL_CLOSING, CONTROL_EPOCH, type ServerSettings, type ThreadData, type ToMain, type ToThread } from './protocol.js';

export interface HttpThreadsOptions {
  /** Threads that serve HTTP (servingThreads: 1 where reusePort is not spread). */
  threads: number;
  engine: Engine;
  app: FastifyInstance;
  bodyLimitBytes: number;
  /** Client connections open at once over all threads, each taking an equal share (the kernel spreads them evenly); none when absent. */
  maxConnections?: number;
  /** Set when Basic auth guards invocations: a thread answers those that carry them, and passes on the others to be refused. */
  invokeCredentials?: BasicCredentials;
  inlineBudgetMs: number;
  inlineHeavyUs: number;
  logger: Logger;
  /** Where threads' answers to direct invocations are counted (the HTTP metrics). */
  observeHttp: (method: string, route: string, status: number, durations: DurationCounts) => void;
  registry: Registry;
  /** Starts a thread's worker; by default the thread itself (http-thread.js). Tests wrap it to make one fail. */
  startWorker?: (data: ThreadData, transferList: MessagePort[]) => Worker;
}

/** The thread's entry; from the sources (as tests run them), the compiled one: a worker runs JavaScript. */
function threadEntry(): URL {
  const here = new URL(import.meta.url);
  return here.pathname.endsWith('.ts') ? new URL('../../../dist/api/threads/http-thread.js', here) : new URL('./http-thread.js', here);
}

const startThread = (data: ThreadData, transferList: MessagePort[]): Worker => new Worker(threadEntry(), { workerData: data, transferList });

/** How long a read waits for a thread's report before it answers without it (a thread that hangs). */
const FLUSH_BOUND_MS = 2_000;
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 10_000;

interface Thread {
  index: number;
  worker: Worker;
  table: MessagePort;
  /** Calls it forwarded and the engine runs, by its id: aborted when the client goes (or the thread). */
  calls: Map<number, ClientGone>;
  listening: boolean;
  exited: boolean;
}

/** The most threads one setting of 0 gives (as many as --http-threads accepts). */
const MAX_HTTP_THREADS = 64;

/** `--http-threads` (0: one per CPU this process may use) as the number of threads that will serve HTTP. */
export function servingThreads(setting: number): number {
  // Node refuses reusePort where the kernel does not spread connections over the listeners.
  if (process.platform !== 'linux') return 1;
  return Math.min(MAX_HTTP_THREADS, setting === 0 ? availableParallelism() : setting);
}

export class HttpThreads {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_CELLS * Int32Array.BYTES_PER_ELEMENT));
  private readonly threads: (Thread | undefined)[] = [];
  /** Requests read per thread, by index (1…N). */
  private readonly counted: number[] = [];
  private readonly flushWaiters = new Map<number, { left: Set<number>; done: () => void }>();
  private nextFlush = 1;
  private upstream: NetServer | undefined;
  private upstreamPath = '';
  /** Where every thread listens: the addresses, and the port (0 until the first thread has bound one). */
  private addresses: string[] = [];
  private port = 0;
  private stopping = false;
  private respawnDelay = RESPAWN_FIRST_MS;
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  /** Inline counts the threads reported (added to the runtime's own in the metrics). */
  readonly inline = { ran: 0, abandoned: 0, stopped: 0 };
  /** What each thread's idle inline instances hold, as last reported, by index. */
  private readonly instanceBytes: number[] = [];

  constructor(private readonly options: HttpThreadsOptions) {
    const counted = this.counted;
    const reported: number[] = [];
    new Counter({
      name: 'wasm_engine_http_thread_requests_total',
      help: 'HTTP requests read, by the HTTP thread whose connection they came on (1…N).',
      labelNames: ['thread'],
      registers: [options.registry],
      // Counted as plain numbers from the threads' reports, brought in when scraped.
      collect() {
        counted.forEach((count, i) => {
          const delta = count - (reported[i] ?? 0);
          if (delta > 0 || reported[i] === undefined) this.inc({ thread: String(i) }, delta);
          reported[i] = count;
        });
      },
    });
    const { app, engine } = options;
    engine.watchFunctions((name) => this.publish(name));
    // Reads of what the threads count wait for their reports: an invocation answered before the
    // read was sent is in its answer.
    app.addHook('onRequest', async (request) => {
      if (request.method === 'GET' || request.method === 'HEAD' || request.url.startsWith('/function/query')) await this.flush();
    });
  }

  /** Bytes of guest memory the threads keep in idle inline instances (as reported: a read of /metrics has them report first). */
  get inlineInstanceBytes(): number {
    let total = 0;
    for (const bytes of this.instanceBytes) total += bytes ?? 0;
    return total;
  }

  /**
   * Starts the threads on every one of `addresses` and `port` (0: the first thread picks a free
   * one, the others take the same); resolves with what they listen on once every one does, and
   * rejects when the first cannot listen (the port is taken, say).
   */
  async start(addresses: readonly string[], port: number): Promise<ListenAddress[]> {
    this.addresses = [...addresses];
    this.port = port;
    await this.listenUpstream();
    const listening = await this.spawn(1);
    this.port = listening[0]?.port ?? port;
    const started: Promise<unknown>[] = [];
    for (let index = 2; index <= this.options.threads; index++) started.push(this.spawn(index));
    await Promise.all(started);
    return listening;
  }

  /** The requests read so far (the engine's own warm-up) are not counted: call after a flush. */
  forgetRequestsSoFar(): void {
    this.counted.forEach((_count, i) => (this.counted[i] = 0));
  }

  /** From now on threads run no call themselves: the engine answers (503 while it drains). */
  beginShutdown(): void {
    Atomics.store(this.control, CONTROL_CLOSING, 1);
  }

  /** Threads stop accepting, finish their requests and end; past `bound`, they are ended. */
  async stop(bound: Promise<void>): Promise<void> {
    this.stopping = true;
    this.beginShutdown();
    for (const timer of this.respawnTimers) clearTimeout(timer);
    const exits: Promise<void>[] = [];
    for (const thread of this.threads) {
      if (thread === undefined || thread.exited) continue;
      exits.push(new Promise((resolve) => thread.worker.once('exit', () => resolve())));
      thread.worker.postMessage({ type: 'close' } satisfies ToThread);
    }
    const all = Promise.all(exits).then(() => true);
    if (!(await Promise.race([all, bound.then(() => false)]))) {
      for (const thread of this.threads) if (thread && !thread.exited) void thread.worker.terminate();
      await all;
    }
    // No new connection comes now; those still open are the main server's to close (app.close).
    this.upstream?.close();
  }

  /** Every thread reports what it has gathered; resolves once all have (or a bound passed). */
  flush(): Promise<void> {
    const left = new Set<number>();
    for (const thread of this.threads) if (thread && thread.listening && !thread.exited) left.add(thread.index);
    if (left.size === 0) return Promise.resolve();
    const seq = this.nextFlush++;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => finish(), FLUSH_BOUND_MS);
      const finish = (): void => {
        clearTimeout(timer);
        this.flushWaiters.delete(seq);
        resolve();
      };
      this.flushWaiters.set(seq, { left, done: finish });
      for (const index of left) this.threads[index]!.worker.postMessage({ type: 'flush', seq } satisfies ToThread);
    });
  }

  private flushed(index: number, seq: number): void {
    const waiter = this.flushWaiters.get(seq);
    if (!waiter) return;
    waiter.left.delete(index);
    if (waiter.left.size === 0) waiter.done();
  }

  /** Posts a function's new state to every thread, then moves the epoch: no thread runs a call on the old one after. */
  private publish(name: string): void {
    if (this.threads.length === 0) return;
    const fn = this.options.engine.invocableFunction(name);
    for (const thread of this.threads) if (thread && !thread.exited) thread.table.postMessage({ name, fn });
    Atomics.add(this.control, CONTROL_EPOCH, 1);
  }

  private snapshot(): InvocableFunction[] {
    const functions: InvocableFunction[] = [];
    for (const record of this.options.engine.list()) {
      const fn = this.options.engine.invocableFunction(record.name);
      if (fn) functions.push(fn);
    }
    return functions;
  }

  /** The private socket the threads' passed-on requests come in by, into the main thread's server. */
  private async listenUpstream(): Promise<void> {
    // Linux's abstract namespace: no file, so nothing is left in the data directory (or anywhere)
    // when the process is killed; a random name, so that no other process can take it first.
    const path = `\0wasm-engine-http-threads-${process.pid}-${randomBytes(8).toString('hex')}`;
    // Half-open allowed, as on Node's own HTTP server: a client's end must not close a socket the
    // server still answers or lingers on (a 413 reads the rest of the body after its answer).
    const server = createNetServer({ allowHalfOpen: true }, (socket: Socket) => {
      this.options.app.server.emit('connection', socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    this.upstream = server;
    this.upstreamPath = path;
  }

  /** Starts thread `index`; resolves with what it listens on, rejects when it cannot listen or ends first. */
  private spawn(index: number): Promise<ListenAddress[]> {
    const { port1, port2 } = new MessageChannel();
    const app = this.options.app;
    const s = app.server;
    const server: ServerSettings = {
      keepAliveTimeout: s.keepAliveTimeout,
      requestTimeout: s.requestTimeout,
      headersTimeout: s.headersTimeout,
      timeout: s.timeout,
      maxRequestsPerSocket: s.maxRequestsPerSocket ?? null,
      maxHeadersCount: s.maxHeadersCount ?? null,
    };
    const data: ThreadData = {
      index,
      addresses: this.addresses,
      port: this.port,
      reusePort: this.options.threads > 1,
      server,
      bodyLimitBytes: this.options.bodyLimitBytes,
      ...(this.options.maxConnections === undefined ? {} : { maxConnections: Math.ceil(this.options.maxConnections / this.options.threads) }),
      upstreamPath: this.upstreamPath,
      ...(this.options.invokeCredentials ? { invokeCredentials: this.options.invokeCredentials } : {}),
      inlineBudgetMs: this.options.inlineBudgetMs,
      inlineHeavyUs: this.options.inlineHeavyUs,
      reuseInstances: true,
      control: this.control.buffer as SharedArrayBuffer,
      tablePort: port2,
      // Read with the epoch in one turn: every change after it is a message on the port.
      functions: this.snapshot(),
      epoch: Atomics.load(this.control, CONTROL_EPOCH),
    };
    const worker = (this.options.startWorker ?? startThread)(data, [port2]);
    const thread: Thread = { index, worker, table: port1, calls: new Map(), listening: false, exited: false };
    this.threads[index] = thread;
    this.counted[index] ??= 0;
    return new Promise<ListenAddress[]>((resolve, reject) => {
      let settled = false;
      const settle = (addresses: ListenAddress[] | Error): void => {
        if (settled) return;
        settled = true;
        if (addresses instanceof Error) reject(addresses);
        else resolve(addresses);
      };
      worker.on('message', (message: ToMain) => {
        if (message.type === 'listening') {
          thread.listening = true;
          this.respawnDelay = RESPAWN_FIRST_MS;
          settle(message.addresses);
        } else if (message.type === 'listen-failed') {
          this.options.logger.error({ thread: index, err: message.err }, `HTTP thread ${index} could not listen`);
          settle(new Error(`HTTP thread ${index} could not listen: ${message.err}`));
          void worker.terminate();
        } else this.onMessage(thread, message);
      });
      worker.on('error', (err) => this.options.logger.error({ err, thread: index }, 'HTTP thread failed'));
      worker.on('exit', (code) => {
        thread.exited = true;
        this.instanceBytes[index] = 0;
        port1.close();
        for (const gone of thread.calls.values()) gone.abort();
        thread.calls.clear();
        for (const [seq] of this.flushWaiters) this.flushed(index, seq);
        settle(new Error(`HTTP thread ${index} ended (exit code ${code}) before it listened`));
        if (this.stopping) return;
        this.options.logger.error({ thread: index, code }, `HTTP thread ${index} ended (exit code ${code}): starting it again; its connections are lost`);
        const timer = setTimeout(() => {
          this.respawnTimers.delete(timer);
          // A thread started again that cannot listen ends, and is started again later.
          if (!this.stopping) this.spawn(index).catch(() => {});
        }, this.respawnDelay);
        this.respawnTimers.add(timer);
        this.respawnDelay = Math.min(this.respawnDelay * 2, RESPAWN_MAX_MS);
      });
    });
  }

  private onMessage(thread: Thread, message: ToMain): void {
    switch (message.type) {
      case 'invoke': {
        const gone = new ClientGone();
        thread.calls.set(message.id, gone);
        const reply = (answer: ToThread): void => {
          thread.calls.delete(message.id);
          if (!thread.exited) thread.worker.postMessage(answer);
        };
        this.options.engine.invoke({ name: message.name, args: message.args, signal: gone, inlineTried: message.inlineTried }).then(
          (result) => reply({ type: 'result', id: message.id, output: result.output }),
          (error: unknown) => {
            const err = toEngineError(error);
            reply({
              type: 'failure',
              id: message.id,
              code: err.code,
              message: err.message,
              ...(err.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: err.retryAfterSeconds }),
            });
          },
        );
        return;
      }
      case 'cancel':
        thread.calls.get(message.id)?.abort();
        return;
      case 'wake':
        this.options.engine.slotReleased(message.name);
        return;
      case 'report':
        this.options.engine.recordInvocations(message.calls, message.stderr);
        for (const [status, durations] of message.http) this.options.observeHttp('POST', INVOKE_ROUTE, status, durations);
        this.counted[thread.index] = (this.counted[thread.index] ?? 0) + message.requests;
        this.inline.ran += message.inlineRan;
        this.inline.abandoned += message.inlineAbandoned;
        this.inline.stopped += message.inlineStopped;
        this.instanceBytes[thread.index] = message.inlineInstanceBytes;
        return;
      case 'flushed':
        this.flushed(thread.index, message.seq);
        return;
      case 'log':
        this.options.logger[message.level]({ thread: thread.index, err: message.err }, message.msg);
        return;
      case 'closed':
        void thread.worker.terminate();
        return;
      case 'listening':
      case 'listen-failed':
        return;
    }
  }
}
