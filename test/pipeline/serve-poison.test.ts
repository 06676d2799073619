import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openEmbeddedBus } from '../../ingest/bus/index.ts';
import type { Event } from '../../ingest/model/index.ts';
import {
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

afterEach(killServes);

// Events ingest no longer accepts may still be on the bus: written by an older version,
// or by another producer. Neither the rules nor the indexer may stop at them.
describe('drover serve with poison on the bus', () => {
  it('dead-letters what its consumers cannot handle, and still detects and acts once', async () => {
    const dir = workdir('drover-poison-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
    const acted = join(dir, 'acted.txt');
    writeFileSync(
      join(dir, 'drover.yaml'),
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
snapshotEvery: 200ms
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s }
`,
    );
    const { url } = await startServe(join(dir, 'drover.yaml'));
    // Another process's handle on the same log, as an older version would have written it.
    const bus = openEmbeddedBus({ path: join(dir, 'state', 'bus.db'), retentionIntervalMs: 0 });
    const t = Date.now();
    // Times a Date cannot hold, as an older version let through (typed as the bus sees them).
    const poison = (ts: unknown): Event => ({
      '@timestamp': ts as number,
      'log.level': 'error',
      'host.name': 'web-9',
      message: 'poison',
    });
    await bus.publish([
      poison(1e300),
      poison('9'.repeat(400)),
      poison(null),
      { '@timestamp': t, 'log.level': 'error', 'host.name': 'web-9', message: 'fine' },
    ]);
    const body = [0, 1, 2].map((i) => errorLine('web-7', t + i)).join('\n');
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const decisions = await until(
      'an executed action',
      async () => {
        const r = (await (await fetch(`${url}/v1/actions`)).json()) as {
          decisions: Array<{ decision: string; target: string }>;
        };
        return r.decisions.length > 0 ? r.decisions : undefined;
      },
      30_000,
    );
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({ decision: 'executed', target: 'web-7' });
    expect(readFileSync(acted, 'utf8').trim()).toBe('web-7');
    // Both groups drain: nothing is redelivered forever.
    await until(
      'the consumers to drain',
      async () => {
        // A fresh handle: one knows the log's end as of its opening.
        const now = openEmbeddedBus({ path: join(dir, 'state', 'bus.db'), retentionIntervalMs: 0 });
        const lag = [now.lag('drover-rules'), now.lag('drover-indexer')];
        await now.close();
        return lag.every((l) => l.logs === 0 && l.metrics === 0) ? true : undefined;
      },
      30_000,
    );
    const reasons = bus.deadLetters().map((d) => d.reason);
    expect(reasons.length).toBeGreaterThan(0);
    for (const r of reasons)
      expect(r).toMatch(/^consumer group "drover-(rules|indexer)" at logs@\d: failed 3 times: /);
    await bus.close();
  }, 60_000);
});
