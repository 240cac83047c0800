/**
 * Answers the operator's own tools accept, asked of a running engine (`wasm-engine serve` as a
 * child process, over HTTP on loopback) after deploys and invocations: /openapi.json checked by two
 * standard OpenAPI validators and covering every route the server has, /metrics checked by
 * Prometheus's `promtool check metrics`, /async-function answered with a clear §2 error, and
 * /system/info with the release and commit of this build.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXAMPLES_OCI, EXAMPLES_WASM } from '../support/fixtures.js';
import { REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call } from '../support/http.js';
import { startInProcess } from '../support/in-process.js';
import { parsePrometheus } from '../support/prometheus.js';

/** Where Debian's `prometheus` package puts promtool (scripts/ensure-tools.sh installs it). */
const PROMTOOL = '/usr/bin/promtool';

type OpenApiDocument = {
  openapi: string;
  paths: Record<string, Record<string, { parameters?: { in: string; name: string; required?: boolean }[] }>>;
};

/** Runs `promtool check metrics` on `text` (its stdin); resolves with its exit code and output. */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

/**
 * Every route the in-process server declares, as Fastify's onRoute hook reports it: Fastify is
 * the real one, with a hook added as each instance is made (its route table has no public list).
 */
const declared = vi.hoisted(() => [] as { url: string; methods: string[] }[]);
vi.mock('fastify', async (importOriginal) => {
  const real = await importOriginal<typeof import('fastify')>();
  const make = ((options?: Parameters<typeof real.default>[0]) => {
    const app = real.default(options);
    app.addHook('onRoute', (route) => {
      declared.push({ url: route.url, methods: ([] as string[]).concat(route.method) });
    });
    return app;
  }) as typeof real.default;
  return { ...real, default: make };
});

const git = (args: string[]): string => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();

/** A Fastify route URL as an OpenAPI path template (the engine's transform: `*` is `{path}`). */
function asTemplate(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{path}');
}

describe('answers real clients accept, from a running engine', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '2'] });
    // Traffic of every kind, so that every metric family has samples: deploys (OpenFaaS and
    // historical, from a file and from an OCI layout), a refused deploy, invocations that
    // succeed and fail, on the raw route and the historical one.
    const deployed = await call(engine.url, 'POST', '/system/functions', { service: 'gcd', image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}` });
    expect(deployed.status, deployed.text).toBe(202);
    const hello = await call(engine.url, 'POST', '/function/deploy', { function_name: 'hello', function_image: `oci:${join(EXAMPLES_OCI, 'hello')}` });
    expect(hello.status, hello.text).toBe(200);
    expect((await call(engine.url, 'POST', '/function/deploy', { function_name: 'nothing', function_image: 'file:/nonexistent/x.wasm' })).status).toBe(404);
    expect((await call(engine.url, 'GET', '/function/gcd?a=12&b=18')).text).toBe('6');
    expect((await call(engine.url, 'GET', '/function/gcd?a=x&b=18')).status).toBe(400);
    expect((await call(engine.url, 'POST', '/function/invoke', { function_name: 'hello' })).status).toBe(200);
  });
  afterAll(async () => {
    await engine?.kill();
  });

  it('/openapi.json is a valid OpenAPI 3 document for @seriousme/openapi-schema-validator and @apidevtools/swagger-parser', async () => {
    const answer = await call(engine.url, 'GET', '/openapi.json');
    expect(answer.status).toBe(200);
    const doc = answer.json as OpenApiDocument;
    expect(doc.openapi).toMatch(/^3\.0\./);
    const verdict = await new Validator().validate(structuredClone(doc));
    expect(verdict.errors ?? [], JSON.stringify(verdict.errors)).toEqual([]);
    expect(verdict.valid).toBe(true);
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
  });

  it('/openapi.json stays valid with Basic auth on (the document then names its security scheme)', async () => {
    const guarded = await startInProcess({ credentials: { user: 'admin', password: 'a-long-password' } });
    try {
      const doc = (await guarded.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenApiDocument & { security?: unknown };
      expect(doc.security).toEqual([{ basicAuth: [] }]);
      expect((await new Validator().validate(structuredClone(doc))).valid).toBe(true);
      await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
    } finally {
      await guarded.close();
    }
  });

  it('/openapi.json speaks OpenAPI, not Fastify: templates declared as path parameters, no {*}, no query method, no patternProperties', async () => {
    const doc = (await call(engine.url, 'GET', '/openapi.json')).json as OpenApiDocument;
    expect(JSON.stringify(doc)).not.toContain('patternProperties');
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path).not.toMatch(/[*:]/);
      const templates = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
      for (const name of templates) expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
      for (const [method, operation] of Object.entries(item)) {
        expect(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']).toContain(method);
        const declared = (operation.parameters ?? []).filter((p) => p.in === 'path');
        expect(declared.map((p) => p.name).sort(), `${method} ${path}`).toEqual([...templates].sort());
        for (const parameter of declared) expect(parameter.required).toBe(true);
      }
    }
  });

  it('/openapi.json covers every route the server answers, itself and /docs included (the 405 answers aside)', async () => {
    const doc = (await call(engine.url, 'GET', '/openapi.json')).json as OpenApiDocument;
    // The routes, declared by the same server built in this process.
    const local = await startInProcess();
    try {
      await local.app.ready();
      expect(declared.length).toBeGreaterThan(20);
      const missing: string[] = [];
      for (const { url, methods } of declared) {
        const item = doc.paths[asTemplate(url)];
        for (const method of methods) {
          // HEAD answers GET's headers (Fastify adds it to every GET); QUERY has no place in OpenAPI 3.0.
          if (method === 'HEAD' || method === 'QUERY') continue;
          if (item?.[method.toLowerCase()]) continue;
          const answer = await local.app.inject({ method: method as 'GET', url: url.replace(/:name/, 'gcd').replace(/\*$/, 'x') });
          if (answer.statusCode !== 405) missing.push(`${method} ${url}`);
        }
      }
      expect(missing).toEqual([]);
      for (const path of ['/openapi.json', '/docs', '/docs/json', '/async-function/{name}', '/function/{name}/{path}']) {
        expect(Object.keys(doc.paths)).toContain(path);
      }
    } finally {
      await local.close();
    }
  });

  it('/metrics passes `promtool check metrics`, every family with samples (Node\'s *_total gauges are gone)', async () => {
    expect(existsSync(PROMTOOL), `${PROMTOOL} missing: run scripts/ensure-tools.sh (Debian package prometheus)`).toBe(true);
    const answer = await call(engine.url, 'GET', '/metrics');
    expect(answer.status).toBe(200);
    const verdict = await promtoolCheck(answer.text);
    expect(verdict.output).toBe('');
    expect(verdict.code).toBe(0);
    const parsed = parsePrometheus(answer.text);
    const empty = [...parsed.types.keys()].filter((family) => !parsed.samples.some((s) => s.name === family || s.name.startsWith(`${family}_`)));
    // Libuv requests (file or DNS work) in flight while the scrape is written: usually none.
    expect(empty.filter((family) => family !== 'nodejs_active_requests')).toEqual([]);
    for (const family of ['nodejs_active_handles', 'nodejs_active_resources', 'wasm_engine_invocations_total', 'wasm_engine_image_pulls_total', 'provider_http_requests_total']) {
      expect(parsed.types.has(family), family).toBe(true);
    }
    for (const gone of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      expect(parsed.types.has(gone), gone).toBe(false);
    }
  });

  it('/async-function/NAME, which faas-cli describe prints, answers 501 NOT_IMPLEMENTED saying what to use instead', async () => {
    const text = await call(engine.url, 'POST', '/async-function/gcd', undefined, {
      raw: 'not JSON at all',
      headers: ['content-type', 'text/plain', 'x-callback-url', 'http://127.0.0.1:9/callback'],
    });
    expect(text.status).toBe(501);
    expect(text.text).toMatch(/^status code: 501, message: asynchronous invocation is not offered by this engine: call \/function\/gcd synchronously.*OpenFaaS gateway.*\(NOT_IMPLEMENTED\)\n$/);
    const json = await call(engine.url, 'POST', '/async-function/gcd/some/path?a=1', undefined, { json: true });
    expect(json.status).toBe(501);
    expect(json.json.error.code).toBe('NOT_IMPLEMENTED');
    // Whether the function exists or not: the route is not offered.
    expect((await call(engine.url, 'GET', '/async-function/nothing-here')).status).toBe(501);
    // The synchronous route the message points to answers.
    expect((await call(engine.url, 'POST', '/function/gcd?a=12&b=18')).text).toBe('6');
  });

  it("/system/info carries package.json's version and the commit this build was made from, HEAD of this checkout", async () => {
    const info = (await call(engine.url, 'GET', '/system/info')).json as { version: { release: string; sha: string } };
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(info.version.release).toBe(pkg.version);
    const head = git(['rev-parse', 'HEAD']);
    // Whether tracked files differed from HEAD when `npm run build` ran (they may since have changed).
    const built = JSON.parse(readFileSync(join(REPO_ROOT, 'dist', 'build-info.json'), 'utf8')) as { commit: string; dirty: boolean | null };
    expect(built.commit, 'dist/ was built from another commit: run npm run build').toBe(head);
    expect(info.version.sha).toBe(built.dirty === true ? `${head}-dirty` : head);
  });

  it('the build records -dirty exactly when tracked files differ from HEAD (scripts/build-info.mjs, run now)', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'we-build-info-')), 'build-info.json');
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'build-info.mjs'), out], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '' } });
    const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ commit: git(['rev-parse', 'HEAD']), dirty, source: 'git' });
    // Where there is no checkout, the commit given to the build, else "unknown".
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'build-info.mjs'), out], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', WASM_ENGINE_COMMIT: 'abc123' } });
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ commit: 'abc123', source: 'WASM_ENGINE_COMMIT' });
  });
});
