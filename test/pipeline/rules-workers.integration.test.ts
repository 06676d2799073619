import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { GLOBAL_TASK } from '../../pipeline/rules-tasks.ts';
import { killServes, startServe, stopServe, until, workdir } from '../support/drover.ts';
import { alertView as view, byAlert as order, FLEET_RULE_FILES } from '../support/fleet-stream.ts';
import {
  alertsOf,
  backtestAlerts,
  createTopics,
  drained,
  globalOwner,
  LATENESS,
  send,
  settled,
  TASKS,
  twoFleets,
} from '../support/rules-workers.ts';

/**
 * Rules workers on Kafka (docs/scale-out.md): several `drover serve --roles
 * rules,actions` processes from one configuration share the rules group's six tasks;
 * together they give, alert for alert, what `drover backtest` gives on the same events.
 * Halfway through, the whole group is stopped and a smaller one started with fresh
 * state directories: it carries on from the changelog alone.
 *
 * As in live-backtest.integration.test.ts the alerts are compared up to the last event:
 * after it the clock carries the watermark on and fires silences a backtest has no
 * notion of.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

describe.skipIf(!brokers)(`rules workers on Kafka${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('three workers, then two from the changelog alone, give the backtest alert for alert', async () => {
    const { batches, lines, last } = twoFleets(
      Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000,
    );
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
rules: { paths: [rules], allowedLateness: ${LATENESS}, idleTimeout: 5s }
snapshotEvery: 2s
`,
    );
    // Each phase logged with its time, so that a run that outlasts the test names its phase.
    const t0 = Date.now();
    const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const v = await fn();
      console.log(`${((Date.now() - t0) / 1_000).toFixed(1)} s: ${what}`);
      return v;
    };
    const backtest = backtestAlerts(join(dir, 'rules'), data);
    expect(backtest.stderr).toMatch(/0 bad lines, 0 late events/);
    const expected = backtest.alerts;
    expect(expected.length).toBeGreaterThan(10);
    await step('topics created', () => createTopics(brokers!, prefix));

    const env = { KAFKA_BROKERS: brokers! };
    let n = 0;
    const worker = () =>
      startServe(config, {
        env: { ...env, DROVER_STATE_DIR: join(dir, `state-${n++}`) },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
    const ingest = await step('ingest started', () =>
      startServe(config, {
        env: { ...env, DROVER_STATE_DIR: join(dir, 'state-ingest') },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      }),
    );

    const first = await step('three workers started', () =>
      Promise.all([worker(), worker(), worker()]),
    );
    await step('three workers assigned', () => settled(first));
    // The host.name rules' task too (a group of its own, which may settle later).
    await step('the global task held', () => globalOwner(first));
    const half = Math.floor(batches.length / 2);
    await step('first half sent', () => send(ingest.url, batches.slice(0, half)));
    await step('first half processed', () => drained(first));
    const before = await alertsOf(first);
    await step('three workers stopped', async () => {
      for (const w of first) expect(await stopServe(w)).toBe(0);
    });

    // A new group with new state directories: the state comes from the changelog.
    const second = await step('two workers started', () => Promise.all([worker(), worker()]));
    await step('two workers assigned', () => settled(second));
    await step('the global task held', () => globalOwner(second));
    await step('second half sent', () => send(ingest.url, batches.slice(half)));
    await step('second half processed', () => drained(second));
    const end = new Date(last).toISOString();
    await step('watermark past the data', () =>
      until(
        'the clock to carry the watermark past the data',
        async () => (await alertsOf(second)).filter((x) => x.at > end).length >= 8,
        90_000,
      ),
    );
    const after = await alertsOf(second);
    const live = [...before, ...after].filter((x) => x.at <= end);
    console.log(
      `${lines.length} events, ${expected.length} alerts in the data; before the restart ${before.length}, after ${after.filter((x) => x.at <= end).length}`,
    );
    // Alert for alert: none missing, none twice.
    expect(live.map(view).sort(order)).toEqual(expected);
    expect(new Set(live.map((x) => x.id)).size).toBe(live.length);
    // A partition task's alerts, or the global task's (the host.name rules: by default
    // only service.name follows the partitioning).
    expect(
      live.every(
        (x) =>
          x.task !== undefined &&
          ((x.task.id >= 0 && x.task.id < TASKS) || x.task.id === GLOBAL_TASK),
      ),
    ).toBe(true);
    expect(live.some((x) => x.task?.id === GLOBAL_TASK)).toBe(true);
    await stopServe(ingest);
    for (const w of second) await stopServe(w);
    // Each phase has its bound (90 s for a group to settle, 120 s to drain, 45 s per stop):
    // the test's own is above the sum of the usual times with room for a loaded machine,
    // so that a phase that hangs fails by name.
  }, 420_000);
});
