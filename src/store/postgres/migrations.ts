/**
 * The PostgreSQL store's schema, as versioned migrations applied at start. Every engine that
 * starts runs them under one transaction-scoped advisory lock, so engines starting at once against
 * an empty database apply each migration exactly once; the others wait for the lock and find the
 * schema up to date. An engine refuses a schema newer than it knows: it cannot tell what a later
 * version changed. (docs/postgres-store.md describes the tables.)
 */
import type pg from 'pg';
import type { PoolClient } from 'pg';
import { EngineError } from '../../errors.js';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Never edit a migration once released: add the next one. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'functions and module blobs',
    sql: `
      CREATE TABLE wasm_blobs (
        digest text PRIMARY KEY CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
        size bigint NOT NULL,
        bytes bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE SEQUENCE wasm_function_revision;
      CREATE TABLE wasm_functions (
        name text PRIMARY KEY,
        digest text NOT NULL REFERENCES wasm_blobs (digest),
        record jsonb NOT NULL,
        revision bigint NOT NULL DEFAULT nextval('wasm_function_revision'),
        updated_at timestamptz NOT NULL DEFAULT now(),
        updated_by text NOT NULL
      );
      CREATE INDEX wasm_functions_digest ON wasm_functions (digest);
    `,
  },
  {
    version: 2,
    description: 'invocation counts per function and node',
    sql: `
      CREATE TABLE wasm_invocation_counts (
        name text NOT NULL REFERENCES wasm_functions (name) ON DELETE CASCADE,
        node text NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (name, node)
      );
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Any constant will do, as long as every engine uses the same: it names "the migration". */
const MIGRATION_LOCK = 0x5761_736d; // 'Wasm'

/** How long a start waits for another engine's migration, and a migration may run. */
const MIGRATION_TIMEOUT_MS = 120_000;

const MIGRATIONS_TABLE = `
  CREATE TABLE IF NOT EXISTS wasm_schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
  )`;

export interface MigrationResult {
  from: number;
  to: number;
}

/**
 * Brings the schema to SCHEMA_VERSION in one transaction (PostgreSQL's DDL is transactional: a
 * failed migration leaves the previous version whole). Throws INTERNAL, with what to do, when the
 * database's schema is newer than this engine's.
 */
export async function migrate(client: PoolClient, appliedBy: string, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  const latest = migrations[migrations.length - 1]!.version;
  // Waiting for another engine's migration may take longer than one ordinary statement: the
  // server's bound and the client's are raised together for this transaction (pg reads a query's
  // own query_timeout, which its type declarations leave out: hence the cast).
  const long = (text: string, values: unknown[] = []): Promise<unknown> => client.query({ text, values, query_timeout: MIGRATION_TIMEOUT_MS + 5_000 } as pg.QueryConfig);
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
    await long('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(MIGRATIONS_TABLE);
    const { rows } = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM wasm_schema_migrations');
    const from = rows[0]?.version ?? 0;
    if (from > latest) {
      throw new EngineError(
        'INTERNAL',
        `the database's schema is version ${from}, newer than this engine's (${latest}): a newer engine migrated it; ` +
          `run that version of the engine (or a later one), or use another database`,
      );
    }
    for (const migration of migrations) {
      if (migration.version <= from) continue;
      await long(migration.sql);
      await client.query('INSERT INTO wasm_schema_migrations (version, description, applied_by) VALUES ($1, $2, $3)', [
        migration.version,
        migration.description,
        appliedBy,
      ]);
    }
    await client.query('COMMIT');
    return { from, to: Math.max(from, latest) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
