/**
 * State under pressure, end to end against `wasm-engine serve`: a module shared by functions that
 * are deployed, updated and deleted at the same moment stays loaded for those that keep it; local
 * image paths that name a FIFO, a socket or a device are refused before they are opened and cannot
 * wedge the engine; a crash leaves no temporary file behind once the engine is back; and one
 * engine per data directory, decided atomically. No test here asserts a duration.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_OCI, watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call, type Answer } from '../support/http.js';

const deploy = (engine: EngineProcess, name: string, image: string): Promise<Answer> =>
  call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image }, { json: true });
const remove = (engine: EngineProcess, name: string): Promise<Answer> =>
  call(engine.url, 'POST', '/function/delete', { function_name: name }, { json: true });
const update = (engine: EngineProcess, name: string, image: string): Promise<Answer> =>
  call(engine.url, 'PUT', '/system/functions', { service: name, image }, { json: true });
const invoke = (engine: EngineProcess, name: string, args: unknown): Promise<Answer> =>
  call(engine.url, 'POST', '/function/invoke', { function_name: name, args }, { json: true });

function expectOk(answer: Answer, what: string): void {
  expect(answer.status, `${what}: ${answer.text}`).toBeLessThan(300);
}

describe('a module shared by functions changed at the same moment', () => {
  const ROUNDS = 15;

  it('deploying A while deleting B of the same module leaves A invocable, every time', async () => {
    const add = `file:${watFixture('hardening', 'state-add')}`;
    const engine = await startEngineProcess({ args: ['--workers', '1'] });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        expectOk(await deploy(engine, `b${i}`, add), 'deploy b');
        const [deployed, deleted] = await Promise.all([deploy(engine, `a${i}`, add), remove(engine, `b${i}`)]);
        expectOk(deployed, 'deploy a');
        expectOk(deleted, 'delete b');
        const answer = await invoke(engine, `a${i}`, { a: 2, b: i });
        expect(answer.status, `round ${i}: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe(String(2 + i));
      }
    } finally {
      await engine.kill();
    }
  });

  it('updating A to the module of B while deleting B, and updating B away while deploying C on its module', async () => {
    const add = `file:${watFixture('hardening', 'state-add')}`;
    const sub = `file:${watFixture('hardening', 'state-sub')}`;
    const engine = await startEngineProcess({ args: ['--workers', '1'] });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        expectOk(await deploy(engine, `a${i}`, sub), 'deploy a');
        expectOk(await deploy(engine, `b${i}`, add), 'deploy b');
        // A moves onto B's module while B, its last user so far, goes away.
        const [updated, deleted] = await Promise.all([update(engine, `a${i}`, add), remove(engine, `b${i}`)]);
        expectOk(updated, 'update a');
        expectOk(deleted, 'delete b');
        let answer = await invoke(engine, `a${i}`, { a: 5, b: 3 });
        expect(answer.status, `round ${i}, a: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe('8');
        // A leaves the module while C arrives on it.
        const [moved, deployed] = await Promise.all([update(engine, `a${i}`, sub), deploy(engine, `c${i}`, add)]);
        expectOk(moved, 'update a back');
        expectOk(deployed, 'deploy c');
        answer = await invoke(engine, `c${i}`, { a: 5, b: 3 });
        expect(answer.status, `round ${i}, c: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe('8');
        expectOk(await remove(engine, `c${i}`), 'delete c');
      }
    } finally {
      await engine.kill();
    }
  });
});

describe('local image paths that are not regular files', () => {
  let work: string;
  let engine: EngineProcess;
  let socket: Server;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'we-special-'));
    for (let i = 0; i < 4; i++) execFileSync('mkfifo', [join(work, `fifo${i}.wasm`)]);
    await symlink(join(work, 'fifo0.wasm'), join(work, 'link.wasm'));
    socket = createServer();
    await new Promise<void>((resolve) => socket.listen(join(work, 'socket.wasm'), resolve));
    engine = await startEngineProcess({ args: ['--workers', '1'] });
  });

  afterAll(async () => {
    await engine?.kill();
    socket?.close();
    await rm(work, { recursive: true, force: true });
  });

  const refused = async (image: string): Promise<Answer> => {
    const answer = await deploy(engine, 'special', image);
    expect(answer.status, `${image}: ${answer.text}`).toBe(422);
    expect(answer.json.error.code).toBe('INVALID_FUNCTION_IMAGE');
    return answer;
  };

  it('a FIFO, a symlink to one, a socket and a device named as file: are refused (422), never opened', async () => {
    expect((await refused(`file:${join(work, 'fifo0.wasm')}`)).json.error.message).toMatch(/a FIFO, not a regular file/);
    expect((await refused(`file:${join(work, 'link.wasm')}`)).json.error.message).toMatch(/a FIFO/);
    expect((await refused(`file:${join(work, 'socket.wasm')}`)).json.error.message).toMatch(/a socket/);
    expect((await refused('file:/dev/zero')).json.error.message).toMatch(/a character device/);
  });

  it('four FIFO deploys at once leave the engine serving: a deploy and a delete succeed after, and SIGTERM exits 0', async () => {
    const answers = await Promise.all([0, 1, 2, 3].map((i) => deploy(engine, `fifo${i}`, `file:${join(work, `fifo${i}.wasm`)}`)));
    for (const answer of answers) expect(answer.status, answer.text).toBe(422);
    const add = `file:${watFixture('hardening', 'state-add')}`;
    expectOk(await deploy(engine, 'after', add), 'deploy after the FIFOs');
    expect((await invoke(engine, 'after', { a: 1, b: 2 })).json.output).toBe('3');
    expectOk(await remove(engine, 'after'), 'delete after the FIFOs');
    expect(await engine.stop()).toBe(0);
    engine = await startEngineProcess({ args: ['--workers', '1'] });
  });

  it('an oci: layout whose directory, index.json, manifest or layer is a FIFO is refused (422)', async () => {
    const layout = async (name: string): Promise<{ dir: string; manifest: string; layer: string }> => {
      const dir = join(work, name);
      await cp(join(EXAMPLES_OCI, 'gcd'), dir, { recursive: true });
      const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const manifest = index.manifests[0]!.digest.slice('sha256:'.length);
      const parsed = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', manifest), 'utf8')) as { layers: { digest: string }[] };
      return { dir, manifest, layer: parsed.layers[0]!.digest.slice('sha256:'.length) };
    };
    const fifoInPlaceOf = async (file: string): Promise<void> => {
      await rm(file);
      execFileSync('mkfifo', [file]);
    };
    execFileSync('mkfifo', [join(work, 'layout-fifo')]);
    await refused(`oci:${join(work, 'layout-fifo')}`);

    const withIndex = await layout('index-fifo');
    await fifoInPlaceOf(join(withIndex.dir, 'index.json'));
    expect((await refused(`oci:${withIndex.dir}`)).json.error.message).toMatch(/index\.json is a FIFO/);

    const withManifest = await layout('manifest-fifo');
    await fifoInPlaceOf(join(withManifest.dir, 'blobs', 'sha256', withManifest.manifest));
    expect((await refused(`oci:${withManifest.dir}`)).json.error.message).toMatch(/a FIFO/);

    const withLayer = await layout('layer-fifo');
    await fifoInPlaceOf(join(withLayer.dir, 'blobs', 'sha256', withLayer.layer));
    expect((await refused(`oci:${withLayer.dir}`)).json.error.message).toMatch(/a FIFO/);

    // The engine is none the worse: the untouched layout deploys and runs.
    expectOk(await deploy(engine, 'gcd', `oci:${join(EXAMPLES_OCI, 'gcd')}`), 'deploy gcd');
    expect((await invoke(engine, 'gcd', { a: 12, b: 18 })).json.output).toBe('6');
  });
});
