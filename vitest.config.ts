import { availableParallelism } from 'node:os';
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

/**
 * Test files run at least two at a time. vitest's default for a run is one worker fewer
 * than the cores: one on a 2-core machine (CI's), where the integration files, which
 * mostly wait (session timeouts, rebalances, child processes starting, servers answering),
 * ran one after another. Two at a time on 2 cores, 2026-12-06: the 26 Kafka and
 * Elasticsearch files 1,175 s -> 631 s, each within 15% of its time alone. Files share the
 * provisioned servers and nothing else: each makes its own topics, indices, groups, state
 * directories and ports.
 */
const maxWorkers = Math.max(2, availableParallelism() - 1);

export default defineConfig({
  test: {
    maxWorkers,
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
