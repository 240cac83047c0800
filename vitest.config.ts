import { defineConfig } from 'vitest/config';
import { assertPinnedNode } from './scripts/pinned-node.mjs';

// The tests, and the engines they start with process.execPath, run on the engine's own Node.js.
assertPinnedNode('the test suite');

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
