/**
 * What an HTTP thread tells the main thread of the work it did itself: the calls it ran (counts,
 * outcomes, durations, stderr), its direct invocations' HTTP answers, the requests it read and its
 * inline executor's counts and the memory its idle instances hold. Gathered here and sent as one message at most every REPORT_MS, or at
 * once when the main thread asks (before it answers a read of them: http-threads.ts flush).
 */
import type { ThreadInvocation } from '../../core/function-table.js';
import type { InlineStats } from '../../runtime/inline/inline-executor.js';
import type { HttpObservation, ToMain } from './protocol.js';

/** How long a thread's counts may lag behind in the main thread's own view (never in an answer: see flush). */
export const REPORT_MS = 50;

export class Reports {
  private calls: ThreadInvocation[] = [];
  private http: HttpObservation[] = [];
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

  invocation(call: ThreadInvocation): void {
    this.calls.push(call);
    this.arm();
  }

  answered(status: number, seconds: number): void {
    this.http.push([status, seconds]);
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
      this.calls.length === 0 &&
      this.http.length === 0 &&
      this.requests === 0 &&
      ran === this.sentRan &&
      abandoned === this.sentAbandoned &&
      stopped === this.sentStopped &&
      instanceBytes === this.sentInstanceBytes
    ) {
      return;
    }
    this.post({
      type: 'report',
      calls: this.calls,
      http: this.http,
      requests: this.requests,
      inlineRan: ran - this.sentRan,
      inlineAbandoned: abandoned - this.sentAbandoned,
      inlineStopped: stopped - this.sentStopped,
      inlineInstanceBytes: instanceBytes,
    });
    this.calls = [];
    this.http = [];
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
