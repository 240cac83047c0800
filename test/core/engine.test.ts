import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/core/engine.js';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import type { FetchedModule, ImageFetcher } from '../../src/registry/types.js';
import type { FunctionRuntime, InvocationRequest, InvocationResult } from '../../src/runtime/index.js';
import { FileFunctionStore } from '../../src/store/index.js';
import { watFixture } from '../support/fixtures.js';

/** Serves modules from a map of references; anything else is IMAGE_NOT_FOUND. */
class MapFetcher implements ImageFetcher {
  constructor(private readonly images: Record<string, Uint8Array>) {}
  async fetch(reference: string): Promise<FetchedModule> {
    const bytes = this.images[reference];
    if (!bytes) throw new EngineError('IMAGE_NOT_FOUND', `no image ${reference}`);
    return { bytes, fileName: 'm.wasm' };
  }
}

/** Records what the engine asks of the runtime; can be told to refuse a load. */
class RecordingRuntime implements FunctionRuntime {
  loads: string[] = [];
  unloads: string[] = [];
  refuseLoads = false;
  async load(digest: string): Promise<void> {
    if (this.refuseLoads) throw new EngineError('INVALID_FUNCTION_IMAGE', 'initial memory exceeds the limit');
    this.loads.push(digest);
  }
  async invoke(req: InvocationRequest): Promise<InvocationResult> {
    return { output: `${req.analysis.entrypoint}(${req.args.values.join(',')})`, stderr: '', durationMs: 0 };
  }
  unload(digest: string): void {
    this.unloads.push(digest);
  }
  stats() {
    return { workers: 0, busy: 0, queued: this.queued(), loadedModules: this.loads.length };
  }
  queued(): number {
    return 0;
  }
  async close(): Promise<void> {}
}

describe('Engine', () => {
  let dir: string;
  let runtime: RecordingRuntime;
  let engine: Engine;
  let counter: Uint8Array;
  let store: FileFunctionStore;

  const makeEngine = (): Engine =>
    new Engine({
      store: (store = new FileFunctionStore(dir, silentLogger)),
      fetcher: new MapFetcher({ 'img/counter': counter }),
      runtime,
      defaults: { timeoutMs: 1000, memoryLimitMb: 64, maxOutputBytes: 1024 },
      logger: silentLogger,
      checkImageReference: (ref) => {
        if (ref.includes(' ')) throw new EngineError('INVALID_REQUEST', `invalid image reference ${ref}`);
      },
    });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'we-core-'));
    counter = new Uint8Array(await readFile(watFixture('integration', 'counter')));
    runtime = new RecordingRuntime();
    engine = makeEngine();
    await engine.restore();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('deploys, analyses and compiles before storing, then invokes', async () => {
    const record = await engine.deploy({ name: 'counter', image: 'img/counter' });
    expect(record.analysis).toMatchObject({ abi: 'numeric', entrypoint: 'counter', wasiCap: false });
    expect(runtime.loads).toEqual([record.digest]);
    expect((await engine.invoke({ name: 'counter', args: undefined })).output).toBe('counter()');
  });

  it('checks the name and the reference before fetching anything', async () => {
    await expect(engine.deploy({ name: 'list', image: 'img/counter' })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(engine.deploy({ name: 'a b', image: 'img/counter' })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(engine.deploy({ name: 'x', image: 'bad ref' })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(engine.deploy({ name: 'x', image: 'img/counter', limits: { timeout_ms: 0 } })).rejects.toThrow(/timeout_ms/);
  });

  it('leaves nothing behind when the runtime refuses the module, and frees the name', async () => {
    runtime.refuseLoads = true;
    await expect(engine.deploy({ name: 'counter', image: 'img/counter' })).rejects.toMatchObject({ code: 'INVALID_FUNCTION_IMAGE' });
    expect(engine.list()).toEqual([]);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
    runtime.refuseLoads = false;
    await expect(engine.deploy({ name: 'counter', image: 'img/counter' })).resolves.toMatchObject({ name: 'counter' });
  });

  it('frees the name after a failed fetch', async () => {
    await expect(engine.deploy({ name: 'c', image: 'img/none' })).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    await expect(engine.deploy({ name: 'c', image: 'img/counter' })).resolves.toMatchObject({ name: 'c' });
  });

  it('unloads a module only when its last function is deleted', async () => {
    const a = await engine.deploy({ name: 'a', image: 'img/counter' });
    await engine.deploy({ name: 'b', image: 'img/counter' });
    await engine.delete('a');
    expect(runtime.unloads).toEqual([]);
    await engine.delete('b');
    expect(runtime.unloads).toEqual([a.digest]);
  });

  it('resolves limits from deploy overrides over engine defaults', async () => {
    const record = await engine.deploy({ name: 'a', image: 'img/counter', limits: { timeout_ms: 50 } });
    expect(engine.limitsOf(record)).toEqual({ timeoutMs: 50, memoryLimitMb: 64, maxOutputBytes: 1024 });
  });

  it('restores deployed functions after a restart and compiles them in the background', async () => {
    const record = await engine.deploy({ name: 'a', image: 'img/counter' });
    // A restart: the first engine's store lets go of the data directory (a live one is never taken over).
    await store.close();
    runtime = new RecordingRuntime();
    engine = makeEngine();
    expect(await engine.restore()).toBe(1);
    await engine.whenAllReady();
    expect(runtime.loads).toEqual([record.digest]);
    expect((await engine.invoke({ name: 'a', args: [] })).output).toBe('counter()');
  });
});
