import { defineConfig } from 'vitest/config';

/**
 * Two projects, both run by `npm test`: unit tests need no server (`npm run test:unit`,
 * seconds to start); integration tests, named `*.integration.test.ts`, talk to the real
 * Kafka, Elasticsearch, moto, Prometheus and shippers that test/global-setup.ts
 * provisions (`npm run test:integration`).
 */
const shared = {
  testTimeout: 30_000,
  hookTimeout: 300_000,
  pool: 'forks',
} as const;

export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        test: {
          ...shared,
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.integration.test.ts'],
          globalSetup: ['test/build-setup.ts'],
        },
      },
      {
        test: {
          ...shared,
          name: 'integration',
          include: ['test/**/*.integration.test.ts'],
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
