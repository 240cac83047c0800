/**
 * The PostgreSQL store's schema migrations and its statement bound, against real engine processes
 * and a real PostgreSQL server: an older schema is upgraded in place (its functions kept), a newer
 * one is refused with a clear message and exit code 1, engines starting at once against an empty
 * database migrate it once, and a statement past --store-timeout-ms answers 503.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SCHEMA_VERSION } from '../../src/store/postgres/index.js';
import { makeDataDir, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { EXAMPLES_OCI } from '../support/fixtures.js';
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

async function node(url: string, args: string[] = []): Promise<EngineProcess> {
  const engine = await startEngineProcess({ startTimeoutMs: 90_000, args: ['--store', url, '--workers', '1', ...args] });
  engines.push(engine);
  return engine;
}

const dbName = (url: string): string => new URL(url).pathname.slice(1);
const versions = (url: string): Promise<string> =>
  pg.sql(`SELECT string_agg(version::text, ',' ORDER BY version) FROM wasm_schema_migrations`, dbName(url));

describe('PostgreSQL store schema', () => {
  it('upgrades a database left at an older schema version and keeps its functions', async () => {
    const url = await pg.createDatabase();
    const first = await node(url);
    const deployed = await call(first.url, 'POST', '/function/deploy', { function_name: 'gcd', function_image: `oci:${join(EXAMPLES_OCI, 'gcd')}` });
    expect(deployed.status).toBe(200);
    await first.stop();
    engines.length = 0;
    // Back to schema version 1, as an engine of that version left it.
    await pg.sql('DROP TABLE wasm_invocation_counts; DELETE FROM wasm_schema_migrations WHERE version > 1', dbName(url));
    expect(await versions(url)).toBe('1');

    const upgraded = await node(url);
    expect(upgraded.output.some((line) => line.includes(`migrated the store's schema from version 1 to ${SCHEMA_VERSION}`))).toBe(true);
    expect(await versions(url)).toBe('1,2');
    const answer = await call(upgraded.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 12, b: 18 } }, { json: true });
    expect(answer.json.message).toBe('6');
  });

  it('refuses a schema newer than the engine knows, with a clear message and exit code 1', async () => {
    const url = await pg.createDatabase();
    await (await node(url)).stop();
    engines.length = 0;
    await pg.sql(`INSERT INTO wasm_schema_migrations (version, description, applied_by) VALUES (${SCHEMA_VERSION + 7}, 'from the future', 'test')`, dbName(url));
    const started = startEngineProcess({ startTimeoutMs: 90_000, args: ['--store', url, '--workers', '1'] });
    await expect(started).rejects.toThrow(/exited with 1 before listening[\s\S]*schema is version 9, newer than this engine's \(2\)/);
  });

  it("refuses a file store's data directory (its blobs would be taken for unused copies), exit code 1", async () => {
    const url = await pg.createDatabase();
    const dataDir = await makeDataDir();
    await writeFile(join(dataDir, 'functions.json'), '{"version":1,"functions":[]}\n');
    const started = startEngineProcess({ startTimeoutMs: 90_000, dataDir, args: ['--store', url, '--workers', '1'] });
    await expect(started).rejects.toThrow(/exited with 1 before listening[\s\S]*holds a file store/);
  });

  it('engines started at once against an empty database migrate it exactly once', async () => {
    const url = await pg.createDatabase();
    await Promise.all([node(url), node(url), node(url)]);
    expect(await versions(url)).toBe('1,2');
    expect(await pg.sql(`SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'wasm_%'`, dbName(url))).toBe('4');
  });

  it('answers a change 503 UNAVAILABLE when a statement runs past --store-timeout-ms, and invocations go on', async () => {
    const url = await pg.createDatabase();
    const engine = await node(url, ['--store-timeout-ms', '300']);
    // 300 ms a statement is short for a busy machine: the deploy is tried again while it is refused for that.
    let deployed = 0;
    await eventually(async () => {
      deployed = (await call(engine.url, 'POST', '/function/deploy', { function_name: 'gcd', function_image: `oci:${join(EXAMPLES_OCI, 'gcd')}` })).status;
      return deployed !== 503;
    });
    expect(deployed).toBe(200);
    // Another session holds the functions table locked for a few seconds.
    const holder = pg.sql('LOCK TABLE wasm_functions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4)', dbName(url));
    try {
      for (let i = 0; i < 200; i++) {
        const held = await pg.sql(`SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'wasm_functions' AND l.mode = 'AccessExclusiveLock' AND l.granted`, dbName(url));
        if (held === '1') break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const refused = await call(engine.url, 'POST', '/function/delete', { function_name: 'gcd' }, { json: true });
      expect(refused.status).toBe(503);
      expect(refused.json.error.code).toBe('UNAVAILABLE');
      expect(refused.json.error.message).toContain('did not answer within 300 ms');
      const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: 'gcd', args: { a: 12, b: 18 } }, { json: true });
      expect(answer.json.message).toBe('6');
    } finally {
      await holder;
    }
    // Once the lock is gone, changes are answered again: the delete refused above did not happen
    // (a 404 would say it had). Waited for, not timed: the statements that queued behind the lock
    // may still hold the pool for a moment past the 300 ms this engine allows each.
    let status = 0;
    await eventually(async () => {
      status = (await call(engine.url, 'POST', '/function/delete', { function_name: 'gcd' })).status;
      return status !== 503;
    });
    expect(status).toBe(200);
  });

  it('uses at most 4 pooled connections and one listening, however many changes wait for the database', async () => {
    const url = await pg.createDatabase();
    const engine = await node(url, ['--node-name', 'pooled']);
    const db = dbName(url);
    const holder = pg.sql('LOCK TABLE wasm_functions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5)', db);
    let deploys: Promise<number>[] = [];
    try {
      await eventually(async () => (await pg.sql(`SELECT count(*) FROM pg_locks WHERE relation = 'wasm_functions'::regclass AND granted`, db)) !== '0');
      deploys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((name) =>
        call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: `oci:${join(EXAMPLES_OCI, 'gcd')}` }).then((a) => a.status),
      );
      const ours = `FROM pg_stat_activity WHERE datname = '${db}' AND application_name = 'wasm-engine pooled'`;
      // Four changes hold the four connections, waiting for the lock; the other four wait for a connection.
      await eventually(async () => (await pg.sql(`SELECT count(*) ${ours} AND wait_event_type = 'Lock'`, db)) === '4');
      expect(Number(await pg.sql(`SELECT count(*) ${ours}`, db))).toBeLessThanOrEqual(5);
    } finally {
      await holder;
    }
    expect(await Promise.all(deploys)).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
  });
});

async function eventually(check: () => Promise<boolean>, tries = 400): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('never happened');
}
