/**
 * An HTTP thread reports its calls and answers per series, their durations binned (threads/
 * reports.ts), and the main thread adds each series in one step. The metrics a scrape then shows
 * must be the ones the main thread would show had it observed every call itself: the same counts
 * per outcome, buckets, sums and HTTP series, and every stderr text in the order the calls ended.
 */
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../../src/core/events.js';
import { EngineMetrics } from '../../src/metrics/engine-metrics.js';
import { Reports } from '../../src/api/threads/reports.js';
import type { ToMain } from '../../src/api/threads/protocol.js';
import { parsePrometheus } from '../support/prometheus.js';

const sources = { poolStats: () => ({ workers: 1, busy: 0, queued: 0, loadedModules: 0 }), inflight: () => 0, functions: () => 2 };

interface Call {
  name: string;
  digest: string;
  outcome: Outcome;
  seconds: number;
  stderr: string;
}

/** Calls over two functions, three outcomes and two versions, with durations on, below and above the bucket bounds. */
function calls(): Call[] {
  const list: Call[] = [];
  const durations = [0.0001, 0.0005, 0.00050001, 0.001, 0.003, 0.01, 0.2, 0.5, 1, 7, 10, 29.9, 30, 45];
  const outcomes: Outcome[] = ['success', 'FUNCTION_TIMEOUT', 'FUNCTION_FAILED'];
  let i = 0;
  for (const seconds of durations) {
    for (const outcome of outcomes) {
      i += 1;
      list.push({ name: i % 2 === 0 ? 'gcd' : 'auth', digest: i % 5 === 0 ? 'sha256:b' : 'sha256:a', outcome, seconds, stderr: i % 3 === 0 ? `line ${i}\n` : '' });
    }
  }
  return list;
}

describe("an HTTP thread's reports", () => {
  it('give the same metrics as every call and answer observed one by one on the main thread', async () => {
    const direct = new EngineMetrics(sources, { processMetrics: false });
    const reported = new EngineMetrics(sources, { processMetrics: false });
    const messages: ToMain[] = [];
    const reports = new Reports((message) => messages.push(message), { ran: 0, abandoned: 0, stopped: 0 }, () => 0);

    const all = calls();
    for (const [index, call] of all.entries()) {
      direct.invocation(call.name, call.outcome, call.seconds, false);
      reports.invocation(call.name, call.digest, call.outcome, call.seconds, call.stderr);
      const status = call.outcome === 'success' ? 200 : 504;
      direct.httpRequest('POST', '/function/invoke', status, call.seconds);
      reports.answered(status, call.seconds);
      // Two reports, as a report can come while calls go on.
      if (index === 20) reports.flush();
    }
    reports.flush();

    const stderr: [string, string][] = [];
    expect(messages).toHaveLength(2);
    let callSeries = 0;
    for (const message of messages) {
      if (message.type !== 'report') throw new Error(`not a report: ${message.type}`);
      // Structured-cloned, as a worker's message is.
      const { calls: batches, http, stderr: texts } = structuredClone(message);
      callSeries += batches.length;
      for (const batch of batches) reported.invocationBatch(batch.name, batch.outcome, batch.durations, 0);
      for (const [status, durations] of http) reported.httpRequests('POST', '/function/invoke', status, durations);
      stderr.push(...texts);
    }
    // Per function version and outcome, not per call.
    expect(callSeries).toBeLessThan(all.length / 2);
    // Every sample alike; a sum only to rounding (floating-point addition in another order).
    const [got, want] = [parsePrometheus(await reported.text()).samples, parsePrometheus(await direct.text()).samples];
    expect(got.map(({ name, labels }) => ({ name, labels }))).toEqual(want.map(({ name, labels }) => ({ name, labels })));
    for (const [i, sample] of got.entries()) {
      if (sample.name.endsWith('_sum')) expect(sample.value).toBeCloseTo(want[i]!.value, 9);
      else expect(sample.value, `${sample.name} ${JSON.stringify(sample.labels)}`).toBe(want[i]!.value);
    }
    expect(got.some((sample) => sample.name === 'wasm_engine_invocations_total' && sample.value > 0)).toBe(true);
    expect(stderr).toEqual(all.filter((call) => call.stderr !== '').map((call) => [call.name, call.stderr]));
  });

  it('send nothing when nothing happened', () => {
    const messages: ToMain[] = [];
    const reports = new Reports((message) => messages.push(message), { ran: 0, abandoned: 0, stopped: 0 }, () => 0);
    reports.flush();
    expect(messages).toEqual([]);
  });
});
