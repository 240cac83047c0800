/**
 * Function images end to end, the way a user without Docker works: `wasm-engine push` to a real
 * registry that wants a login (htpasswd Basic, or tokens from the test's own issuer — the
 * registry cannot reach a real one here), then deploy and invoke on an engine run as a child
 * process with Docker's config.json, a credential helper, or its own credentials file. And the
 * failures: wrong and missing credentials, an oversized image, a registry killed mid-download or
 * hanging (the engine keeps serving), pinned digests, and the blob cache.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWasm } from '../registry/fixtures.js';
import { CLI, REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { EXAMPLES_WASM } from '../support/fixtures.js';
import { call } from '../support/http.js';
import {
  makeLayout,
  pushLayout,
  startRegistry,
  startSlowProxy,
  startTokenServer,
  type RunningRegistry,
  type TokenServer,
} from '../support/registry.js';

const run = promisify(execFile);
const GCD = join(EXAMPLES_WASM, 'gcd.wasm');
const ALICE = { user: 'alice', pass: 'Alice-s3cret' };
const BOB = { user: 'bob', pass: 'Bob-hunter2' };

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `wasm-engine ARGS` as a user would, with `stdin` piped in (a password, say). */
function cli(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

/** A module of about 2 MB (a data segment of incompressible bytes) exporting add(i32, i32). */
async function bigModule(name: string, bytes: number): Promise<string> {
  // Random bytes, so that gzip cannot shrink the layer: the registry sends the full 2 MB.
  const data = randomBytes(bytes).toString('hex').replace(/../g, '\\$&');
  const pages = Math.ceil(bytes / 65536) + 1;
  const wat = `(module (memory ${pages}) (data (i32.const 0) "${data}")
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`;
  return (await buildWasm(name, wat)).path;
}

function pushedDigest(result: CliResult): string {
  const match = /^pushed \S+@(sha256:[0-9a-f]{64})$/m.exec(result.stdout);
  if (!match) throw new Error(`push failed (${result.code}): ${result.stdout}${result.stderr}`);
  return match[1]!;
}

async function deploy(engine: EngineProcess, name: string, image: string) {
  return call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image }, { json: true });
}

let work: string;
let big: string;
let secured: RunningRegistry;
let dockerConfigDir: string;
const engines: EngineProcess[] = [];

async function engineWith(options: { args?: string[]; env?: Record<string, string> } = {}): Promise<EngineProcess> {
  const engine = await startEngineProcess(options);
  engines.push(engine);
  return engine;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'we-images-'));
  [big, secured] = await Promise.all([bigModule('images-big-2mb', 2 * 1024 * 1024), startRegistry({ htpasswd: ALICE })]);
  dockerConfigDir = join(work, 'docker');
  await mkdir(dockerConfigDir);
  await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({ auths: { [secured.host]: { auth: b64(`${ALICE.user}:${ALICE.pass}`) } } }));
}, 120_000);

afterAll(async () => {
  await Promise.all(engines.map((e) => e.kill()));
  await secured?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('push, deploy and invoke with a registry login (htpasswd)', () => {
  let engine: EngineProcess;
  let digest: string;

  beforeAll(async () => {
    engine = await engineWith({ env: { DOCKER_CONFIG: dockerConfigDir } });
  });

  it('push --username --password-stdin builds and pushes the image, printing the pinned reference', async () => {
    const result = await cli(['push', GCD, `${secured.host}/team/gcd:v1`, '--username', ALICE.user, '--password-stdin'], { stdin: `${ALICE.pass}\n` });
    expect(result.code).toBe(0);
    digest = pushedDigest(result);
    expect(result.stdout).toBe(`pushed ${secured.host}/team/gcd:v1@${digest}\n`);
    expect(result.stderr).toMatch(/docker image of gcd\.wasm: 2 blob\(s\) uploaded/);
    expect(`${result.stdout}${result.stderr}`).not.toContain(ALICE.pass);
  });

  it('push reads Docker\'s config.json too, and refuses a file that is not WebAssembly', async () => {
    const again = await cli(['push', GCD, `${secured.host}/team/gcd:wasm`, '--format', 'wasm', '--json'], { env: { DOCKER_CONFIG: dockerConfigDir } });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ format: 'wasm', mediaType: 'application/vnd.oci.image.manifest.v1+json', uploaded: 2 });

    const notWasm = join(work, 'notes.wasm');
    await writeFile(notWasm, 'not a module');
    const refused = await cli(['push', notWasm, `${secured.host}/team/bad:v1`], { env: { DOCKER_CONFIG: dockerConfigDir } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/notes\.wasm is not a WebAssembly module/);
    expect((await cli(['push', GCD])).code).toBe(2);
    expect((await cli(['push', GCD, `${secured.host}/x:v1`, '--format', 'zip'])).code).toBe(2);
  });

  it('deploys with the credentials of DOCKER_CONFIG, answering the manifest digest, and invokes', async () => {
    const answer = await deploy(engine, 'gcd', `${secured.host}/team/gcd:v1`);
    expect(answer.status).toBe(200);
    expect(answer.json.function.manifest_digest).toBe(digest);
    const invoked = await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 12, b: 18 } });
    expect(invoked.text).toBe('status code: 200, message: 6');
  });

  it('deploys a pinned digest (repo@sha256 and repo:tag@sha256); a digest the registry lacks is refused', async () => {
    const pinned = await deploy(engine, 'gcd-pinned', `${secured.host}/team/gcd@${digest}`);
    expect(pinned.status).toBe(200);
    expect(pinned.json.function.manifest_digest).toBe(digest);
    const tagged = await deploy(engine, 'gcd-tagged', `${secured.host}/team/gcd:v1@${digest}`);
    expect(tagged.json.function.manifest_digest).toBe(digest);
    const wrong = await deploy(engine, 'gcd-wrong', `${secured.host}/team/gcd:v1@sha256:${'0'.repeat(64)}`);
    expect(wrong.status).toBe(404);
    expect(wrong.json.error.code).toBe('IMAGE_NOT_FOUND');
    expect(wrong.json.error.message).toContain(`manifest sha256:${'0'.repeat(64)}`);
    expect((await call(engine.url, 'GET', '/function/list', undefined, { json: true })).json.functions.map((f: { func_name: string }) => f.func_name)).not.toContain('gcd-wrong');
  });

  it('does not download a layer whose module is already stored, whichever function needs it', async () => {
    const before = engine.output.length;
    expect((await deploy(engine, 'gcd-wasm-format', `${secured.host}/team/gcd:wasm`)).status).toBe(200);
    const fetched = engine.output.slice(before).map((l) => JSON.parse(l)).find((l) => l.msg === 'image fetched');
    expect(fetched).toMatchObject({ downloadedBytes: 0, reusedLayers: 1 });
  });

  it('a wrong password in the engine\'s credentials file: 502 naming registry, repository, user and file, never the password', async () => {
    const file = join(work, 'wrong-credentials.json');
    await writeFile(file, JSON.stringify({ auths: { [secured.host]: { username: ALICE.user, password: 'Wr0ng-Passw0rd' } } }));
    const wrong = await engineWith({ args: ['--registry-credentials', file, '--docker-config', 'none'] });
    const answer = await deploy(wrong, 'gcd', `${secured.host}/team/gcd:v1`);
    expect(answer.status).toBe(502);
    expect(answer.json.error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(answer.json.error.message).toContain(`registry ${secured.host} refused access to repository team/gcd`);
    expect(answer.json.error.message).toContain(`with user "alice" from registry credentials file ${file}`);
    expect(answer.json.error.message).not.toContain('Wr0ng-Passw0rd');
    expect(wrong.output.join('\n')).not.toContain('Wr0ng-Passw0rd');
  });

  it('missing credentials: 502 saying none are configured', async () => {
    const bare = await engineWith({ args: ['--docker-config', 'none'] });
    const answer = await deploy(bare, 'gcd', `${secured.host}/team/gcd:v1`);
    expect(answer.status).toBe(502);
    expect(answer.json.error.message).toBe(`registry ${secured.host} requires credentials (Basic authentication) for repository team/gcd and none are configured`);
  });

  it('takes credentials from a docker-credential helper on PATH (credHelpers)', async () => {
    const bin = join(work, 'bin');
    await mkdir(bin, { recursive: true });
    await writeFile(
      join(bin, 'docker-credential-wetest'),
      `#!/bin/sh\nread server\nif [ "$server" = "${secured.host}" ]; then echo '{"ServerURL":"${secured.host}","Username":"${ALICE.user}","Secret":"${ALICE.pass}"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n`,
    );
    await chmod(join(bin, 'docker-credential-wetest'), 0o755);
    const helperConfig = join(work, 'helper-config');
    await mkdir(helperConfig);
    await writeFile(join(helperConfig, 'config.json'), JSON.stringify({ credHelpers: { [secured.host]: 'wetest' } }));
    const helped = await engineWith({ env: { DOCKER_CONFIG: helperConfig, PATH: `${bin}:${process.env.PATH ?? ''}` } });
    expect((await deploy(helped, 'gcd', `${secured.host}/team/gcd:v1`)).status).toBe(200);
  });

  it('images written by umoci and pushed by skopeo deploy', async () => {
    const layout = join(work, 'umoci-layout');
    await makeLayout(GCD, layout, 'v1');
    await pushLayout(layout, 'v1', `${secured.host}/team/umoci:v1`, 'v2s2', { creds: ALICE });
    expect((await deploy(engine, 'gcd-umoci', `${secured.host}/team/umoci:v1`)).status).toBe(200);
  });

  it('pack writes an OCI layout that deploys and that skopeo reads', async () => {
    const dir = join(work, 'packed');
    const packed = await cli(['pack', GCD, '--oci-layout', `${dir}:v3`]);
    expect(packed.code).toBe(0);
    expect(packed.stdout).toMatch(new RegExp(`^packed oci:${dir}:v3@sha256:[0-9a-f]{64}\\n$`));
    expect((await deploy(engine, 'gcd-packed', `oci:${dir}:v3`)).status).toBe(200);
    const { stdout } = await run('skopeo', ['inspect', `oci:${dir}:v3`]);
    expect(JSON.parse(stdout)).toMatchObject({ Os: 'wasi', Architecture: 'wasm' });
    expect((await cli(['pack', GCD])).code).toBe(2);
  });
});

describe('token auth (the test\'s own token issuer)', () => {
  let tokens: TokenServer;
  let registry: RunningRegistry;
  beforeAll(async () => {
    tokens = await startTokenServer({ users: BOB });
    registry = await startRegistry({ token: tokens.auth });
  }, 60_000);
  afterAll(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  it('push with a login, deploy with the engine\'s credentials file, invoke', async () => {
    const pushed = await cli(['push', GCD, `${registry.host}/team/gcd:v1`, '--username', BOB.user, '--password-stdin'], { stdin: BOB.pass });
    const digest = pushedDigest(pushed);
    expect(tokens.requests.some((r) => r.scopes.includes('repository:team/gcd:pull,push'))).toBe(true);
    const file = join(work, 'token-credentials.json');
    await writeFile(file, JSON.stringify({ auths: { [registry.host]: { auth: b64(`${BOB.user}:${BOB.pass}`) } } }));
    const engine = await engineWith({ args: ['--registry-credentials', file, '--docker-config', 'none'] });
    const answer = await deploy(engine, 'gcd', `${registry.host}/team/gcd:v1`);
    expect(answer.status).toBe(200);
    expect(answer.json.function.manifest_digest).toBe(digest);
    expect((await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 21, b: 14 } })).text).toBe('status code: 200, message: 7');
    // Tokens are never logged.
    const log = engine.output.join('\n');
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}/);
    expect(log).not.toContain(BOB.pass);

    const anonymous = await engineWith({ args: ['--docker-config', 'none'] });
    const refused = await deploy(anonymous, 'gcd', `${registry.host}/team/gcd:v1`);
    expect(refused.status).toBe(502);
    expect(refused.json.error.message).toMatch(/refused an anonymous token for repository team\/gcd/);
  });
});

describe('limits and failing registries: the engine keeps serving', () => {
  let plain: RunningRegistry;
  let engine: EngineProcess;
  let bigImage: string;

  beforeAll(async () => {
    plain = await startRegistry();
    bigImage = `${plain.host}/big:v1`;
    pushedDigest(await cli(['push', big, bigImage]));
    engine = await engineWith({ args: ['--registry-timeout-ms', '4000'] });
    expect((await deploy(engine, 'gcd', `file:${GCD}`)).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await plain?.stop();
  });

  const blobs = async (e: EngineProcess): Promise<string[]> => (await readdir(join(e.dataDir, 'blobs', 'sha256'))).sort();

  it('refuses an image over --max-image-bytes', async () => {
    const small = await engineWith({ args: ['--max-image-bytes', String(1024 * 1024)] });
    const answer = await deploy(small, 'big', bigImage);
    expect(answer.status).toBe(422);
    expect(answer.json.error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(answer.json.error.message).toMatch(/larger than the limit of 1048576 bytes/);
    expect(await blobs(small)).toEqual([]);
  });

  it('the 2 MB module deploys and answers', async () => {
    const answer = await deploy(engine, 'big', bigImage);
    expect(answer.status).toBe(200);
    expect((await call(engine.url, 'POST', '/function/invoke', { function_name: 'big', args: { a: 2, b: 3 } })).text).toBe('status code: 200, message: 5');
    await call(engine.url, 'POST', '/function/delete', { function_name: 'big' });
  });

  it('a registry killed mid-download: the deploy fails cleanly, nothing half-stored, the engine keeps serving', async () => {
    const doomed = await startRegistry();
    const proxy = await startSlowProxy(doomed.port, 256 * 1024);
    // The default total timeout (60 s): what ends this deploy is the registry's death, not a deadline.
    const engine = await engineWith();
    expect((await deploy(engine, 'gcd', `file:${GCD}`)).status).toBe(200);
    try {
      pushedDigest(await cli(['push', big, `${doomed.host}/big:v1`]));
      const before = await blobs(engine);
      const pending = deploy(engine, 'doomed', `${proxy.host}/big:v1`);
      const deadline = Date.now() + 10_000;
      while (proxy.forwarded() < 300 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(proxy.forwarded()).toBeGreaterThanOrEqual(300 * 1024);
      await doomed.kill();
      // While it fails, the engine answers other calls at once.
      expect((await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 9, b: 6 } })).text).toBe('status code: 200, message: 3');
      const answer = await pending;
      expect(answer.status).toBe(502);
      expect(answer.json.error.code).toBe('REGISTRY_ERROR');
      expect(answer.json.error.message).toContain(`registry ${proxy.host}`);
      expect(answer.json.error.message).not.toMatch(/took longer/);
      const list = await call(engine.url, 'GET', '/function/list', undefined, { json: true });
      expect(list.json.functions.map((f: { func_name: string }) => f.func_name)).toEqual(['gcd']);
      expect(await blobs(engine)).toEqual(before);
      expect((await readdir(join(engine.dataDir, 'blobs', 'sha256'))).filter((n) => n.startsWith('.tmp'))).toEqual([]);
    } finally {
      await proxy.stop();
      await doomed.stop();
    }
  }, 60_000);

  it('a registry that never answers blocks neither list nor invoke, and the deploy times out', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket); // accepts, reads, never answers
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const started = Date.now();
      const pending = deploy(engine, 'hangs', `127.0.0.1:${port}/fn:v1`);
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < 5; i += 1) {
        const t = Date.now();
        expect((await call(engine.url, 'GET', '/function/list')).status).toBe(200);
        expect((await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 4, b: 6 } })).text).toBe('status code: 200, message: 2');
        expect(Date.now() - t).toBeLessThan(1_000);
      }
      const answer = await pending;
      expect(answer.status).toBe(502);
      expect(answer.json.error.message).toMatch(/took longer than 4000 ms/);
      expect(Date.now() - started).toBeLessThan(10_000);

      // Nor does it hold up a stop: SIGTERM ends the hanging pull once the shutdown bound is spent.
      const stopping = await startEngineProcess({ args: ['--shutdown-timeout-ms', '1000'] });
      const hanging = deploy(stopping, 'hangs', `127.0.0.1:${port}/fn:v1`).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const t = Date.now();
      expect(await stopping.stop()).toBe(0);
      expect(Date.now() - t).toBeLessThan(5_000);
      await hanging;
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  }, 30_000);
});
