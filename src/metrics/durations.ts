/**
 * A histogram's state for one label set, kept by hand (engine-metrics.ts says why), and the bucket
 * bounds of the engine's duration histograms. An HTTP thread bins its own calls' and answers'
 * durations with the same bounds (threads/reports.ts), so that the main thread adds a report's
 * counts in one step per series rather than observing every call again.
 */
import type { DurationCounts } from '../core/events.js';

/** Invocation latency buckets: sub-millisecond cold starts up to the default 10 s time limit. */
export const INVOCATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
export const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface DurationSample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

export class Durations implements DurationCounts {
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i += 1;
    this.buckets[i]! += 1;
    this.sum += seconds;
    this.count += 1;
  }

  /** The counts as plain data, for a message to another thread. */
  counts(): DurationCounts {
    return { buckets: this.buckets, sum: this.sum, count: this.count };
  }

  /** Adds counts binned with the same bounds (another thread's). */
  add(counts: DurationCounts): void {
    if (counts.buckets.length !== this.buckets.length) throw new Error(`duration counts over ${counts.buckets.length} buckets added to ${this.buckets.length}`);
    for (let i = 0; i < this.buckets.length; i += 1) this.buckets[i]! += counts.buckets[i]!;
    this.sum += counts.sum;
    this.count += counts.count;
  }

  /** The histogram's samples for these labels, as prom-client writes them. */
  samples(name: string, labels: Record<string, string>, into: DurationSample[]): void {
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i += 1) {
      cumulative += this.buckets[i]!;
      const le = i < this.bounds.length ? this.bounds[i]! : '+Inf';
      into.push({ metricName: `${name}_bucket`, labels: { le, ...labels }, value: cumulative });
    }
    into.push({ metricName: `${name}_sum`, labels, value: this.sum });
    into.push({ metricName: `${name}_count`, labels, value: this.count });
  }
}
