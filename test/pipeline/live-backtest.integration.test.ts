import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { BIN, killServes, startServe, until, workdir } from '../support/drover.ts';
import {
  alertView as view,
  type AlertView,
  byAlert as order,
  FLEET_RULE_FILES,
  generateFleetStream,
} from '../support/fleet-stream.ts';

/**
 * Live equals backtest: a recorded fleet stream replayed into a real `drover serve` as
 * fast as it takes it (a backlog builds, logs and metrics interleaved on the bus) must
 * give the alerts `drover backtest` gives on the same NDJSON with the same rules.
 *
 * The one defined difference is the end of the data: the backtest's time stops at the
 * last event, while live the wall clock carries the watermark on, so silences that
 * begin after the data ends (every host's heartbeat goes quiet) fire live only. Alerts
 * are compared up to the last event's time; those after it are checked to be exactly
 * such silences.
 */
const RULES = FLEET_RULE_FILES;
/**
 * Live, after the allowed lateness without an event and with nothing left on the bus,
 * the clock drives the watermark (the sources look quiet). A sender stalled that long
 * on a loaded machine would look the same and make later data late, which a backtest
 * has no notion of; 30 s keeps the replay clear of that (10 s was not, on Kafka with
 * two test files at once).
 */
const LATENESS = '30s';
const LATENESS_MS = 30_000;

afterEach(killServes);

async function liveEqualsBacktest(bus: string, env: NodeJS.ProcessEnv, rulesGroup: string) {
  // Ends five minutes ago: every event is in the past, whatever the clock-skew bound.
  const stream = generateFleetStream({
    seed: 20261202,
    start: Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000,
    minutes: 15,
  });
  expect(stream.disorderMs).toBeGreaterThan(1_000);
  expect(stream.disorderMs).toBeLessThan(LATENESS_MS);
  const dir = workdir('drover-live-backtest-', RULES);
  const data = join(dir, 'fleet.ndjson');
  writeFileSync(data, `${stream.lines.join('\n')}\n`);
  writeFileSync(
    join(dir, 'drover.yaml'),
    `stateDir: state
listen: { port: 0, statsdPort: false }
bus: ${bus}
index: { kind: none }
rules: { paths: [rules], allowedLateness: ${LATENESS} }
snapshotEvery: 1h
`,
  );

  const backtest = spawnSync(
    process.execPath,
    [BIN, 'backtest', '--rules', join(dir, 'rules'), '--data', data, '--format', 'json'].concat([
      '--lateness',
      LATENESS,
    ]),
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  expect(backtest.stderr).toMatch(/0 bad lines, 0 late events/);
  const expected = backtest.stdout
    .trim()
    .split('\n')
    .map((l) => view(JSON.parse(l) as AlertView))
    .sort(order);
  // The planted incidents are there (the comparison below is not between two empties).
  const iso = (t: number) => new Date(t).toISOString();
  expect(expected).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ rule: 'host-error-burst', key: { 'host.name': 'checkout-2' } }),
      expect.objectContaining({ rule: 'replica-silent', key: { 'host.name': 'search-3' } }),
      expect.objectContaining({ rule: 'latency-high', key: { 'host.name': 'api-1' } }),
      {
        rule: 'new-stack-trace',
        key: { 'service.name': 'search' },
        at: iso(stream.incidents.newStackTrace.at),
      },
    ]),
  );
  expect(new Set(expected.map((a) => a.rule)).size).toBe(5);

  const { url } = await startServe(join(dir, 'drover.yaml'), { env, timeoutMs: 90_000 });
  // Shipper batches, 5,000 lines or so a request, one request after another: each waits
  // for the bus to make it durable, never for the rules.
  let maxLag = 0;
  const lagOf = async () => {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const lines = metrics
      .split('\n')
      .filter((l) => l.startsWith(`drover_bus_lag_messages{group="${rulesGroup}"`));
    const held = /^drover_rules_held_events (\d+)/m.exec(metrics);
    return {
      lag: lines.length === 2 ? lines.reduce((n, l) => n + Number(l.split(' ').at(-1)), 0) : -1,
      // Events the rules read and hold in their merge (a gauge of this code; 0 without it).
      held: held ? Number(held[1]) : 0,
    };
  };
  let request: string[] = [];
  let lastSent = Date.now();
  let longestStall = 0;
  const send = async () => {
    const r = await fetch(`${url}/ingest`, { method: 'POST', body: request.join('\n') });
    expect(r.status).toBe(200);
    longestStall = Math.max(longestStall, Date.now() - lastSent);
    lastSent = Date.now();
    request = [];
    {
      const { lag, held } = await lagOf();
      maxLag = Math.max(maxLag, lag + held);
    }
  };
  for (const batch of stream.batches) {
    request.push(...batch);
    if (request.length >= 5_000) await send();
  }
  if (request.length > 0) await send();
  let last = { lag: -1, held: -1 };
  await until(
    'the rules to drain the bus',
    async () => {
      last = await lagOf();
      return last.lag === 0 && last.held === 0;
    },
    120_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (lag ${last.lag}, held ${last.held})`);
  });
  // Idle for the allowed lateness, the clock moves the watermark past the last event.
  const end = iso(stream.last);
  const alerts = await until(
    'the clock to carry the watermark past the data',
    async () => {
      const r = (await (await fetch(`${url}/v1/alerts`)).json()) as { alerts: AlertView[] };
      // Every host's heartbeat falls silent after the data; the last one's silence is due
      // ttl after its last heartbeat, which is at most 20 s before the end.
      return r.alerts.filter((a) => a.at > end).length >= 8 ? r.alerts : undefined;
    },
    90_000,
  );
  const live = alerts.map(view).sort(order);
  // Otherwise the clock legitimately took over mid-replay (see LATENESS).
  expect(longestStall).toBeLessThan(LATENESS_MS);
  console.log(
    `${bus}: ${stream.lines.length} events, backlog up to ${maxLag} messages, longest wait for a request ${longestStall} ms, ${expected.length} alerts in the data`,
  );
  expect(live.filter((a) => a.at <= end)).toEqual(expected);
  expect(new Set(live.filter((a) => a.at > end).map((a) => a.rule))).toEqual(
    new Set(['replica-silent']),
  );
}

describe('live equals backtest', () => {
  it('on the embedded bus', async () => {
    await liveEqualsBacktest('{ kind: embedded }', {}, 'drover-rules');
  }, 300_000);

  const brokers = inject('kafkaBrokers');
  it.skipIf(!brokers)(
    'on Kafka',
    async () => {
      const prefix = `lb${randomUUID().slice(0, 8)}.`;
      await liveEqualsBacktest(
        `{ kind: kafka, topicPrefix: ${prefix} }`,
        { KAFKA_BROKERS: brokers! },
        `${prefix}rules`,
      );
    },
    300_000,
  );
});
