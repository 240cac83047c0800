/**
 * The PostgreSQL store over HTTP, with real engine processes and a real PostgreSQL server on
 * loopback: one node, then two nodes sharing one database (propagation, races, cluster counts), the
 * database going away and coming back.
 */
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { EXAMPLES_OCI, EXAMPLES_WASM } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { startPostgres, type RunningPostgres } from '../support/postgres.js';

// Each test starts engines (a few seconds each, many more on a loaded machine).
vi.setConfig({ testTimeout: 180_000 });

let pg: RunningPostgres;
const engines: EngineProcess[] = [];

beforeAll(async () => {
  pg = await startPostgres();
});
afterEach(async () => {
  await Promise.all(engines.splice(0).map((engine) => engine.kill()));
});
afterAll(async () => {
  await pg?.stop();
});

async function node(url: string, name: string, args: string[] = [], dataDir?: string): Promise<EngineProcess> {
  const engine = await startEngineProcess({ startTimeoutMs: 90_000, args: ['--store', url, '--node-name', name, '--workers', '1', ...args], ...(dataDir ? { dataDir } : {}) });
  engines.push(engine);
  return engine;
}

/** Polls `check` until it returns true (bounded tries, no fixed sleep as a wait). */
async function eventually(what: string, check: () => Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`never happened: ${what}`);
}

const deploy = (engine: EngineProcess, name: string, image: string, extra: Record<string, unknown> = {}) =>
  call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image, ...extra }, { json: true });
const invoke = (engine: EngineProcess, name: string, args: unknown = {}) =>
  call(engine.url, 'POST', '/function/invoke', { function_name: name, args }, { json: true });
const dbName = (url: string): string => new URL(url).pathname.slice(1);
const loadedModules = async (engine: EngineProcess): Promise<number> =>
  Number(/^wasm_engine_loaded_modules\{[^}]*\} (\d+)$/m.exec((await call(engine.url, 'GET', '/metrics')).text)?.[1] ?? NaN);

describe('PostgreSQL store: one node', () => {
  it('creates the schema in an empty database, names the node, and serves a function after a restart with a new data directory, and a damaged local copy from the database', async () => {
    const url = await pg.createDatabase();
    const a = await node(url, 'node-a');
    expect(await pg.sql('SELECT string_agg(version::text, \',\' ORDER BY version) FROM wasm_schema_migrations', dbName(url))).toBe('1,2');
    const info = await call(a.url, 'GET', '/system/info');
    expect(info.json.node).toBe('node-a');
    expect(a.output.some((line) => JSON.parse(line).node === 'node-a')).toBe(true);

    // The module's source is gone once deployed: a node that never saw it gets the bytes from the database.
    const dir = await mkdtemp(join(tmpdir(), 'we-src-'));
    await copyFile(join(EXAMPLES_WASM, 'hello.wasm'), join(dir, 'hello.wasm'));
    expect((await deploy(a, 'hello', `file:${join(dir, 'hello.wasm')}`)).status).toBe(200);
    await rm(dir, { recursive: true });
    await a.stop();
    engines.splice(engines.indexOf(a), 1);

    const b = await node(url, 'node-b');
    expect(b.dataDir).not.toBe(a.dataDir);
    const answer = await invoke(b, 'hello');
    expect(answer.status).toBe(200);
    expect(answer.json.message).toBe('Hello, Budda!');
    const metrics = await call(b.url, 'GET', '/metrics');
    expect(metrics.text).toMatch(/wasm_engine_invocations_total\{[^}]*node="node-b"/);

    // The data directory is a cache: a damaged local copy is noticed, and read again from the database.
    await b.stop();
    engines.splice(engines.indexOf(b), 1);
    const blobs = join(b.dataDir, 'blobs', 'sha256');
    const copies = (await readdir(blobs)).filter((name) => /^[0-9a-f]{64}$/.test(name));
    expect(copies).toHaveLength(1);
    await writeFile(join(blobs, copies[0]!), 'damaged');
    const again = await startEngineProcess({ startTimeoutMs: 90_000, dataDir: b.dataDir, args: ['--store', url, '--node-name', 'node-b', '--workers', '1'] });
    engines.push(again);
    expect((await invoke(again, 'hello')).json.message).toBe('Hello, Budda!');
  });
});

describe('PostgreSQL store: unused blobs', () => {
  it('removes a blob no function names (one a failed removal left behind), and keeps those in use', async () => {
    const url = await pg.createDatabase();
    const a = await node(url, 'node-a');
    expect((await deploy(a, 'hello', `oci:${join(EXAMPLES_OCI, 'hello')}`)).status).toBe(200);
    const orphan = `sha256:${'ab'.repeat(32)}`;
    // What a removal that failed midway leaves: a blob row and no entry naming it.
    await pg.sql(`INSERT INTO wasm_blobs (digest, size, bytes) VALUES ('${orphan}', 3, '\\x010203'::bytea)`, dbName(url));
    const count = async (where: string): Promise<number> => Number(await pg.sql(`SELECT count(*) FROM wasm_blobs WHERE ${where}`, dbName(url)));
    expect(await count(`digest = '${orphan}'`)).toBe(1);
    // The next full resync (at most 10 s away) sweeps it.
    await eventually('the orphaned blob is removed', async () => (await count(`digest = '${orphan}'`)) === 0, 1200);
    expect(await count('true')).toBe(1);
    expect((await invoke(a, 'hello')).json.message).toBe('Hello, Budda!');
  });
});

describe('PostgreSQL store: two nodes', () => {
  it('propagates deploy, update, scale and delete made through one node to the other', async () => {
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([node(url, 'node-a'), node(url, 'node-b')]);

    expect((await deploy(a, 'calc', `oci:${join(EXAMPLES_OCI, 'gcd')}`)).status).toBe(200);
    await eventually('B invokes calc', async () => (await invoke(b, 'calc', { a: 12, b: 18 })).json?.message === '6');

    // Update in place through A (OpenFaaS PUT): B runs the new module.
    const updated = await call(a.url, 'PUT', '/system/functions', { service: 'calc', image: `oci:${join(EXAMPLES_OCI, 'add-one')}` });
    expect(updated.status).toBe(200);
    await eventually('B runs the updated calc', async () => {
      const status = await call(b.url, 'GET', '/system/function/calc');
      return status.json?.image === `oci:${join(EXAMPLES_OCI, 'add-one')}`;
    });
    const after = await invoke(b, 'calc', [41]);
    expect(after.status).toBe(200);
    expect(after.json.message).toBe('42');
    // The replaced module is unloaded on B, as after an update made there.
    await eventually('B holds one module', async () => loadedModules(b).then((n) => n === 1));

    // Scale through A: the same replicas on B, and 0 pauses the function there too.
    expect((await call(a.url, 'POST', '/system/scale-function/calc', { serviceName: 'calc', replicas: 0 })).status).toBe(202);
    await eventually('B sees 0 replicas', async () => (await call(b.url, 'GET', '/system/function/calc')).json?.replicas === 0);
    expect((await invoke(b, 'calc', [1])).json.error.code).toBe('UNAVAILABLE');
    expect((await call(a.url, 'POST', '/system/scale-function/calc', { serviceName: 'calc', replicas: 3 })).status).toBe(202);
    await eventually('B sees 3 replicas', async () => (await call(b.url, 'GET', '/system/function/calc')).json?.replicas === 3);
    expect((await invoke(b, 'calc', [1])).json.message).toBe('2');

    // A change that reaches the database without an announcement (as one missed while a node was
    // disconnected): the periodic resynchronisation (every 10 s) brings it to both nodes.
    await pg.sql(
      `UPDATE wasm_functions SET record = jsonb_set(record, '{replicas}', '5'), revision = nextval('wasm_function_revision') WHERE name = 'calc'`,
      dbName(url),
    );
    await eventually('B resynchronised', async () => (await call(b.url, 'GET', '/system/function/calc')).json?.replicas === 5, 1200);

    // Delete through B: gone from A.
    expect((await call(b.url, 'POST', '/function/delete', { function_name: 'calc' }, { json: true })).status).toBe(200);
    await eventually('A no longer has calc', async () => (await invoke(a, 'calc', [1])).status === 404);
    await eventually('A holds no module', async () => loadedModules(a).then((n) => n === 0));
    expect((await call(a.url, 'GET', '/function/list', undefined, { json: true })).json.functions ?? []).toEqual([]);
  });

  it('settles the same name deployed through both nodes at once: one 200, one 409, every time (two engines sharing one data directory)', async () => {
    const url = await pg.createDatabase();
    // With this store the data directory is only a cache, and not locked: two engines may share one.
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b', [], a.dataDir);
    const image = `oci:${join(EXAMPLES_OCI, 'hello')}`;
    for (let round = 0; round < 15; round++) {
      const name = `race-${round}`;
      const answers = await Promise.all([deploy(a, name, image), deploy(b, name, image)]);
      const statuses = answers.map((answer) => answer.status).sort();
      expect(statuses, JSON.stringify(answers.map((x) => x.json))).toEqual([200, 409]);
      expect(answers.find((answer) => answer.status === 409)!.json.error.code).toBe('FUNCTION_EXISTS');
      // Both serve it, whichever won.
      await eventually(`both nodes invoke ${name}`, async () => (await invoke(a, name)).status === 200 && (await invoke(b, name)).status === 200);
    }
    expect(await pg.sql('SELECT count(*) FROM wasm_functions', dbName(url))).toBe('15');
  });

  it("adds up the nodes' invocations in /system/functions", async () => {
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([node(url, 'node-a'), node(url, 'node-b')]);
    expect((await deploy(a, 'hello', `oci:${join(EXAMPLES_OCI, 'hello')}`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await invoke(a, 'hello')).status).toBe(200);
    await eventually('B has hello', async () => (await invoke(b, 'hello')).status === 200);
    for (let i = 0; i < 4; i++) expect((await invoke(b, 'hello')).status).toBe(200);
    const countOn = async (engine: EngineProcess): Promise<number> =>
      ((await call(engine.url, 'GET', '/system/functions')).json as { name: string; invocationCount: number }[]).find((f) => f.name === 'hello')!
        .invocationCount;
    // Each node reports every 2 s and reads the others' as often: poll for the sum.
    await eventually('A counts 8', async () => (await countOn(a)) === 8, 400);
    await eventually('B counts 8', async () => (await countOn(b)) === 8, 400);
  });
});

describe('PostgreSQL store: the database goes away', () => {
  it('keeps invoking, refuses changes with 503 naming the store, answers reads, and catches up when it is back', async () => {
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([node(url, 'node-a'), node(url, 'node-b')]);
    expect((await deploy(a, 'gcd', `oci:${join(EXAMPLES_OCI, 'gcd')}`)).status).toBe(200);
    await eventually('B has gcd', async () => (await invoke(b, 'gcd', { a: 4, b: 6 })).status === 200);

    await pg.stopServer();
    try {
      for (const engine of [a, b]) {
        for (let i = 0; i < 20; i++) {
          const answer = await invoke(engine, 'gcd', { a: 12, b: 18 });
          expect(answer.status).toBe(200);
          expect(answer.json.message).toBe('6');
        }
      }
      const refused = await deploy(a, 'hello', `oci:${join(EXAMPLES_OCI, 'hello')}`);
      expect(refused.status).toBe(503);
      expect(refused.json.error.code).toBe('UNAVAILABLE');
      expect(refused.json.error.message).toContain(`127.0.0.1:${pg.port}/${dbName(url)}`);
      const deleteRefused = await call(b.url, 'POST', '/function/delete', { function_name: 'gcd' }, { json: true });
      expect(deleteRefused.status).toBe(503);
      expect(deleteRefused.json.error.code).toBe('UNAVAILABLE');
      const scaleRefused = await call(b.url, 'POST', '/system/scale-function/gcd', { serviceName: 'gcd', replicas: 2 });
      expect(scaleRefused.status).toBe(503);
      const listed = await call(b.url, 'GET', '/function/list', undefined, { json: true });
      expect(listed.status).toBe(200);
      expect(listed.text).toContain('gcd');
      expect((await call(a.url, 'POST', '/function/query', { function_name: 'gcd' }, { json: true })).status).toBe(200);
    } finally {
      await pg.startServer();
    }

    // Writes work again once the node has reconnected, and B catches up with A's change.
    await eventually('A deploys again', async () => (await deploy(a, 'hello', `oci:${join(EXAMPLES_OCI, 'hello')}`)).status === 200, 400);
    await eventually('B invokes hello', async () => (await invoke(b, 'hello')).status === 200, 400);
  });

  it('a node started while the database is down says it waits, and starts once it is back', async () => {
    const url = await pg.createDatabase();
    await pg.stopServer();
    let starting: Promise<EngineProcess> | undefined;
    let waiting: () => void = () => {};
    const saidSo = new Promise<void>((resolve) => (waiting = resolve));
    try {
      // startEngineProcess resolves only once the engine listens: meanwhile its lines are heard.
      starting = startEngineProcess({
        startTimeoutMs: 90_000,
        args: ['--store', url, '--node-name', 'late', '--workers', '1'],
        onLine: (line) => {
          if (line.includes('waiting for the function store')) waiting();
        },
      });
      starting.catch(() => undefined);
      await saidSo;
    } finally {
      await pg.startServer();
    }
    const late = await starting!;
    engines.push(late);
    expect((await call(late.url, 'GET', '/readyz')).status).toBe(200);
  });
});
