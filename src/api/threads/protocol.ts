/**
 * Messages between the main thread (http-threads.ts) and each HTTP thread (http-thread.ts). Two
 * channels per thread: the worker's own port for calls, reports and control, and a port of its own
 * for the function table, which the thread reads synchronously (receiveMessageOnPort) when the
 * shared epoch says it is behind, so that no call runs on a table older than an answer given, and
 * otherwise as its changes arrive (an idle thread lets go of a deleted module at once).
 */
import type { MessagePort } from 'node:worker_threads';
import type { BasicCredentials } from '../../config/credentials.js';
import type { ErrorCode } from '../../errors.js';
import type { DurationCounts } from '../../core/events.js';
import type { InvocableFunction, ThreadInvocations, ThreadStderr } from '../../core/function-table.js';
import type { ListenAddress } from '../listen.js';

/** Cells of the control array shared with every thread. */
/** Function table changes posted so far (one message to every thread per change). */
export const CONTROL_EPOCH = 0;
/** 1 once the engine stops: threads then run nothing themselves, the main thread answers. */
export const CONTROL_CLOSING = 1;
export const CONTROL_CELLS = 2;

/** The settings of the engine's server (server.ts's Fastify server) that every thread's server has too. */
export interface ServerSettings {
  keepAliveTimeout: number;
  requestTimeout: number;
  headersTimeout: number;
  timeout: number;
  maxRequestsPerSocket: number | null;
  maxHeadersCount: number | null;
}

export interface ThreadData {
  /** 1…N. */
  index: number;
  /** Every address the engine's host names (`localhost` may be two): the thread listens on each. */
  addresses: string[];
  /** 0 for the first thread when the engine was given port 0: it picks one, and the others then listen on it. */
  port: number;
  /** Other threads listen on the same addresses and port (SO_REUSEPORT): the kernel spreads connections. */
  reusePort: boolean;
  server: ServerSettings;
  bodyLimitBytes: number;
  /** Connections this thread keeps open at once (its share of --max-connections); no bound when absent. */
  maxConnections?: number;
  /** Where the main thread's server takes the requests this thread passes on (a unix socket). */
  upstreamPath: string;
  /** Set when Basic auth guards invocations: one without them goes to the main thread's server, which refuses it. */
  invokeCredentials?: BasicCredentials;
  inlineBudgetMs: number;
  inlineHeavyUs: number;
  reuseInstances: boolean;
  control: SharedArrayBuffer;
  tablePort: MessagePort;
  /** The table now, and the epoch it is at. */
  functions: InvocableFunction[];
  epoch: number;
}

/** One function table change: the function as it now is, or gone (its calls go to the main thread). */
export interface TableMessage {
  name: string;
  fn: InvocableFunction | undefined;
}

/** The HTTP answers with one status this thread gave to direct invocations, for the HTTP metrics: durations binned with HTTP_BUCKETS. */
export type HttpAnswers = [status: number, durations: DurationCounts];

export type ToMain =
  /** Every address listened on, with the port. */
  | { type: 'listening'; addresses: ListenAddress[] }
  /** The first address could not be bound (the port is taken, say). */
  | { type: 'listen-failed'; err: string }
  | { type: 'invoke'; id: number; name: string; args: unknown; inlineTried: boolean }
  | { type: 'cancel'; id: number }
  /** A slot given back while the main thread had calls waiting for one. */
  | { type: 'wake'; name: string }
  /** Counts since the last report; inlineInstanceBytes as it is now. */
  | {
      type: 'report';
      calls: ThreadInvocations[];
      stderr: ThreadStderr[];
      http: HttpAnswers[];
      requests: number;
      inlineRan: number;
      inlineAbandoned: number;
      inlineStopped: number;
      inlineInstanceBytes: number;
    }
  | { type: 'flushed'; seq: number }
  | { type: 'log'; level: 'error' | 'warn'; err: string; msg: string }
  | { type: 'closed' };

export type ToThread =
  | { type: 'result'; id: number; output: string }
  | { type: 'failure'; id: number; code: ErrorCode; message: string; retryAfterSeconds?: number }
  /** Report now, then say flushed with `seq`. */
  | { type: 'flush'; seq: number }
  /** Stop accepting, finish what is in flight, report, and end. */
  | { type: 'close' };
