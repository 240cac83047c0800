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
  },
});
