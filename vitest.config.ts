import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two files at once on the 2-core CI box: most of the slow files wait on child processes,
    // chDB and polls rather than compute (vitest's default there is one).
    maxWorkers: 2,
  },
});
