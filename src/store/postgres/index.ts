export { PostgresFunctionStore, storeLabel, DEFAULT_TIMINGS, POOL_SIZE, CHANGES_CHANNEL } from './postgres-store.js';
export type { PostgresStoreOptions, PostgresStoreTimings } from './postgres-store.js';
export { MIGRATIONS, SCHEMA_VERSION, migrate } from './migrations.js';
