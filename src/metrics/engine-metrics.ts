/**
 * The engine's Prometheus metrics (prom-client text format), fed by the engine's events and by the
 * HTTP layer, and sampled from the worker pool at scrape time.
 *
 * The per-invocation series are kept in plain per-function records and turned into samples only
 * when scraped: an invocation then costs one Map lookup and a few additions, with no label hashing
 * or allocation. Deploys, pulls and HTTP requests are rarer or costlier anyway and use prom-client's
 * own Counter and Histogram. A deleted function's series are dropped, so label cardinality is
 * bounded by the functions deployed.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { DeployOperation, EngineEvents, Outcome } from '../core/events.js';

export interface PoolStats {
  workers: number;
  busy: number;
  queued: number;
  loadedModules: number;
}

export interface MetricsSources {
  /** The worker pool's numbers, read at scrape time. */
  poolStats: () => PoolStats;
  /** Invocations running or waiting for a slot. */
  inflight: () => number;
  /** Functions deployed. */
  functions: () => number;
}

/** Invocation latency buckets: sub-millisecond cold starts up to the default 10 s time limit. */
export const INVOCATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const DEPLOY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One function's invocation series. */
class FunctionSeries {
  success = 0;
  readonly failures = new Map<Outcome, number>();
  coldStarts = 0;
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly buckets = new Float64Array(INVOCATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < INVOCATION_BUCKETS.length && seconds > INVOCATION_BUCKETS[i]!) i += 1;
    this.buckets[i]! += 1;
    this.sum += seconds;
    this.count += 1;
  }
}

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * A metric whose samples are computed when scraped. prom-client's registry reads any object with
 * name, help, type and get(); its TypeScript type only names its own classes, hence the cast at
 * registration.
 */
class ScrapedMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly samples: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: string }> {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator };
  }

  reset(): void {}
}

export class EngineMetrics implements EngineEvents {
  readonly registry = new Registry();
  private readonly series = new Map<string, FunctionSeries>();
  private readonly deploys: Counter<'operation' | 'outcome'>;
  private readonly deployDuration: Histogram<'operation' | 'outcome'>;
  private readonly pulls: Counter<'outcome'>;
  private readonly pullBytes: Counter<'outcome'>;
  private readonly pullDuration: Histogram<'outcome'>;
  private readonly httpRequests: Counter<'method' | 'path' | 'code'>;
  private readonly httpDuration: Histogram<'method' | 'path' | 'code'>;

  constructor(sources: MetricsSources, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.register(
      new ScrapedMetric('wasm_engine_invocations_total', 'Invocations by function and outcome (success or the error code name).', 'counter', () =>
        this.invocationSamples(),
      ),
    );
    this.register(
      new ScrapedMetric(
        'wasm_engine_invocation_duration_seconds',
        'Invocation time as the caller sees it (waiting for a slot included), every outcome.',
        'histogram',
        () => this.durationSamples(),
      ),
    );
    this.register(
      new ScrapedMetric('wasm_engine_cold_starts_total', "Invocations that were the first run of a function's module since it was loaded.", 'counter', () =>
        [...this.series].map(([fn, s]) => ({ labels: { function_name: fn }, value: s.coldStarts })),
      ),
    );

    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    gauge('wasm_engine_workers', 'Worker threads in the pool.', () => sources.poolStats().workers);
    gauge('wasm_engine_workers_busy', 'Worker threads running an invocation.', () => sources.poolStats().busy);
    gauge('wasm_engine_queue_depth', "Invocations queued for a worker in the pool.", () => sources.poolStats().queued);
    gauge('wasm_engine_loaded_modules', 'Compiled modules held by the pool.', () => sources.poolStats().loadedModules);
    gauge('wasm_engine_invocations_in_flight', 'Invocations running or waiting for a slot.', sources.inflight);
    gauge('wasm_engine_functions', 'Functions deployed.', sources.functions);

    this.deploys = new Counter({
      name: 'wasm_engine_deploys_total',
      help: 'Deploys and updates by outcome.',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.deployDuration = new Histogram({
      name: 'wasm_engine_deploy_duration_seconds',
      help: 'Deploy and update time (pull, analysis, compilation, store) by outcome.',
      labelNames: ['operation', 'outcome'],
      buckets: DEPLOY_BUCKETS,
      registers,
    });
    this.pulls = new Counter({ name: 'wasm_engine_image_pulls_total', help: 'Image pulls by outcome.', labelNames: ['outcome'], registers });
    this.pullBytes = new Counter({
      name: 'wasm_engine_image_pull_bytes_total',
      help: 'Bytes of the modules pulled, by outcome (failed pulls count 0).',
      labelNames: ['outcome'],
      registers,
    });
    this.pullDuration = new Histogram({
      name: 'wasm_engine_image_pull_duration_seconds',
      help: 'Image pull time by outcome.',
      labelNames: ['outcome'],
      buckets: DEPLOY_BUCKETS,
      registers,
    });
    this.httpRequests = new Counter({
      name: 'provider_http_requests_total',
      help: 'HTTP requests by method, route path and status code.',
      labelNames: ['method', 'path', 'code'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'provider_http_request_duration_seconds',
      help: 'Seconds spent serving HTTP requests, by method, route path and status code.',
      labelNames: ['method', 'path', 'code'],
      buckets: HTTP_BUCKETS,
      registers,
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  invocation(fn: string, outcome: Outcome, seconds: number, coldStart: boolean): void {
    let s = this.series.get(fn);
    if (!s) {
      s = new FunctionSeries();
      this.series.set(fn, s);
    }
    if (outcome === 'success') s.success += 1;
    else s.failures.set(outcome, (s.failures.get(outcome) ?? 0) + 1);
    if (coldStart) s.coldStarts += 1;
    s.observe(seconds);
  }

  functionStderr(): void {}

  deploy(operation: DeployOperation, outcome: Outcome, seconds: number): void {
    this.deploys.inc({ operation, outcome });
    this.deployDuration.observe({ operation, outcome }, seconds);
  }

  pull(outcome: Outcome, bytes: number, seconds: number): void {
    this.pulls.inc({ outcome });
    this.pullBytes.inc({ outcome }, bytes);
    this.pullDuration.observe({ outcome }, seconds);
  }

  functionRemoved(fn: string): void {
    this.series.delete(fn);
  }

  /** `path` must be a route pattern (e.g. /function/:name), never the raw URL, to bound cardinality. */
  httpRequest(method: string, path: string, code: number, seconds: number): void {
    const labels = { method, path, code: String(code) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  private register(metric: ScrapedMetric): void {
    this.registry.registerMetric(metric as unknown as Metric);
  }

  private invocationSamples(): Sample[] {
    const samples: Sample[] = [];
    for (const [fn, s] of this.series) {
      if (s.success > 0) samples.push({ labels: { function_name: fn, outcome: 'success' }, value: s.success });
      for (const [outcome, n] of s.failures) samples.push({ labels: { function_name: fn, outcome }, value: n });
    }
    return samples;
  }

  private durationSamples(): Sample[] {
    const samples: Sample[] = [];
    const name = 'wasm_engine_invocation_duration_seconds';
    for (const [fn, s] of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= INVOCATION_BUCKETS.length; i += 1) {
        cumulative += s.buckets[i]!;
        const le = i < INVOCATION_BUCKETS.length ? INVOCATION_BUCKETS[i]! : '+Inf';
        samples.push({ metricName: `${name}_bucket`, labels: { le, function_name: fn }, value: cumulative });
      }
      samples.push({ metricName: `${name}_sum`, labels: { function_name: fn }, value: s.sum });
      samples.push({ metricName: `${name}_count`, labels: { function_name: fn }, value: s.count });
    }
    return samples;
  }
}
