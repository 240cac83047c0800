/** The test PostgreSQL server itself: starts, serves SQL, stops and starts again on its port, survives a kill. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type RunningPostgres } from '../support/postgres.js';

describe('test PostgreSQL server', () => {
  let pg: RunningPostgres;
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(async () => {
    await pg?.stop();
  });

  it('runs SQL in a fresh database, and keeps it across a stop and a start on the same port', async () => {
    const url = await pg.createDatabase();
    const db = new URL(url).pathname.slice(1);
    await pg.sql('CREATE TABLE t (x int); INSERT INTO t VALUES (42)', db);
    expect(await pg.sql('SELECT x FROM t', db)).toBe('42');
    await pg.stopServer();
    expect(pg.running()).toBe(false);
    await expect(pg.sql('SELECT 1')).rejects.toThrow();
    await pg.startServer();
    expect(await pg.sql('SELECT x FROM t', db)).toBe('42');
  });

  it('recovers after its postmaster is killed', async () => {
    await pg.killServer();
    await expect(pg.sql('SELECT 1')).rejects.toThrow();
    await pg.startServer();
    expect(await pg.sql('SELECT 1')).toBe('1');
  });
});
