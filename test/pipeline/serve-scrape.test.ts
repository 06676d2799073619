import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../pipeline/config.ts';
import { Pipeline } from '../../pipeline/serve.ts';
import type { Engine } from '../../rules/index.ts';
import { workdir } from '../support/drover.ts';

const PER_HOST = `name: per-host
type: frequency
query_key: host.name
num_events: 1000000
timeframe: 10m
`;

const NEW_HOST = `name: new-host
type: new_term
fields: host.name
`;

describe('drover serve: a metrics scrape', () => {
  it('counts the rules’ keys without walking them', async () => {
    // A scrape every few seconds walked every key for its bytes (stats()): 20-70 ms on the
    // loop at 1.1 M keys. drover_rule_keys needs only the counts.
    const dir = workdir('drover-scrape-', {
      'rules/per-host.yaml': PER_HOST,
      'rules/new-host.yaml': NEW_HOST,
      'drover.yaml': `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
`,
    });
    const pipeline = new Pipeline(loadConfig(join(dir, 'drover.yaml')), pino({ level: 'silent' }));
    await pipeline.start();
    try {
      const internals = pipeline as unknown as { engine: Engine; scrape(): Promise<string> };
      const engine = internals.engine;
      const t = Date.now() - 60_000;
      for (let i = 0; i < 500; i++)
        engine.process({ '@timestamp': t + i, 'host.name': `h${i}`, message: 'x' });
      const runners = (
        engine as unknown as { compiled: Array<{ runner: { keyBytes(k: unknown): number } }> }
      ).compiled.map((c) => c.runner);
      let walked = 0;
      for (const runner of runners) {
        const keyBytes = runner.keyBytes.bind(runner);
        runner.keyBytes = (k: unknown) => {
          walked++;
          return keyBytes(k);
        };
      }
      const text = await internals.scrape();
      expect(text).toMatch(/drover_rule_keys\{rule="per-host"\} 500/);
      expect(text).toMatch(/drover_rule_keys\{rule="new-host"\} 500/);
      expect(walked).toBe(0);
      // What /v1/rules answers still has the bytes (and walks for them).
      const stats = engine.stats();
      expect(stats.find((s) => s.rule === 'per-host')?.bytes).toBeGreaterThan(0);
      expect(walked).toBeGreaterThan(0);
    } finally {
      await pipeline.stop();
    }
  });
});
