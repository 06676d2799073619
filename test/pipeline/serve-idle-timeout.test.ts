import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killServes, startServe, until, workdir } from '../support/drover.ts';

afterEach(killServes);

const RULE = `name: backfill-errors
type: frequency
query_key: host.name
num_events: 1000
timeframe: 1m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`;

const log = (t: number, i: number) =>
  JSON.stringify({
    '@timestamp': new Date(t).toISOString(),
    message: `backfill ${i}`,
    'service.name': 'web',
    'host.name': 'web-1',
    'log.level': 'error',
  });

const metric = (t: number) =>
  JSON.stringify({
    '@timestamp': new Date(t).toISOString(),
    'service.name': 'web',
    'host.name': 'web-1',
    'metric.name': 'cpu',
    'metric.value': 0.5,
  });

/** One sample of a metric family from Prometheus text (the sum over its label sets). */
function sample(text: string, name: string, labels = ''): number {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      if (line.includes(labels)) {
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
        seen = true;
      }
  return seen ? sum : Number.NaN;
}

/**
 * A backfill, as shippers send one after an outage: faster than real time, the logs and
 * the metrics in separate requests. The logs' input is caught up and quiet for 2 s when
 * the metrics bring samples 100-200 s ahead of them; the logs' next request is 50-60 s.
 * Whether those logs are late is what `rules.idleTimeout` decides.
 */
async function backfill(idleTimeout: string): Promise<number> {
  const dir = workdir('drover-idle-', { 'rules/backfill.yaml': RULE });
  // allowedLateness 30 s: the clock does not drive the watermark during the test (it
  // would after 30 s without events), so only the merge's order decides lateness.
  writeFileSync(
    join(dir, 'drover.yaml'),
    `stateDir: state
listen: { port: 0, statsdPort: false }
index: { kind: none }
rules: { paths: [rules], allowedLateness: 30s, idleTimeout: ${idleTimeout} }
snapshotEvery: 1h
`,
  );
  const { url } = await startServe(join(dir, 'drover.yaml'));
  const post = async (lines: string[]) => {
    const r = await fetch(`${url}/ingest`, { method: 'POST', body: `${lines.join('\n')}\n` });
    expect(r.status).toBe(200);
  };
  const metrics = async () => (await fetch(`${url}/metrics`)).text();
  const base = Date.now() - 10 * 60_000;
  const span = (from: number, to: number, step: number) => {
    const out: number[] = [];
    for (let t = from; t < to; t += step) out.push(base + t);
    return out;
  };
  await post(span(0, 5_000, 100).map(log));
  await post(span(0, 5_000, 1_000).map(metric));
  // Both inputs processed and caught up.
  await until('the first requests processed', async () => {
    const m = await metrics();
    return sample(m, 'drover_bus_lag_messages', 'rules') === 0;
  });
  await new Promise((r) => setTimeout(r, 2_000));
  await post(span(100_000, 200_000, 1_000).map(metric));
  await new Promise((r) => setTimeout(r, 300));
  await post(span(50_000, 60_000, 100).map((t, i) => log(t, i)));
  await until('the backfill processed', async () => {
    const m = await metrics();
    return (
      sample(m, 'drover_bus_lag_messages', 'rules') === 0 &&
      sample(m, 'drover_rules_held_events') === 0
    );
  });
  // The engine's counts reach the counter on the next tick (1 s).
  await new Promise((r) => setTimeout(r, 1_500));
  return sample(await metrics(), 'drover_rules_late_events_total');
}

describe('rules.idleTimeout', () => {
  it('a quiet input holds the others for as long as configured: a backfill stays on time', async () => {
    expect(await backfill('10s')).toBe(0);
  }, 60_000);

  it('past the timeout the others run ahead, and the quiet input’s next events are late', async () => {
    // The same backfill with the timeout shorter than the quiet spell: all 100 logs of
    // the last request are behind the metrics' watermark.
    expect(await backfill('1s')).toBe(100);
  }, 60_000);
});
