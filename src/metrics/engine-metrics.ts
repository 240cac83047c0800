/**
 * The engine's Prometheus metrics (prom-client text format), fed by the engine's events and by the
 * HTTP layer, and sampled from the worker pool at scrape time.
 *
 * The per-invocation and per-HTTP-request series are kept in plain records (per function; per
 * method, route path and status) and turned into samples only when scraped: an invocation or an
 * answer then costs a Map lookup or two and a few additions, with no label hashing or allocation.
 * Deploys and pulls are rarer and costlier anyway and use prom-client's own Counter and Histogram.
 * A deleted function's series are dropped, so label cardinality is bounded by the functions
 * deployed (and the HTTP series by the routes).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { DeployOperation, DurationCounts, EngineEvents, Outcome } from '../core/events.js';
import { Durations, HTTP_BUCKETS, INVOCATION_BUCKETS, type DurationSample } from './durations.js';

export interface PoolStats {
  workers: number;
  busy: number;
  queued: number;
  loadedModules: number;
  /** Invocations answered on the thread that read them, and those abandoned there for a worker (inline/). */
  inlineRan?: number;
  inlineAbandoned?: number;
  /** Invocations stopped at their time limit by their own checks, by where they ran. */
  preemptions?: { worker: number; inline: number };
  /** Workers replaced, by reason. */
  workerReplacements?: Record<string, number>;
}

export interface MetricsSources {
  /** The worker pool's numbers, read at scrape time. */
  poolStats: () => PoolStats;
  /** Invocations running or waiting for a slot. */
  inflight: () => number;
  /** Functions deployed. */
  functions: () => number;
  /** Bytes of guest memory kept in idle instances for inline calls, every thread's summed. */
  inlineInstanceBytes?: () => number;
}

const DEPLOY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One function's invocation series. */
class FunctionSeries {
  success = 0;
  readonly failures = new Map<Outcome, number>();
  coldStarts = 0;
  readonly durations = new Durations(INVOCATION_BUCKETS);
}

/** One (method, route path, status) of the HTTP series. */
interface HttpSeries {
  labels: { method: string; path: string; code: string };
  durations: Durations;
}

type Sample = DurationSample;

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
  /**
   * By `method path code`. Kept by hand like the invocation series: every invocation is an HTTP
   * request too, and prom-client hashes the labels of every observation.
   */
  private readonly http = new Map<string, HttpSeries>();
  /** The same series' durations by method, path and status (httpRequest). */
  private readonly httpByRoute = new Map<string, Map<string, Map<number, Durations>>>();

  constructor(sources: MetricsSources, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      dropGaugesNamedLikeCounters(this.registry);
    }

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
      new ScrapedMetric(
        'wasm_engine_inline_calls_total',
        'Invocations run first on the thread that read them: answered there (ran), or stopped at the inline budget and run again on a worker (abandoned).',
        'counter',
        () => {
          const pool = sources.poolStats();
          return [
            { labels: { outcome: 'ran' }, value: pool.inlineRan ?? 0 },
            { labels: { outcome: 'abandoned' }, value: pool.inlineAbandoned ?? 0 },
          ];
        },
      ),
    );
    this.register(
      new ScrapedMetric(
        'wasm_engine_preemptions_total',
        'Invocations stopped at their time limit by their own preemption checks (answered FUNCTION_TIMEOUT; the thread lived on), by where they ran: worker or inline.',
        'counter',
        () => {
          const stopped = sources.poolStats().preemptions;
          return [
            { labels: { where: 'worker' }, value: stopped?.worker ?? 0 },
            { labels: { where: 'inline' }, value: stopped?.inline ?? 0 },
          ];
        },
      ),
    );
    this.register(
      new ScrapedMetric(
        'wasm_engine_worker_replacements_total',
        'Sandbox workers replaced by a new one, by reason: deadline (terminated: guest code ran past a time limit without stopping itself), not_started (terminated: a call it held had not started by its deadline), preload (terminated while readying a restored module), crash, out_of_memory.',
        'counter',
        () => Object.entries(sources.poolStats().workerReplacements ?? {}).map(([reason, value]) => ({ labels: { reason }, value })),
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
    gauge(
      'wasm_engine_inline_instances_bytes',
      'Bytes of guest memory kept in idle instances for inline calls, summed over the threads that serve HTTP (each bounded to 64 MiB).',
      () => sources.inlineInstanceBytes?.() ?? 0,
    );
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
    this.register(
      new ScrapedMetric('provider_http_requests_total', 'HTTP requests by method, route path and status code.', 'counter', () =>
        [...this.http.values()].map(({ labels, durations }) => ({ labels, value: durations.count })),
      ),
    );
    this.register(
      new ScrapedMetric('provider_http_request_duration_seconds', 'Seconds spent serving HTTP requests, by method, route path and status code.', 'histogram', () => {
        const samples: Sample[] = [];
        for (const { labels, durations } of this.http.values()) durations.samples('provider_http_request_duration_seconds', labels, samples);
        return samples;
      }),
    );
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  invocation(fn: string, outcome: Outcome, seconds: number, coldStart: boolean): void {
    this.counted(fn, outcome, 1, coldStart ? 1 : 0).durations.observe(seconds);
  }

  invocationBatch(fn: string, outcome: Outcome, durations: DurationCounts, coldStarts: number): void {
    this.counted(fn, outcome, durations.count, coldStarts).durations.add(durations);
  }

  /** Counts `calls` invocations of `fn` that ended with `outcome`; returns its series for their durations. */
  private counted(fn: string, outcome: Outcome, calls: number, coldStarts: number): FunctionSeries {
    let s = this.series.get(fn);
    if (!s) {
      s = new FunctionSeries();
      this.series.set(fn, s);
    }
    if (outcome === 'success') s.success += calls;
    else s.failures.set(outcome, (s.failures.get(outcome) ?? 0) + calls);
    s.coldStarts += coldStarts;
    return s;
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

  /**
   * `path` must be a route pattern (e.g. /function/:name), never the raw URL, to bound cardinality.
   * Found through maps by method, path and status rather than by a key string built per request:
   * the HTTP threads' answers are all observed here, on the main thread.
   */
  httpRequest(method: string, path: string, code: number, seconds: number): void {
    let byPath = this.httpByRoute.get(method);
    if (byPath === undefined) {
      byPath = new Map();
      this.httpByRoute.set(method, byPath);
    }
    let byCode = byPath.get(path);
    if (byCode === undefined) {
      byCode = new Map();
      byPath.set(path, byCode);
    }
    let durations = byCode.get(code);
    if (durations === undefined) {
      durations = this.httpSeries(method, path, code).durations;
      byCode.set(code, durations);
    }
    durations.observe(seconds);
  }

  /** Many answers of one method, route path and status, their durations binned with HTTP_BUCKETS (an HTTP thread's). */
  httpRequests(method: string, path: string, code: number, durations: DurationCounts): void {
    this.httpSeries(method, path, code).durations.add(durations);
  }

  private httpSeries(method: string, path: string, code: number): HttpSeries {
    const key = `${method} ${path} ${code}`;
    let series = this.http.get(key);
    if (!series) {
      series = { labels: { method, path, code: String(code) }, durations: new Durations(HTTP_BUCKETS) };
      this.http.set(key, series);
    }
    return series;
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
    for (const [fn, s] of this.series) s.durations.samples('wasm_engine_invocation_duration_seconds', { function_name: fn }, samples);
    return samples;
  }
}

/**
 * prom-client's default collectors write `nodejs_active_handles_total`, `nodejs_active_requests_total`
 * and `nodejs_active_resources_total` as gauges: `_total` names a counter, so `promtool check
 * metrics` refuses them, and each only repeats the sum of its per-type family
 * (`sum without (type) (nodejs_active_handles)`), as prom-client's maintainers say
 * (prometheus/client_js#283). They are dropped; the per-type families stay.
 */
function dropGaugesNamedLikeCounters(registry: Registry): void {
  for (const { name, type } of registry.getMetricsAsArray()) {
    // Typed as a numeric enum, but prom-client's metrics carry the type's name ('counter').
    if (name.endsWith('_total') && String(type) !== 'counter') registry.removeSingleMetric(name);
  }
}
