import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'clients/**'],
    // Tests that start `rasterd serve` wait for its maps to load.
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
