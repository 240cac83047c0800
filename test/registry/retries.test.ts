/**
 * Bounded retries with backoff (429 with Retry-After, 5xx, reset connections) and downloads that
 * resume with a Range request after a cut, against a loopback server that misbehaves on purpose.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { createImageFetcher, type ClosableImageFetcher, type ImageFetcherOptions } from '../../src/registry/index.js';
import { cleanupAfterEach, type Handler, type Served } from './fake-server.js';
import { OCI_MANIFEST, buildWasm, refusal, sameBytes, sha256, wasmManifest } from './fixtures.js';

const { defer, serve } = cleanupAfterEach();

function fetcherFor(options: Partial<ImageFetcherOptions> = {}): ClosableImageFetcher {
  const fetcher = createImageFetcher({ logger: silentLogger, retryBaseDelayMs: 10, ...options });
  defer(() => fetcher.close());
  return fetcher;
}

let module: Buffer;
let manifest: Buffer;

beforeAll(async () => {
  // ~300 KB, so a download arrives in several chunks and can be cut in the middle.
  const data = '\\2a'.repeat(300_000);
  module = (await buildWasm('retries-big', `(module (memory 5) (data (i32.const 0) "${data}") (func (export "f") (result i32) i32.const 1))`)).bytes;
  manifest = wasmManifest(module);
});

/** Serves `fn:v1`; `manifest` and `blob` may take over, counting calls from 1. */
function image(overrides: { manifest?: (n: number, res: Parameters<Handler>[1], req: Parameters<Handler>[0]) => boolean; blob?: Handler } = {}): Handler {
  let manifestCalls = 0;
  return (req, res, url) => {
    if (url.pathname === '/v2/fn/manifests/v1') {
      manifestCalls += 1;
      if (overrides.manifest?.(manifestCalls, res, req)) return;
      res.writeHead(200, { 'content-type': OCI_MANIFEST });
      res.end(manifest);
      return;
    }
    if (url.pathname === `/v2/fn/blobs/${sha256(module)}`) {
      if (overrides.blob) return overrides.blob(req, res, url);
      res.writeHead(200, { 'content-length': String(module.length) });
      res.end(module);
      return;
    }
    res.writeHead(404);
    res.end();
  };
}

const manifestRequests = (s: Served): number => s.requests.filter((r) => r.path === '/v2/fn/manifests/v1').length;

describe('retries', () => {
  it('retries 503 and 500 answers, then succeeds', async () => {
    const registry = await serve(
      image({
        manifest: (n, res) => {
          if (n > 2) return false;
          res.writeHead(n === 1 ? 503 : 500);
          res.end('try later');
          return true;
        },
      }),
    );
    const fetched = await fetcherFor().fetch(`${registry.host}/fn:v1`);
    expect(sameBytes(fetched.bytes, module)).toBe(true);
    expect(manifestRequests(registry)).toBe(3);
  });

  it('waits as long as a 429 Retry-After asks', async () => {
    const registry = await serve(
      image({
        manifest: (n, res) => {
          if (n > 1) return false;
          res.writeHead(429, { 'retry-after': '1' });
          res.end();
          return true;
        },
      }),
    );
    const started = Date.now();
    await fetcherFor().fetch(`${registry.host}/fn:v1`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(manifestRequests(registry)).toBe(2);
  });

  it('retries a connection reset before any answer', async () => {
    const registry = await serve(
      image({
        manifest: (n, res) => {
          if (n > 1) return false;
          res.socket?.destroy();
          return true;
        },
      }),
    );
    expect(sameBytes((await fetcherFor().fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
  });

  it('gives up after the configured number of retries with the last answer', async () => {
    const registry = await serve((_req, res) => {
      res.writeHead(502);
      res.end('bad gateway');
    });
    const error = await refusal(fetcherFor({ retries: 2 }).fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/answered HTTP 502: bad gateway/);
    expect(registry.requests).toHaveLength(3);

    const once = await serve((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    await refusal(fetcherFor({ retries: 0 }).fetch(`${once.host}/fn:v1`));
    expect(once.requests).toHaveLength(1);
  });

  it('does not retry answers that will not change (404, 401)', async () => {
    const registry = await serve((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    expect((await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`))).code).toBe('IMAGE_NOT_FOUND');
    expect(registry.requests).toHaveLength(1);
  });

  it('connection refused is retried, then reported', async () => {
    const gone = await serve(() => {});
    const host = gone.host;
    await gone.close();
    const started = Date.now();
    const error = await refusal(fetcherFor({ retries: 2 }).fetch(`${host}/fn:v1`));
    expect(error.message).toMatch(/connection refused/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('resuming a cut download', () => {
  it('goes on from where the cut happened with a Range request', async () => {
    let calls = 0;
    const ranges: Array<string | undefined> = [];
    const registry = await serve(
      image({
        blob: (req, res) => {
          calls += 1;
          ranges.push(req.headers.range);
          if (calls === 1) {
            res.writeHead(200, { 'content-length': String(module.length) });
            res.write(module.subarray(0, 100_000), () => setTimeout(() => res.destroy(), 20));
            return;
          }
          const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
          res.writeHead(206, { 'content-range': `bytes ${start}-${module.length - 1}/${module.length}`, 'content-length': String(module.length - start) });
          res.end(module.subarray(start));
        },
      }),
    );
    const fetched = await fetcherFor().fetch(`${registry.host}/fn:v1`);
    expect(sameBytes(fetched.bytes, module)).toBe(true);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/bytes=(\d+)-/.exec(ranges[1] ?? '')?.[1])).toBeGreaterThan(0);
  });

  it('copes with a server that ignores Range and sends everything again', async () => {
    let calls = 0;
    const registry = await serve(
      image({
        blob: (_req, res) => {
          calls += 1;
          res.writeHead(200, { 'content-length': String(module.length) });
          if (calls === 1) {
            res.write(module.subarray(0, 150_000), () => setTimeout(() => res.destroy(), 20));
            return;
          }
          res.end(module);
        },
      }),
    );
    expect(sameBytes((await fetcherFor().fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
    expect(calls).toBe(2);
  });

  it('refuses a 206 for the wrong range', async () => {
    let calls = 0;
    const registry = await serve(
      image({
        blob: (_req, res) => {
          calls += 1;
          if (calls === 1) {
            res.writeHead(200, { 'content-length': String(module.length) });
            res.write(module.subarray(0, 100_000), () => setTimeout(() => res.destroy(), 20));
            return;
          }
          res.writeHead(206, { 'content-range': `bytes 0-${module.length - 1}/${module.length}` });
          res.end(module);
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/wrong range/);
  });
});
