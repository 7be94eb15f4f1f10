import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Drops the PostgreSQL database a test file made (server-stub's store tests run on both stores).
    setupFiles: ['server-stub/test/helpers/postgres-cleanup.ts'],
  },
});
