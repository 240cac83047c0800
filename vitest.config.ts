import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration files start registries, engines and worker pools; two at a time fits two cores.
    pool: 'forks',
    maxWorkers: 2,
    minWorkers: 1,
    // The integration suite's second run, against engines using the PostgreSQL store (package.json).
    globalSetup: process.env.WASM_ENGINE_TEST_STORE === 'postgresql' ? ['test/support/postgres-global-setup.ts'] : [],
  },
});
