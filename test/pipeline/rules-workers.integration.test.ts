import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  BIN,
  killServes,
  type Served,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';
import {
  alertView as view,
  type AlertView,
  byAlert as order,
  FLEET_RULE_FILES,
  FLEET_SERVICES,
  generateFleetStream,
} from '../support/fleet-stream.ts';

/**
 * Rules workers on Kafka (docs/scale-out.md): several `drover serve --roles
 * rules,actions` processes from one configuration share the rules group's six tasks;
 * together they give, alert for alert, what `drover backtest` gives on the same events.
 * Halfway through, the whole group is stopped and a smaller one started with fresh
 * state directories: it carries on from the changelog alone.
 *
 * The stream is two fleet streams (six services, eighteen hosts), the second's services
 * and hosts renamed, so the services spread over the six partitions. As in
 * live-backtest.integration.test.ts the alerts are compared up to the last event: after
 * it the clock carries the watermark on and fires silences a backtest has no notion of.
 */
const LATENESS = '30s';
const TASKS = 6;

const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

function renamed(lines: string[], suffix: string): string[] {
  let out = lines;
  for (const s of FLEET_SERVICES)
    out = out.map((l) =>
      l
        .replaceAll(`"service.name":"${s}"`, `"service.name":"${s}${suffix}"`)
        .replaceAll(`"name":"${s}"`, `"name":"${s}${suffix}"`)
        .replace(new RegExp(`"(host\\.name|hostname)":"${s}-`, 'g'), `"$1":"${s}${suffix}-`),
    );
  return out;
}

interface Metrics {
  tasks: number;
  lag: number;
  held: number;
}

async function metricsOf(w: Served): Promise<Metrics> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const one = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  const lag = text
    .split('\n')
    .filter((l) => l.startsWith('drover_bus_lag_messages{group="') && l.includes('rules"'))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  return { tasks: one('drover_rules_tasks_assigned'), lag, held: one('drover_rules_held_events') };
}

/** Every worker assigned in one generation, the tasks all held. */
async function settled(workers: Served[]): Promise<void> {
  await until(
    `${workers.length} workers to share the ${TASKS} tasks`,
    async () => {
      const generations = workers.map((w) => {
        const lines = w
          .log()
          .split('\n')
          .filter((l) => l.includes('"msg":"rules tasks assigned"'));
        const m = /"generation":(\d+)/.exec(lines.at(-1) ?? '');
        return m ? Number(m[1]) : -1;
      });
      if (generations.some((g) => g !== generations[0] || g < 0)) return false;
      const held = await Promise.all(workers.map(metricsOf));
      return held.reduce((n, m) => n + m.tasks, 0) === TASKS && held.every((m) => m.tasks > 0);
    },
    90_000,
  );
}

async function drained(workers: Served[]): Promise<void> {
  await until(
    'the workers to process everything sent',
    async () => {
      const ms = await Promise.all(workers.map(metricsOf));
      return ms.every((m) => m.lag === 0 && m.held === 0);
    },
    120_000,
  );
}

async function alertsOf(
  workers: Served[],
): Promise<Array<AlertView & { id: string; task?: { id: number } }>> {
  const all = [];
  for (const w of workers) {
    const r = (await (await fetch(`${w.url}/v1/alerts`)).json()) as {
      alerts: Array<AlertView & { id: string; task?: { id: number } }>;
    };
    all.push(...r.alerts);
  }
  return all;
}

describe.skipIf(!brokers)(`rules workers on Kafka${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('three workers, then two from the changelog alone, give the backtest alert for alert', async () => {
    const start = Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000;
    const a = generateFleetStream({ seed: 20261203, start, minutes: 15 });
    const b = generateFleetStream({ seed: 20261204, start, minutes: 15 });
    // Interleaved shipper batch by shipper batch, as two fleets sending at once.
    const batches: string[][] = [];
    for (let i = 0; i < Math.max(a.batches.length, b.batches.length); i++) {
      if (a.batches[i]) batches.push(a.batches[i]!);
      if (b.batches[i]) batches.push(renamed(b.batches[i]!, 'x'));
    }
    const lines = batches.flat();
    const last = Math.max(a.last, b.last);

    const prefix = `rw${randomUUID().slice(0, 8)}.`;
    const dir = workdir('drover-rules-workers-', FLEET_RULE_FILES);
    const data = join(dir, 'fleet.ndjson');
    writeFileSync(data, `${lines.join('\n')}\n`);
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix} }
index: { kind: none }
rules: { paths: [rules], allowedLateness: ${LATENESS} }
snapshotEvery: 2s
`,
    );
    const backtest = spawnSync(
      process.execPath,
      [
        BIN,
        'backtest',
        '--rules',
        join(dir, 'rules'),
        '--data',
        data,
        '--format',
        'json',
        '--lateness',
        LATENESS,
      ],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    );
    expect(backtest.stderr).toMatch(/0 bad lines, 0 late events/);
    const expected = backtest.stdout
      .trim()
      .split('\n')
      .map((l) => view(JSON.parse(l) as AlertView))
      .sort(order);
    expect(expected.length).toBeGreaterThan(10);

    // Six partitions per topic (Drover creates three by default).
    const admin = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: ['logs', 'metrics', 'deadletter'].map((t) => ({
        topic: `${prefix}${t}`,
        numPartitions: TASKS,
      })),
    });
    await admin.disconnect();

    const env = { KAFKA_BROKERS: brokers! };
    let n = 0;
    const worker = () =>
      startServe(config, {
        env: { ...env, DROVER_STATE_DIR: join(dir, `state-${n++}`) },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
    const ingest = await startServe(config, {
      env: { ...env, DROVER_STATE_DIR: join(dir, 'state-ingest') },
      args: ['--roles', 'ingest'],
      timeoutMs: 90_000,
    });
    const send = async (part: string[][]) => {
      let request: string[] = [];
      for (const batch of part) {
        request.push(...batch);
        if (request.length >= 5_000) {
          expect(
            (await fetch(`${ingest.url}/ingest`, { method: 'POST', body: request.join('\n') }))
              .status,
          ).toBe(200);
          request = [];
        }
      }
      if (request.length > 0)
        expect(
          (await fetch(`${ingest.url}/ingest`, { method: 'POST', body: request.join('\n') }))
            .status,
        ).toBe(200);
    };

    const first = await Promise.all([worker(), worker(), worker()]);
    await settled(first);
    const half = Math.floor(batches.length / 2);
    await send(batches.slice(0, half));
    await drained(first);
    const before = await alertsOf(first);
    for (const w of first) expect(await stopServe(w)).toBe(0);

    // A new group with new state directories: the state comes from the changelog.
    const second = await Promise.all([worker(), worker()]);
    await settled(second);
    await send(batches.slice(half));
    await drained(second);
    const end = new Date(last).toISOString();
    await until(
      'the clock to carry the watermark past the data',
      async () => (await alertsOf(second)).filter((x) => x.at > end).length >= 8,
      90_000,
    );
    const after = await alertsOf(second);
    const live = [...before, ...after].filter((x) => x.at <= end);
    console.log(
      `${lines.length} events, ${expected.length} alerts in the data; before the restart ${before.length}, after ${after.filter((x) => x.at <= end).length}`,
    );
    // Alert for alert: none missing, none twice.
    expect(live.map(view).sort(order)).toEqual(expected);
    expect(new Set(live.map((x) => x.id)).size).toBe(live.length);
    expect(live.every((x) => x.task !== undefined && x.task.id >= 0 && x.task.id < TASKS)).toBe(
      true,
    );
    await stopServe(ingest);
    for (const w of second) await stopServe(w);
  }, 240_000);
});
