/**
 * vitest globalSetup for the integration suite's PostgreSQL run (WASM_ENGINE_TEST_STORE=postgresql):
 * one real server for the whole run; each engine the tests start gets a fresh database on it
 * (engine-process.ts). The server's URL reaches the test workers through the environment.
 */
import { startPostgres, type RunningPostgres } from './postgres.js';

let server: RunningPostgres | undefined;

export async function setup(): Promise<void> {
  server = await startPostgres();
  process.env.WASM_ENGINE_TEST_PG_URL = server.url();
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
