/**
 * Every error row of SPEC §2 that can arise here, driven over HTTP: the real status line, the
 * code name in JSON, and the historical text line by default.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.js';
import { EXAMPLES_OCI, EXAMPLES_WASM, FIXTURE_OUT, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { makeLayout, pushLayout, startRegistry } from '../support/registry.js';
import { freePort } from '../support/free-port.js';


describe('error answers', () => {
  let engine: EngineProcess;
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  let lockedRegistry: Awaited<ReturnType<typeof startRegistry>>;

  beforeAll(async () => {
    [registry, lockedRegistry] = await Promise.all([
      startRegistry(),
      startRegistry({ htpasswd: { user: 'alice', pass: 'secret' } }),
    ]);
    await pushLayout(join(EXAMPLES_OCI, 'gcd'), 'latest', `${registry.host}/gcd:v1`, 'v2s2');
    engine = await startEngineProcess();
    const deploy = async (name: string, image: string, extra: object = {}): Promise<void> => {
      const answer = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra });
      expect(answer.status, answer.text).toBe(200);
    };
    await deploy('gcd', `${registry.host}/gcd:v1`);
    await deploy('trap', `file:${watFixture('integration', 'trap')}`);
    await deploy('spin', `file:${watFixture('integration', 'spin')}`, { timeout_ms: 300 });
    await deploy('fibonacci', `oci:${join(EXAMPLES_OCI, 'fibonacci')}`);
  });

  afterAll(async () => {
    await engine?.kill();
    await registry?.stop();
    await lockedRegistry?.stop();
  });

  const expectError = async (
    method: string,
    path: string,
    body: unknown,
    status: number,
    code: string,
    message?: RegExp,
    raw?: string,
  ): Promise<void> => {
    const json = await call(engine.url, method, path, body, { json: true, ...(raw === undefined ? {} : { raw }) });
    expect(json.status, json.text).toBe(status);
    expect(json.json).toMatchObject({ status, error: { code } });
    if (message) expect(json.json.error.message).toMatch(message);
    const text = await call(engine.url, method, path, body, raw === undefined ? {} : { raw });
    expect(text.status).toBe(status);
    expect(text.text).toMatch(new RegExp(`^status code: ${status}, message: .*\\(${code}\\)\\n?$`));
  };

  it('400 INVALID_REQUEST: body not JSON', () =>
    expectError('POST', '/function/deploy', undefined, 400, 'INVALID_REQUEST', /not valid JSON/, '{"function_name": '));

  it('400 INVALID_REQUEST: body not an object', () =>
    expectError('POST', '/function/query', undefined, 400, 'INVALID_REQUEST', /JSON object/, '[1,2]'));

  it('400 INVALID_REQUEST: missing field, named', () =>
    expectError('POST', '/function/deploy', { function_name: 'x' }, 400, 'INVALID_REQUEST', /function_image/));

  it('400 INVALID_REQUEST: mistyped field, named', () =>
    expectError('POST', '/function/deploy', { function_name: 'x', function_image: 'file:/x.wasm', wasi_cap: 'yes' }, 400, 'INVALID_REQUEST', /wasi_cap/));

  it('400 INVALID_REQUEST: unknown field, named', () =>
    expectError('POST', '/function/query', { function_name: 'gcd', extra: 1 }, 400, 'INVALID_REQUEST', /extra/));

  it('400 INVALID_REQUEST: bad function name', () =>
    expectError('POST', '/function/deploy', { function_name: '../etc', function_image: 'file:/x.wasm' }, 400, 'INVALID_REQUEST', /function_name/));

  it('400 INVALID_REQUEST: reserved function name', () =>
    expectError('POST', '/function/deploy', { function_name: 'invoke', function_image: 'file:/x.wasm' }, 400, 'INVALID_REQUEST', /reserved/));

  it('400 INVALID_REQUEST: bad image reference', () =>
    expectError('POST', '/function/deploy', { function_name: 'x', function_image: 'UPPER/Case::tag' }, 400, 'INVALID_REQUEST'));

  it('404 FUNCTION_NOT_FOUND on invoke, query and delete', async () => {
    await expectError('POST', '/function/invoke', { function_name: 'nope' }, 404, 'FUNCTION_NOT_FOUND');
    await expectError('POST', '/function/query', { function_name: 'nope' }, 404, 'FUNCTION_NOT_FOUND');
    await expectError('POST', '/function/delete', { function_name: 'nope' }, 404, 'FUNCTION_NOT_FOUND');
  });

  it('409 FUNCTION_EXISTS on a second deploy of a name', () =>
    expectError('POST', '/function/deploy', { function_name: 'gcd', function_image: `${registry.host}/gcd:v1` }, 409, 'FUNCTION_EXISTS'));

  it('409 for all but one of concurrent deploys of one name', async () => {
    const image = `oci:${join(EXAMPLES_OCI, 'add-one')}`;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => call(engine.url, 'POST', '/function/deploy', { function_name: 'racer', function_image: image })),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409, 409, 409]);
  });

  it('413 PAYLOAD_TOO_LARGE past the body limit', () =>
    expectError('POST', '/function/invoke', { function_name: 'gcd', args: { a: 'x'.repeat(2 * 1024 * 1024) } }, 413, 'PAYLOAD_TOO_LARGE'));

  it('422 INVALID_FUNCTION_IMAGE: an image with no .wasm file', async () => {
    const notes = join(FIXTURE_OUT, 'notes.txt');
    await writeFile(notes, 'not a module');
    const layout = join(FIXTURE_OUT, 'layout-no-wasm');
    await makeLayout(notes, layout, 'latest');
    await expectError('POST', '/function/deploy', { function_name: 'nowasm', function_image: `oci:${layout}` }, 422, 'INVALID_FUNCTION_IMAGE', /\.wasm/);
  });

  it('422 INVALID_FUNCTION_IMAGE: a file that is not WebAssembly', async () => {
    const bad = join(FIXTURE_OUT, 'garbage.wasm');
    await writeFile(bad, '\0asm\x01\0\0\0garbage');
    await expectError('POST', '/function/deploy', { function_name: 'garbage', function_image: `file:${bad}` }, 422, 'INVALID_FUNCTION_IMAGE');
  });

  it('422 INVALID_FUNCTION_IMAGE: the export its ABI needs is missing, named', () =>
    expectError(
      'POST',
      '/function/deploy',
      { function_name: 'gcd-as-wasi', function_image: `file:${join(EXAMPLES_WASM, 'gcd.wasm')}`, wasi_cap: true },
      422,
      'INVALID_FUNCTION_IMAGE',
      /_start/,
    ));

  it('422 INVALID_FUNCTION_IMAGE: an import the engine does not provide, named', () =>
    expectError(
      'POST',
      '/function/deploy',
      { function_name: 'needs-env', function_image: `file:${watFixture('integration', 'needs-env')}` },
      422,
      'INVALID_FUNCTION_IMAGE',
      /launch_missiles/,
    ));

  it('404 IMAGE_NOT_FOUND: unknown tag and unknown repository', async () => {
    await expectError('POST', '/function/deploy', { function_name: 'x', function_image: `${registry.host}/gcd:nope` }, 404, 'IMAGE_NOT_FOUND');
    await expectError('POST', '/function/deploy', { function_name: 'x', function_image: `${registry.host}/nothing:v1` }, 404, 'IMAGE_NOT_FOUND');
  });

  it('502 REGISTRY_AUTH_FAILED: a registry that wants credentials', () =>
    expectError('POST', '/function/deploy', { function_name: 'x', function_image: `${lockedRegistry.host}/gcd:v1` }, 502, 'REGISTRY_AUTH_FAILED', new RegExp(lockedRegistry.host)));

  it('502 REGISTRY_ERROR: nothing listening, naming the registry', async () => {
    const port = await freePort();
    await expectError('POST', '/function/deploy', { function_name: 'x', function_image: `127.0.0.1:${port}/gcd:v1` }, 502, 'REGISTRY_ERROR', new RegExp(`127.0.0.1:${port}`));
  });

  it('nothing of a failed deploy is left behind', async () => {
    const list = await call(engine.url, 'GET', '/function/list', undefined, { json: true });
    expect(list.json.functions.map((f: { func_name: string }) => f.func_name).sort()).toEqual(['fibonacci', 'gcd', 'racer', 'spin', 'trap']);
  });

  it('400 INVALID_ARGS: wrong count, not a number, nested value', async () => {
    await expectError('POST', '/function/invoke', { function_name: 'gcd', args: { a: '1' } }, 400, 'INVALID_ARGS');
    await expectError('POST', '/function/invoke', { function_name: 'gcd', args: { a: '1', b: 'x' } }, 400, 'INVALID_ARGS');
    await expectError('POST', '/function/invoke', { function_name: 'gcd', args: { a: { b: 1 } } }, 400, 'INVALID_ARGS', /a/);
  });

  it('500 FUNCTION_FAILED: a trap, named', () =>
    expectError('POST', '/function/invoke', { function_name: 'trap' }, 500, 'FUNCTION_FAILED', /unreachable/));

  it('500 FUNCTION_FAILED: a non-zero WASI exit, with its code and stderr', async () => {
    const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'fibonacci', args: ['ten'] }, { json: true });
    expect(answer.status).toBe(500);
    expect(answer.json.error.code).toBe('FUNCTION_FAILED');
    expect(answer.json.error.message).toMatch(/exit code [1-9]/);
  });

  it('504 FUNCTION_TIMEOUT: an infinite loop is stopped and the engine keeps serving', async () => {
    const [spin, gcd] = await Promise.all([
      call(engine.url, 'POST', '/function/invoke', { function_name: 'spin' }, { json: true }),
      call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: '12', b: '18' } }, { json: true }),
    ]);
    expect(spin.status).toBe(504);
    expect(spin.json.error.code).toBe('FUNCTION_TIMEOUT');
    expect(gcd.json.output).toBe('6');
    const after = await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: '12', b: '18' } });
    expect(after.text).toBe('status code: 200, message: 6');
  });

  it('404 NOT_FOUND for an unknown route, 405 METHOD_NOT_ALLOWED for a wrong method', async () => {
    await expectError('GET', '/function/nothing', undefined, 404, 'NOT_FOUND');
    await expectError('GET', '/function/invoke', undefined, 405, 'METHOD_NOT_ALLOWED');
    await expectError('POST', '/function/list', undefined, 405, 'METHOD_NOT_ALLOWED');
  });
});

describe('overload', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '1', '--max-queue', '0'] });
    const answer = await call(engine.url, 'POST', '/function/deploy', {
      function_name: 'spin',
      function_image: `file:${watFixture('integration', 'spin')}`,
      timeout_ms: 1500,
    });
    expect(answer.status, answer.text).toBe(200);
  });
  afterAll(() => engine?.kill());

  it('answers OVERLOADED with Retry-After at once instead of queueing without end', async () => {
    const busy = call(engine.url, 'POST', '/function/invoke', { function_name: 'spin' }, { json: true });
    await new Promise((r) => setTimeout(r, 200));
    const refused = await call(engine.url, 'POST', '/function/invoke', { function_name: 'spin' }, { json: true });
    expect([429, 503]).toContain(refused.status);
    expect(refused.json.error.code).toBe('OVERLOADED');
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    expect((await busy).status).toBe(504);
  });
});
