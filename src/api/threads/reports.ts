/**
 * What an HTTP thread tells the main thread of the work it did itself: the calls it ran (counts,
 * outcomes, durations, stderr), its direct invocations' HTTP answers, the requests it read and its
 * inline executor's counts and the memory its idle instances hold. Gathered here and sent as one
 * message at most every REPORT_MS, or at once when the main thread asks (before it answers a read
 * of them: http-threads.ts flush). Calls and answers are gathered per series — per function
 * version and outcome, per status — with their durations binned as the metrics bin them, so that
 * what a report costs the main thread grows with the series it touches, not with the calls: no
 * thread is one every call passes through.
 */
import type { Outcome } from '../../core/events.js';
import type { ThreadInvocations, ThreadStderr } from '../../core/function-table.js';
import { Durations, HTTP_BUCKETS, INVOCATION_BUCKETS } from '../../metrics/durations.js';
import type { InlineStats } from '../../runtime/inline/inline-executor.js';
import type { HttpAnswers, ToMain } from './protocol.js';

/** How long a thread's counts may lag behind in the main thread's own view (never in an answer: see flush). */
export const REPORT_MS = 50;

/** The calls of one function version with one outcome since the last report. */
interface CallSeries {
  digest: string;
  outcome: Outcome;
  durations: Durations;
}

export class Reports {
  /** By function name; a list, as a function has one version and one or two outcomes at a time. */
  private calls = new Map<string, CallSeries[]>();
  private stderr: ThreadStderr[] = [];
  private http = new Map<number, Durations>();
  private requests = 0;
  private sentRan = 0;
  private sentAbandoned = 0;
  private sentStopped = 0;
  private sentInstanceBytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly post: (message: ToMain) => void,
    private readonly inline: InlineStats,
    /** The executor's idle instances' bytes, read when a report is made. */
    private readonly instanceBytes: () => number,
  ) {}

  /** A call this thread ran ended; `stderr` is what it wrote there ('' when nothing). */
  invocation(name: string, digest: string, outcome: Outcome, seconds: number, stderr: string): void {
    let list = this.calls.get(name);
    if (list === undefined) {
      list = [];
      this.calls.set(name, list);
    }
    let series: CallSeries | undefined;
    for (const candidate of list) {
      if (candidate.digest === digest && candidate.outcome === outcome) {
        series = candidate;
        break;
      }
    }
    if (series === undefined) {
      series = { digest, outcome, durations: new Durations(INVOCATION_BUCKETS) };
      list.push(series);
    }
    series.durations.observe(seconds);
    if (stderr !== '') this.stderr.push([name, stderr]);
    this.arm();
  }

  answered(status: number, seconds: number): void {
    let durations = this.http.get(status);
    if (durations === undefined) {
      durations = new Durations(HTTP_BUCKETS);
      this.http.set(status, durations);
    }
    durations.observe(seconds);
    this.arm();
  }

  request(): void {
    this.requests += 1;
    this.arm();
  }

  /** Sends what was gathered (and the executor's counts since the last report), if anything. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const { ran, abandoned, stopped } = this.inline;
    const instanceBytes = this.instanceBytes();
    if (
      this.calls.size === 0 &&
      this.http.size === 0 &&
      this.requests === 0 &&
      ran === this.sentRan &&
      abandoned === this.sentAbandoned &&
      stopped === this.sentStopped &&
      instanceBytes === this.sentInstanceBytes
    ) {
      return;
    }
    const calls: ThreadInvocations[] = [];
    for (const [name, list] of this.calls) {
      for (const { digest, outcome, durations } of list) calls.push({ name, digest, outcome, durations: durations.counts() });
    }
    const http: HttpAnswers[] = [];
    for (const [status, durations] of this.http) http.push([status, durations.counts()]);
    this.post({
      type: 'report',
      calls,
      stderr: this.stderr,
      http,
      requests: this.requests,
      inlineRan: ran - this.sentRan,
      inlineAbandoned: abandoned - this.sentAbandoned,
      inlineStopped: stopped - this.sentStopped,
      inlineInstanceBytes: instanceBytes,
    });
    this.calls = new Map();
    this.stderr = [];
    this.http = new Map();
    this.requests = 0;
    this.sentRan = ran;
    this.sentAbandoned = abandoned;
    this.sentStopped = stopped;
    this.sentInstanceBytes = instanceBytes;
  }

  private arm(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => this.flush(), REPORT_MS);
    this.timer.unref();
  }
}
