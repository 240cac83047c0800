/**
 * The faas-provider routes with the exact JSON shapes OpenFaaS sends (openfaas/faas-provider
 * `types`: FunctionDeployment, DeleteFunctionRequest, ScaleServiceRequest), against the real store
 * and runtime in this process; both APIs over one set of functions; scale; update; Basic auth; the
 * raw data plane for the string and numeric ABIs; /metrics after known traffic; the OpenAPI document.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_WASM, watFixture } from '../support/fixtures.js';
import { startInProcess, type InProcessEngine } from '../support/in-process.js';
import { parsePrometheus, sampleValue, samplesWith } from '../support/prometheus.js';

const GCD = `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`;
const ECHO_STRING = `file:${join(EXAMPLES_WASM, 'echo-string.wasm')}`;
const HELLO = `file:${join(EXAMPLES_WASM, 'hello.wasm')}`;

/** A FunctionDeployment as faas-cli 0.16 marshals it (omitempty fields present when set). */
function deployment(service: string, image: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    service,
    image,
    namespace: 'openfaas-fn',
    envProcess: '',
    envVars: {},
    constraints: [],
    secrets: [],
    labels: {},
    annotations: {},
    limits: null,
    requests: null,
    readOnlyRootFilesystem: false,
    ...extra,
  };
}

describe('OpenFaaS provider API', () => {
  let e: InProcessEngine;
  beforeAll(async () => {
    e = await startInProcess();
  });
  afterAll(() => e?.close());

  const json = (method: string, url: string, payload?: unknown) =>
    e.app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as object }) });

  it('POST /system/functions deploys (202, empty body), GET lists FunctionStatus', async () => {
    const deployed = await json(
      'POST',
      '/system/functions',
      deployment('gcd', GCD, {
        envVars: { MODE: 'fast' },
        labels: { team: 'math' },
        annotations: { 'com.wasmengine.timeout_ms': '2000', note: 'kept' },
        limits: { memory: '32Mi', cpu: '100m' },
      }),
    );
    expect(deployed.statusCode, deployed.body).toBe(202);
    expect(deployed.body).toBe('');
    const list = await json('GET', '/system/functions');
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual([
      {
        name: 'gcd',
        image: GCD,
        namespace: 'openfaas-fn',
        envVars: { MODE: 'fast' },
        labels: { team: 'math' },
        annotations: { 'com.wasmengine.timeout_ms': '2000', note: 'kept' },
        limits: { memory: '32Mi' },
        invocationCount: 0,
        replicas: 1,
        availableReplicas: 1,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      },
    ]);
  });

  it('one set of functions: deployed through one API, seen and invoked through the other', async () => {
    const historical = await json('POST', '/function/query', { function_name: 'gcd' });
    expect(historical.body).toMatch(/^status code: 200, message: queried function info: FunctionEntry \{ func_name: "gcd"/);
    const entry = await e.app.inject({ method: 'POST', url: '/function/query', headers: { accept: 'application/json' }, payload: { function_name: 'gcd' } });
    expect(entry.json().function.limits).toEqual({ timeout_ms: 2000, memory_limit_mb: 32 });
    const invoked = await json('POST', '/function/invoke', { function_name: 'gcd', args: { a: '12', b: '18' } });
    expect(invoked.body).toBe('status code: 200, message: 6');

    const viaHistorical = await json('POST', '/function/deploy', { function_name: 'echo', function_image: ECHO_STRING });
    expect(viaHistorical.statusCode).toBe(200);
    const status = await json('GET', '/system/function/echo');
    expect(status.statusCode).toBe(200);
    expect(status.json()).toMatchObject({ name: 'echo', image: ECHO_STRING, namespace: 'openfaas-fn', replicas: 1, availableReplicas: 1 });
    const raw = await e.app.inject({ method: 'POST', url: '/function/echo', payload: 'hello' });
    expect(raw.statusCode).toBe(200);
    expect(raw.body).toBe('hellob');
    expect((await json('GET', '/system/function/gcd')).json().invocationCount).toBe(1);
  });

  it('POST of a deployed name is 409, with the message as text', async () => {
    const again = await json('POST', '/system/functions', deployment('gcd', GCD));
    expect(again.statusCode).toBe(409);
    expect(again.headers['content-type']).toMatch(/^text\/plain/);
    expect(again.body).toMatch(/gcd is already deployed/);
  });

  it('refuses a malformed FunctionDeployment naming the field, and another namespace', async () => {
    const missing = await json('POST', '/system/functions', { service: 'x' });
    expect(missing.statusCode).toBe(400);
    expect(missing.body).toMatch(/image/);
    const mistyped = await json('POST', '/system/functions', deployment('x', GCD, { envVars: { A: 1 } }));
    expect(mistyped.statusCode).toBe(400);
    expect(mistyped.body).toMatch(/envVars/);
    const namespace = await json('POST', '/system/functions', deployment('x', GCD, { namespace: 'team-a' }));
    expect(namespace.statusCode).toBe(400);
    expect(namespace.body).toMatch(/one namespace, openfaas-fn/);
    expect((await json('GET', '/system/functions?namespace=team-a')).statusCode).toBe(400);
    expect((await json('GET', '/system/functions?namespace=openfaas-fn')).statusCode).toBe(200);
  });

  it('GET /system/function/{name} is 404 for an unknown function', async () => {
    const missing = await json('GET', '/system/function/nope');
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toBe('function nope is not deployed\n');
  });

  it('PUT /system/functions updates in place (200) and is 404 for an unknown function', async () => {
    expect((await json('PUT', '/system/functions', deployment('nope', GCD))).statusCode).toBe(404);
    await json('POST', '/system/functions', deployment('ver', `file:${watFixture('ops', 'version-1')}`));
    expect((await e.app.inject({ method: 'GET', url: '/function/ver' })).body).toBe('1');
    const updated = await json('PUT', '/system/functions', deployment('ver', `file:${watFixture('ops', 'version-2')}`, { labels: { v: '2' } }));
    expect(updated.statusCode, updated.body).toBe(200);
    expect((await e.app.inject({ method: 'GET', url: '/function/ver' })).body).toBe('2');
    expect((await json('GET', '/system/function/ver')).json()).toMatchObject({ image: expect.stringMatching(/version-2/), labels: { v: '2' } });
  });

  it('update under concurrent invocations: none fails, each answers the old or the new version', async () => {
    const v1 = `file:${watFixture('ops', 'version-1')}`;
    const v2 = `file:${watFixture('ops', 'version-2')}`;
    await json('POST', '/system/functions', deployment('swap', v1));
    const answers: string[] = [];
    let stop = false;
    const load = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await e.app.inject({ method: 'GET', url: '/function/swap' });
        answers.push(`${r.statusCode} ${r.body}`);
      }
    });
    for (const image of [v2, v1, v2]) {
      const put = await json('PUT', '/system/functions', deployment('swap', image));
      expect(put.statusCode).toBe(200);
    }
    stop = true;
    await Promise.all(load);
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.filter((a) => a !== '200 1' && a !== '200 2')).toEqual([]);
    expect((await e.app.inject({ method: 'GET', url: '/function/swap' })).body).toBe('2');
  });

  it('scale: replicas show in the status, 0 pauses (503, Retry-After) and scaling up resumes', async () => {
    const paused = await json('POST', '/system/scale-function/gcd', { serviceName: 'gcd', replicas: 0 });
    expect(paused.statusCode).toBe(202);
    expect((await json('GET', '/system/function/gcd')).json()).toMatchObject({ replicas: 0, availableReplicas: 0 });
    const refused = await e.app.inject({ method: 'GET', url: '/function/gcd?a=4&b=6', headers: { accept: 'application/json' } });
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json().error).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/zero replicas/) });
    const historical = await json('POST', '/function/invoke', { function_name: 'gcd', args: { a: '4', b: '6' } });
    expect(historical.statusCode).toBe(503);

    expect((await json('POST', '/system/scale-function/gcd', { serviceName: 'gcd', replicas: 2, namespace: 'openfaas-fn' })).statusCode).toBe(202);
    expect((await json('GET', '/system/function/gcd')).json()).toMatchObject({ replicas: 2, availableReplicas: 2 });
    expect((await e.app.inject({ method: 'GET', url: '/function/gcd?a=4&b=6' })).body).toBe('2');
  });

  it('scale refuses a mismatched serviceName, a negative count and an unknown function', async () => {
    expect((await json('POST', '/system/scale-function/gcd', { serviceName: 'other', replicas: 1 })).statusCode).toBe(400);
    const negative = await json('POST', '/system/scale-function/gcd', { serviceName: 'gcd', replicas: -1 });
    expect(negative.statusCode).toBe(400);
    expect(negative.body).toMatch(/replicas/);
    expect((await json('POST', '/system/scale-function/nope', { serviceName: 'nope', replicas: 1 })).statusCode).toBe(404);
  });

  it('GET /system/info and /system/namespaces', async () => {
    expect((await json('GET', '/system/info')).json()).toEqual({
      provider: 'wasm-engine',
      orchestration: 'wasm',
      version: { sha: 'test', release: '0.0.0-test' },
    });
    expect((await json('GET', '/system/namespaces')).json()).toEqual(['openfaas-fn']);
  });

  it('the raw route: numeric ABI from the query, string ABI from the body, any method and sub-path', async () => {
    const numeric = await e.app.inject({ method: 'GET', url: '/function/gcd?a=12&b=18' });
    expect(numeric.statusCode).toBe(200);
    expect(numeric.body).toBe('6');
    expect(numeric.headers['x-duration-seconds']).toMatch(/^\d+\.\d{6}$/);
    const badArgs = await e.app.inject({ method: 'GET', url: '/function/gcd?a=12' });
    expect(badArgs.statusCode).toBe(400);
    expect(badArgs.body).toMatch(/\(INVALID_ARGS\)/);
    const put = await e.app.inject({ method: 'PUT', url: '/function/echo/some/path?x=1', payload: '{"k":"v"}', headers: { 'content-type': 'application/json' } });
    expect(put.statusCode).toBe(200);
    expect(put.body).toBe('{"k":"v"}b');
    // As the classic watchdog: the caller's content type comes back when the function sets none.
    expect(put.headers['content-type']).toMatch(/^application\/json/);
    const suffixed = await e.app.inject({ method: 'POST', url: '/function/echo.openfaas-fn', payload: 'x' });
    expect(suffixed.body).toBe('xb');
  });

  it('the raw route keeps /function/deploy and friends unambiguous', async () => {
    const reserved = await e.app.inject({ method: 'GET', url: '/function/deploy/x' });
    expect(reserved.statusCode).toBe(404);
    expect(reserved.body).toMatch(/\(NOT_FOUND\)\n$/);
    expect((await e.app.inject({ method: 'GET', url: '/function/invoke' })).statusCode).toBe(405);
    expect((await e.app.inject({ method: 'POST', url: '/function/list' })).statusCode).toBe(405);
    const unknown = await e.app.inject({ method: 'GET', url: '/function/nothing', headers: { accept: 'application/json' } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('NOT_FOUND');
  });

  it('DELETE /system/functions (DeleteFunctionRequest) is 200, then 404', async () => {
    await json('POST', '/system/functions', deployment('doomed', HELLO));
    expect((await json('DELETE', '/system/functions', { functionName: 'doomed', namespace: 'openfaas-fn' })).statusCode).toBe(200);
    expect((await json('DELETE', '/system/functions', { functionName: 'doomed' })).statusCode).toBe(404);
    expect((await json('GET', '/function/list')).body).not.toMatch(/doomed/);
  });
});

describe('/metrics after known traffic', () => {
  let e: InProcessEngine;
  beforeAll(async () => {
    e = await startInProcess();
  });
  afterAll(() => e?.close());

  const scrape = async () => {
    const r = await e.app.inject({ method: 'GET', url: '/metrics' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return parsePrometheus(r.body);
  };

  it('counts invocations by function and outcome, cold starts, durations, deploys and pulls', async () => {
    await e.app.inject({ method: 'POST', url: '/function/deploy', payload: { function_name: 'gcd', function_image: GCD } });
    await e.app.inject({ method: 'POST', url: '/function/deploy', payload: { function_name: 'trap', function_image: `file:${watFixture('integration', 'trap')}` } });
    const failed = await e.app.inject({ method: 'POST', url: '/system/functions', payload: deployment('ghost', 'file:/nonexistent.wasm') });
    expect(failed.statusCode).toBe(404);
    for (let i = 0; i < 5; i += 1) await e.app.inject({ method: 'GET', url: '/function/gcd?a=12&b=18' });
    for (let i = 0; i < 2; i += 1) await e.app.inject({ method: 'POST', url: '/function/invoke', payload: { function_name: 'gcd', args: { a: 'x', b: '1' } } });
    for (let i = 0; i < 3; i += 1) await e.app.inject({ method: 'POST', url: '/function/invoke', payload: { function_name: 'trap' } });
    await e.app.inject({ method: 'POST', url: '/function/invoke', payload: { function_name: 'nobody' } });

    const m = await scrape();
    expect(m.types.get('wasm_engine_invocations_total')).toBe('counter');
    expect(m.types.get('wasm_engine_invocation_duration_seconds')).toBe('histogram');
    expect(sampleValue(m, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'success' })).toBe(5);
    expect(sampleValue(m, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'INVALID_ARGS' })).toBe(2);
    expect(sampleValue(m, 'wasm_engine_invocations_total', { function_name: 'trap', outcome: 'FUNCTION_FAILED' })).toBe(3);
    // An unknown name makes no series: label values are deployed functions only.
    expect(samplesWith(m, { function_name: 'nobody' })).toEqual([]);
    expect(sampleValue(m, 'wasm_engine_invocation_duration_seconds_count', { function_name: 'gcd' })).toBe(7);
    expect(sampleValue(m, 'wasm_engine_invocation_duration_seconds_bucket', { function_name: 'gcd', le: '+Inf' })).toBe(7);
    expect(sampleValue(m, 'wasm_engine_cold_starts_total', { function_name: 'gcd' })).toBe(1);
    expect(sampleValue(m, 'wasm_engine_deploys_total', { operation: 'deploy', outcome: 'success' })).toBe(2);
    expect(sampleValue(m, 'wasm_engine_deploys_total', { operation: 'deploy', outcome: 'IMAGE_NOT_FOUND' })).toBe(1);
    expect(sampleValue(m, 'wasm_engine_image_pulls_total', { outcome: 'success' })).toBe(2);
    expect(sampleValue(m, 'wasm_engine_image_pull_bytes_total', { outcome: 'success' })).toBeGreaterThan(0);
    expect(sampleValue(m, 'wasm_engine_image_pull_duration_seconds_count', { outcome: 'IMAGE_NOT_FOUND' })).toBe(1);
    expect(sampleValue(m, 'wasm_engine_workers')).toBe(2);
    expect(sampleValue(m, 'wasm_engine_workers_busy')).toBe(0);
    expect(sampleValue(m, 'wasm_engine_queue_depth')).toBe(0);
    expect(sampleValue(m, 'wasm_engine_invocations_in_flight')).toBe(0);
    expect(sampleValue(m, 'wasm_engine_functions')).toBe(2);
    expect(sampleValue(m, 'provider_http_requests_total', { method: 'GET', path: '/function/:name', code: '200' })).toBe(5);
    expect(sampleValue(m, 'provider_http_requests_total', { method: 'POST', path: '/function/invoke', code: '400' })).toBe(2);
    expect(sampleValue(m, 'provider_http_requests_total', { method: 'POST', path: '/system/functions', code: '404' })).toBe(1);
    expect(sampleValue(m, 'provider_http_request_duration_seconds_count', { method: 'GET', path: '/function/:name', code: '200' })).toBe(5);
    expect(m.types.get('provider_http_requests_total')).toBe('counter');
    expect(m.types.get('provider_http_request_duration_seconds')).toBe('histogram');
    const httpLabels = { method: 'POST', path: '/function/invoke', code: '400' };
    expect(sampleValue(m, 'provider_http_request_duration_seconds_bucket', { ...httpLabels, le: '+Inf' })).toBe(2);
    // Injected requests take well under 10 s: the 10 s bucket holds them all, cumulatively.
    expect(sampleValue(m, 'provider_http_request_duration_seconds_bucket', { ...httpLabels, le: '10' })).toBe(2);
    expect(sampleValue(m, 'provider_http_request_duration_seconds_sum', httpLabels)).toBeGreaterThan(0);
  });

  it('a deleted function drops out of the labels', async () => {
    await e.app.inject({ method: 'POST', url: '/function/delete', payload: { function_name: 'trap' } });
    const m = await scrape();
    expect(samplesWith(m, { function_name: 'trap' })).toEqual([]);
    expect(sampleValue(m, 'wasm_engine_invocations_total', { function_name: 'gcd', outcome: 'success' })).toBe(5);
  });
});

describe('Basic auth', () => {
  let e: InProcessEngine;
  const good = `Basic ${Buffer.from('admin:s3cret').toString('base64')}`;
  const bad = `Basic ${Buffer.from('admin:wrong').toString('base64')}`;
  beforeAll(async () => {
    e = await startInProcess({ credentials: { user: 'admin', password: 's3cret' } });
    const r = await e.app.inject({ method: 'POST', url: '/function/deploy', headers: { authorization: good }, payload: { function_name: 'gcd', function_image: GCD } });
    expect(r.statusCode).toBe(200);
  });
  afterAll(() => e?.close());

  it('guards /system/* and the management routes, with a challenge', async () => {
    for (const [method, url] of [
      ['GET', '/system/functions'],
      ['GET', '/system/info'],
      ['GET', '/function/list'],
      ['POST', '/function/query'],
    ] as const) {
      const none = await e.app.inject({ method, url, payload: { function_name: 'gcd' } });
      expect(none.statusCode, `${method} ${url}`).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Basic realm="wasm-engine"/);
      expect((await e.app.inject({ method, url, headers: { authorization: bad }, payload: { function_name: 'gcd' } })).statusCode).toBe(401);
      expect((await e.app.inject({ method, url, headers: { authorization: good }, payload: { function_name: 'gcd' } })).statusCode).toBe(200);
    }
    const historical = await e.app.inject({ method: 'GET', url: '/function/list' });
    expect(historical.body).toMatch(/^status code: 401, message: .*\(UNAUTHORIZED\)\n$/);
  });

  it('leaves invocation, probes, metrics and docs open', async () => {
    expect((await e.app.inject({ method: 'GET', url: '/function/gcd?a=2&b=4' })).body).toBe('2');
    expect((await e.app.inject({ method: 'POST', url: '/function/invoke', payload: { function_name: 'gcd', args: { a: '2', b: '4' } } })).statusCode).toBe(200);
    for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      expect((await e.app.inject({ method: 'GET', url })).statusCode, url).toBe(200);
    }
  });

  it('guards invocation too when configured', async () => {
    const strict = await startInProcess({ credentials: { user: 'admin', password: 's3cret' }, authInvoke: true });
    try {
      expect((await strict.app.inject({ method: 'GET', url: '/function/gcd' })).statusCode).toBe(401);
      expect((await strict.app.inject({ method: 'POST', url: '/function/invoke', payload: { function_name: 'gcd' } })).statusCode).toBe(401);
      expect((await strict.app.inject({ method: 'GET', url: '/function/gcd', headers: { authorization: good } })).statusCode).toBe(404);
    } finally {
      await strict.close();
    }
  });
});

describe('OpenAPI document', () => {
  let e: InProcessEngine;
  beforeAll(async () => {
    e = await startInProcess();
  });
  afterAll(() => e?.close());

  it('describes every route from its schema, not the 405 answers', async () => {
    const r = await e.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(r.statusCode).toBe(200);
    const doc = r.json();
    expect(doc.openapi).toMatch(/^3\./);
    const operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
    );
    for (const expected of [
      'POST /function/deploy',
      'POST /function/delete',
      'GET /function/list',
      'POST /function/query',
      'POST /function/invoke',
      'GET /system/functions',
      'POST /system/functions',
      'PUT /system/functions',
      'DELETE /system/functions',
      'GET /system/function/{name}',
      'POST /system/scale-function/{name}',
      'GET /system/info',
      'GET /system/logs',
      'GET /function/{name}',
      'POST /function/{name}/{path}',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
    ]) {
      expect(operations).toContain(expected);
    }
    expect(operations).not.toContain('GET /function/deploy');
    expect(operations).toContain('GET /openapi.json');
    const deploy = doc.paths['/function/deploy'].post;
    expect(deploy.requestBody.content['application/json'].schema.required).toEqual(['function_name', 'function_image']);
    const faasDeploy = doc.paths['/system/functions'].post;
    expect(Object.keys(faasDeploy.requestBody.content['application/json'].schema.properties)).toEqual(
      expect.arrayContaining(['service', 'image', 'envVars', 'labels', 'annotations', 'limits']),
    );
  });

  it('serves a docs page at /docs', async () => {
    let r = await e.app.inject({ method: 'GET', url: '/docs' });
    if (r.statusCode === 302) r = await e.app.inject({ method: 'GET', url: r.headers.location as string });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toMatch(/Swagger UI/);
  });
});
