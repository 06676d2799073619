import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/event.ts';
import { openEmbeddedBus } from '../../ingest/bus/index.ts';
import { killServes, startServe, until, workdir } from '../support/drover.ts';

afterEach(killServes);

/** A heartbeat every 58 s: never silent for the 60 s ttl while the stream lasts. */
const HEARTBEAT_RULE = `name: heartbeat-silent
type: expiry
query_key: host.name
ttl: 60s
realert: 0s
filter: { all: [ { fact: service.name, operator: equal, value: beat } ] }
`;

interface AlertView {
  rule: string;
  key: Record<string, unknown>;
  at: string;
}

describe('drover serve under a backlog', () => {
  it('merges logs and metrics in event time: an expiry inside a 58 s gap does not fire', async () => {
    const dir = workdir('drover-backlog-', { 'rules/beat.yaml': HEARTBEAT_RULE });
    writeFileSync(
      join(dir, 'drover.yaml'),
      `stateDir: state
listen: { port: 0, statsdPort: false }
index: { kind: none }
rules: { paths: [rules], allowedLateness: 2s }
snapshotEvery: 1h
`,
    );
    // The backlog is on the bus before drover starts, as after a restart: 10 minutes of
    // logs at 20 a second (1,000 logs span 50 s) and of metrics at one a second (1,000
    // metrics span the whole stream), the heartbeats among the logs.
    const start = Date.now() - 30 * 60_000;
    const minutes = 10;
    const events: Event[] = [];
    const beats: number[] = [];
    for (let ms = 0; ms < minutes * 60_000; ms += 50) {
      const t = start + ms;
      if (ms % 58_000 === 0) {
        beats.push(t);
        events.push({
          '@timestamp': t,
          message: 'beat',
          'service.name': 'beat',
          'host.name': 'beat-1',
          'log.level': 'info',
        });
      } else {
        events.push({
          '@timestamp': t,
          message: 'GET /',
          'service.name': 'web',
          'host.name': 'web-1',
          'log.level': 'info',
        });
      }
      if (ms % 1_000 === 0)
        events.push({
          '@timestamp': t,
          'service.name': 'web',
          'host.name': 'web-1',
          'metric.name': 'cpu',
          'metric.value': 0.5,
        });
    }
    mkdirSync(join(dir, 'state'));
    const bus = openEmbeddedBus({ path: join(dir, 'state', 'bus.db'), retentionIntervalMs: 0 });
    const published = await bus.publish(events);
    expect(published.accepted).toHaveLength(events.length);
    await bus.close();

    const { url } = await startServe(join(dir, 'drover.yaml'));
    // Once the backlog is processed the clock takes over, and the one silence there is,
    // after the last heartbeat, fires.
    const alerts = await until(
      'the silence after the last heartbeat',
      async () => {
        const r = (await (await fetch(`${url}/v1/alerts`)).json()) as { alerts: AlertView[] };
        const metrics = await (await fetch(`${url}/metrics`)).text();
        const lag = [
          ...metrics.matchAll(/drover_bus_lag_messages\{group="drover-rules"[^}]*\} (\d+)/g),
        ];
        const drained = lag.length === 2 && lag.every((m) => m[1] === '0');
        return drained &&
          r.alerts.some((a) => a.at === new Date(beats.at(-1)! + 60_000).toISOString())
          ? r.alerts
          : undefined;
      },
      90_000,
    );
    expect(alerts.map((a) => ({ rule: a.rule, key: a.key, at: a.at }))).toEqual([
      {
        rule: 'heartbeat-silent',
        key: { 'host.name': 'beat-1' },
        at: new Date(beats.at(-1)! + 60_000).toISOString(),
      },
    ]);
  }, 120_000);
});
