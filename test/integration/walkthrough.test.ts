/**
 * The historical walk-through, unchanged: images pushed to a real registry with skopeo in Docker
 * and OCI formats, deployed, listed, queried, invoked and deleted over HTTP with the same text
 * answers, then the engine killed and restarted with everything still there.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.js';
import { EXAMPLES_OCI } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { pushLayout, startRegistry } from '../support/registry.js';

const AUTH_ARGS = { arg_uri: 'yes', arg_body: 'yes', arg_secret: '12345' };
const FORBIDDEN =
  '{"status":"403","body":"<html><h1>Auth Forbidden!</h1><p>hash c5187dd86a648a819f527c7a8a4f7bf4 secret 12345</p></html>"}';

describe('historical walk-through against a real registry', () => {
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  let engine: EngineProcess;
  let authImage: string;
  let helloImage: string;

  beforeAll(async () => {
    registry = await startRegistry();
    authImage = `${registry.host}/authentication-wasm:v4`;
    helloImage = `${registry.host}/hello-wasm:v2`;
    // One image in each format the registry serves: Docker v2 schema 2 and OCI.
    await pushLayout(join(EXAMPLES_OCI, 'authentication'), 'latest', authImage, 'v2s2');
    await pushLayout(join(EXAMPLES_OCI, 'hello'), 'latest', helloImage, 'oci');
    engine = await startEngineProcess();
  });

  afterAll(async () => {
    await engine?.kill();
    await registry?.stop();
  });

  it('deploys authentication (string ABI) from a Docker-format image', async () => {
    const answer = await call(engine.url, 'POST', '/function/deploy', {
      function_name: 'authentication',
      function_image: authImage,
      wasi_cap: false,
    });
    expect(answer.text).toBe('status code: 200, message: deploy function authentication successfully!\n');
    expect(answer.status).toBe(200);
  });

  it('deploys hello (WASI) from an OCI-format image', async () => {
    const answer = await call(engine.url, 'POST', '/function/deploy', {
      function_name: 'hello',
      function_image: helloImage,
      wasi_cap: true,
    });
    expect(answer.text).toBe('status code: 200, message: deploy function hello successfully!\n');
  });

  it('lists both in the historical form', async () => {
    const answer = await call(engine.url, 'GET', '/function/list');
    expect(answer.text).toBe(
      `status code: 200, message: all deployed function info: [{func_name: authentication, func_image_name: ${authImage}, wasi_cap: false}, {func_name: hello, func_image_name: ${helloImage}, wasi_cap: true}]\n`,
    );
  });

  it('queries authentication in the historical form, pointing at the stored module', async () => {
    const answer = await call(engine.url, 'POST', '/function/query', { function_name: 'authentication' });
    expect(answer.text).toMatch(
      new RegExp(
        `^status code: 200, message: queried function info: FunctionEntry \\{ func_name: "authentication", func_image_name: "${authImage}", func_local_path: "${engine.dataDir}/blobs/sha256/[0-9a-f]{64}", wasi_cap: false \\}\\n$`,
      ),
    );
    const json = await call(engine.url, 'POST', '/function/query', { function_name: 'authentication' }, { json: true });
    expect(json.json.function).toMatchObject({
      func_name: 'authentication',
      abi: 'string',
      wasi_cap: false,
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      manifest_digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    });
    expect(json.json.function.exports).toContain('authentication');
  });

  it('invokes authentication with the historical answer (no trailing newline)', async () => {
    const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'authentication', args: AUTH_ARGS });
    expect(answer.text).toBe(`status code: 200, message: ${FORBIDDEN}`);
  });

  it('passes authentication with the right secret', async () => {
    const answer = await call(engine.url, 'POST', '/function/invoke', {
      function_name: 'authentication',
      args: { ...AUTH_ARGS, arg_secret: 'c5187dd86a648a819f527c7a8a4f7bf4' },
    });
    expect(answer.text).toBe(
      'status code: 200, message: {"status":"200","body":"<html><h1>Auth Pass!</h1><p>hash c5187dd86a648a819f527c7a8a4f7bf4</p></html>"}',
    );
  });

  it('invokes hello', async () => {
    const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'hello', args: {} });
    expect(answer.text).toBe('status code: 200, message: Hello, Budda!');
  });

  it('deletes hello', async () => {
    const answer = await call(engine.url, 'POST', '/function/delete', { function_name: 'hello' });
    expect(answer.text).toBe('status code: 200, message: delete function hello successfully!\n');
    const gone = await call(engine.url, 'POST', '/function/invoke', { function_name: 'hello' }, { json: true });
    expect(gone.status).toBe(404);
    expect(gone.json.error.code).toBe('FUNCTION_NOT_FOUND');
  });

  it('keeps every deployed function across kill -9 and across SIGTERM', async () => {
    await engine.kill();
    engine = await startEngineProcess({ dataDir: engine.dataDir });
    expect(engine.output.join('\n')).toContain('restored 1 functions');
    let answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'authentication', args: AUTH_ARGS });
    expect(answer.text).toBe(`status code: 200, message: ${FORBIDDEN}`);

    expect(await engine.stop()).toBe(0);
    engine = await startEngineProcess({ dataDir: engine.dataDir });
    answer = await call(engine.url, 'GET', '/function/list');
    expect(answer.text).toBe(
      `status code: 200, message: all deployed function info: [{func_name: authentication, func_image_name: ${authImage}, wasi_cap: false}]\n`,
    );
    answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'authentication', args: AUTH_ARGS });
    expect(answer.text).toBe(`status code: 200, message: ${FORBIDDEN}`);
  });
});
