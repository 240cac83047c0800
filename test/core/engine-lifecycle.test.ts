/**
 * The engine operations behind the OpenFaaS API: update in place, scale, delete while invocations
 * run, the drain of a shutdown, and the events metrics and logs hear. The runtime is a fake whose
 * invocations finish when the test says, so the order of things is observable.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, WARM_UP_NAME } from '../../src/core/engine.js';
import type { DurationCounts, EngineEvents, Outcome } from '../../src/core/events.js';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import type { FetchedModule, ImageFetcher } from '../../src/registry/types.js';
import type { FunctionRuntime, InvocationRequest, InvocationResult } from '../../src/runtime/index.js';
import { FileFunctionStore } from '../../src/store/index.js';
import { watFixture } from '../support/fixtures.js';

class MapFetcher implements ImageFetcher {
  constructor(readonly images: Record<string, Uint8Array>) {}
  async fetch(reference: string): Promise<FetchedModule> {
    const bytes = this.images[reference];
    if (!bytes) throw new EngineError('IMAGE_NOT_FOUND', `no image ${reference}`);
    return { bytes, fileName: 'm.wasm' };
  }
}

/** Invocations stay pending until release(); unloads are recorded with what was running then. */
class HeldRuntime implements FunctionRuntime {
  running: { digest: string; finish: () => void; fail: (err: Error) => void }[] = [];
  unloads: { digest: string; runningOnIt: number }[] = [];
  hold = true;
  async load(): Promise<void> {}
  invoke(req: InvocationRequest): Promise<InvocationResult> {
    if (!this.hold) return Promise.resolve({ output: req.digest, stderr: 'line one\nline two\n', durationMs: 1 });
    return new Promise((resolve, reject) => {
      this.running.push({
        digest: req.digest,
        finish: () => resolve({ output: req.digest, stderr: '', durationMs: 1 }),
        fail: reject,
      });
    });
  }
  unload(digest: string): void {
    this.unloads.push({ digest, runningOnIt: this.running.filter((r) => r.digest === digest).length });
  }
  releaseAll(): void {
    const all = this.running;
    this.running = [];
    for (const r of all) r.finish();
  }
  stats() {
    return { workers: 1, busy: this.running.length, queued: this.queued(), loadedModules: 0 };
  }
  queued(): number {
    return 0;
  }
  async close(): Promise<void> {}
}

class RecordedEvents implements EngineEvents {
  invocations: [string, Outcome, boolean][] = [];
  stderr: [string, string][] = [];
  deploys: [string, Outcome][] = [];
  pulls: [Outcome, number][] = [];
  removed: string[] = [];
  invocation(fn: string, outcome: Outcome, _seconds: number, cold: boolean): void {
    this.invocations.push([fn, outcome, cold]);
  }
  invocationBatch(fn: string, outcome: Outcome, durations: DurationCounts, coldStarts: number): void {
    for (let i = 0; i < durations.count; i += 1) this.invocations.push([fn, outcome, i < coldStarts]);
  }
  functionStderr(fn: string, text: string): void {
    this.stderr.push([fn, text]);
  }
  deploy(op: string, outcome: Outcome): void {
    this.deploys.push([op, outcome]);
  }
  pull(outcome: Outcome, bytes: number): void {
    this.pulls.push([outcome, bytes]);
  }
  functionRemoved(fn: string): void {
    this.removed.push(fn);
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('Engine lifecycle', () => {
  let dir: string;
  let runtime: HeldRuntime;
  let events: RecordedEvents;
  let engine: Engine;
  let v1: Uint8Array;
  let v2: Uint8Array;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-lifecycle-'));
    v1 = new Uint8Array(await readFile(watFixture('ops', 'version-1')));
    v2 = new Uint8Array(await readFile(watFixture('ops', 'version-2')));
    runtime = new HeldRuntime();
    events = new RecordedEvents();
    engine = new Engine({
      store: new FileFunctionStore(dir, silentLogger),
      fetcher: new MapFetcher({ 'img/v1': v1, 'img/v2': v2 }),
      runtime,
      defaults: { timeoutMs: 1000, memoryLimitMb: 64, maxOutputBytes: 1024 },
      logger: silentLogger,
      checkImageReference: () => {},
      events,
      scaling: { concurrencyPerReplica: 2, maxWaiting: 1 },
    });
    await engine.restore();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the built-in warm-up function answers only between beginWarmUp and endWarmUp, unlisted, uncounted and not deployable', async () => {
    runtime.hold = false;
    const notFound = { code: 'FUNCTION_NOT_FOUND' };
    await expect(engine.invoke({ name: WARM_UP_NAME, args: undefined })).rejects.toMatchObject(notFound);
    const fn = await engine.beginWarmUp();
    expect(fn.name).toBe(WARM_UP_NAME);
    const answer = await engine.invoke({ name: fn.name, args: fn.args });
    expect(answer.output).toMatch(/^sha256:/);
    expect(engine.list()).toEqual([]);
    expect(() => engine.query(fn.name)).toThrow(expect.objectContaining(notFound));
    expect(events.invocations).toEqual([]);
    expect(events.stderr).toEqual([]);
    engine.endWarmUp();
    expect(runtime.unloads).toEqual([{ digest: answer.output, runningOnIt: 0 }]);
    await expect(engine.invoke({ name: fn.name, args: fn.args })).rejects.toMatchObject(notFound);
    await expect(engine.deploy({ name: WARM_UP_NAME, image: 'img/v1' })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('update swaps the version; the old module is unloaded only after its invocations end', async () => {
    const first = await engine.deploy({ name: 'f', image: 'img/v1' });
    const onOld = engine.invoke({ name: 'f', args: undefined });
    await tick();
    const second = await engine.update({ name: 'f', image: 'img/v2', labels: { v: '2' } });
    expect(engine.query('f')).toMatchObject({ digest: second.digest, labels: { v: '2' } });
    expect(runtime.unloads).toEqual([]);
    runtime.hold = false;
    expect((await engine.invoke({ name: 'f', args: undefined })).output).toBe(second.digest);
    runtime.releaseAll();
    expect((await onOld).output).toBe(first.digest);
    expect(runtime.unloads).toEqual([{ digest: first.digest, runningOnIt: 0 }]);
    expect(events.deploys).toEqual([
      ['deploy', 'success'],
      ['update', 'success'],
    ]);
  });

  it('update of an unknown function is FUNCTION_NOT_FOUND before anything is pulled', async () => {
    await expect(engine.update({ name: 'nope', image: 'img/v1' })).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
    expect(events.pulls).toEqual([]);
  });

  it('a failed update leaves the old version serving and counts the failure', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    await expect(engine.update({ name: 'f', image: 'img/missing' })).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    expect(engine.query('f').image).toBe('img/v1');
    expect(events.deploys.at(-1)).toEqual(['update', 'IMAGE_NOT_FOUND']);
    expect(events.pulls.at(-1)).toEqual(['IMAGE_NOT_FOUND', 0]);
  });

  it('update keeps the replicas a scale set', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    await engine.scale('f', 3);
    await engine.update({ name: 'f', image: 'img/v2' });
    expect(engine.runState('f')).toMatchObject({ replicas: 3, availableReplicas: 3 });
  });

  it('replicas bound concurrency: 1 replica × 2 run at once, one waits, the next is OVERLOADED', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    const calls = [0, 1, 2].map(() => engine.invoke({ name: 'f', args: undefined }));
    await tick();
    expect(runtime.running).toHaveLength(2);
    await expect(engine.invoke({ name: 'f', args: undefined })).rejects.toMatchObject({ code: 'OVERLOADED' });
    runtime.releaseAll();
    await tick();
    expect(runtime.running).toHaveLength(1);
    runtime.releaseAll();
    await Promise.all(calls);
    expect(engine.runState('f').invocations).toBe(4);
  });

  it('scale to 0 pauses (UNAVAILABLE), persists, and scaling up resumes', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    await engine.scale('f', 0);
    await expect(engine.invoke({ name: 'f', args: undefined })).rejects.toMatchObject({ code: 'UNAVAILABLE', retryAfterSeconds: 1 });
    expect(engine.runState('f')).toMatchObject({ replicas: 0, availableReplicas: 0 });
    expect(engine.query('f').replicas).toBe(0);
    await expect(engine.scale('f', -1)).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(engine.scale('f', 1.5)).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await engine.scale('f', 1);
    runtime.hold = false;
    expect((await engine.invoke({ name: 'f', args: undefined })).output).toMatch(/^sha256:/);
  });

  it('delete lets running invocations finish before unloading, and forgets the function in events', async () => {
    const record = await engine.deploy({ name: 'f', image: 'img/v1' });
    const running = engine.invoke({ name: 'f', args: undefined });
    await tick();
    await engine.delete('f');
    expect(runtime.unloads).toEqual([]);
    expect(events.removed).toEqual(['f']);
    runtime.releaseAll();
    await running;
    expect(runtime.unloads).toEqual([{ digest: record.digest, runningOnIt: 0 }]);
    // The invocation that outlived its function made no new series for it.
    expect(events.invocations.filter(([fn]) => fn === 'f')).toEqual([]);
  });

  it('reports invocations with outcome and cold start, and stderr for the logs', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    runtime.hold = false;
    await engine.invoke({ name: 'f', args: undefined });
    await engine.invoke({ name: 'f', args: undefined });
    await expect(engine.invoke({ name: 'f', args: { a: { nested: 1 } } })).rejects.toMatchObject({ code: 'INVALID_ARGS' });
    expect(events.invocations).toEqual([
      ['f', 'success', true],
      ['f', 'success', false],
      ['f', 'INVALID_ARGS', false],
    ]);
    expect(events.stderr).toEqual([
      ['f', 'line one\nline two\n'],
      ['f', 'line one\nline two\n'],
    ]);
  });

  it('takes stderr for the logs from a guest failure message', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    const call = engine.invoke({ name: 'f', args: undefined });
    await tick();
    runtime.running[0]!.fail(new EngineError('FUNCTION_FAILED', 'exit code 1; stderr: bad input\n'));
    await expect(call).rejects.toMatchObject({ code: 'FUNCTION_FAILED' });
    expect(events.stderr).toEqual([['f', 'bad input\n']]);
  });

  it('drain: refuses new work with UNAVAILABLE and resolves whenIdle once running invocations end', async () => {
    await engine.deploy({ name: 'f', image: 'img/v1' });
    const running = engine.invoke({ name: 'f', args: undefined });
    await tick();
    engine.beginShutdown();
    let idle = false;
    const whenIdle = engine.whenIdle().then(() => (idle = true));
    await expect(engine.invoke({ name: 'f', args: undefined })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(engine.deploy({ name: 'g', image: 'img/v2' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await tick();
    expect(idle).toBe(false);
    expect(engine.inflightInvocations).toBe(1);
    runtime.releaseAll();
    await running;
    await whenIdle;
    expect(idle).toBe(true);
  });
});
