import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { killServes, stopServe, until } from '../support/drover.ts';
import { alertView as view, byAlert as order } from '../support/fleet-stream.ts';
import {
  actingFleet,
  alertsOf,
  backtestAlerts,
  createTopics,
  kafkaRoles,
  drained,
  metricsOf,
  send,
  settled,
  type WorkerAlert,
} from '../support/rules-workers.ts';

/**
 * A rules worker killed with SIGKILL mid-stream and another joining (docs/scale-out.md):
 * the killed worker's tasks move once its session times out, and are replayed from the
 * start (no periodic snapshot is taken here), so every alert it fired fires again with
 * the same id. No alert is lost (the alerts of all three, by id, equal the backtest's up
 * to the last event) and no action runs twice (the journal the workers share, and the
 * adapter's own record).
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

describe.skipIf(!brokers)(
  `a rules worker killed on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('SIGKILL mid-stream, another joins: no alert lost, no action run twice', async () => {
      // partitionFields with host.name (this fleet's hosts are not shared between
      // services): the host.name rules stay in the partition tasks this test moves; the
      // global task's takeover is rules-workers-global's.
      const { mark, batches, lines, last, prefix, dir, data, acted, journal, config } = actingFleet(
        {
          tag: 'rk',
          name: 'kill',
          acting: ['rules/host-error-burst.yaml', 'rules/latency-high.yaml'],
          bus: 'sessionTimeout: 6s',
          rules: 'partitionFields: [service.name, host.name], idleTimeout: 5s',
        },
      );
      const expected = backtestAlerts(join(dir, 'rules'), data).alerts;
      await createTopics(brokers!, prefix);

      const { worker, ingest: startIngest } = kafkaRoles(config, dir, brokers!);
      const ingest = await startIngest();
      const [a, b] = await Promise.all([worker(), worker()]);
      await settled([a, b]);
      const part = Math.floor((batches.length * 2) / 3);
      await send(ingest.url, batches.slice(0, part));
      await drained([a, b]);
      const fromB = await alertsOf([b]);
      b.child.kill('SIGKILL');
      await new Promise((r) => b.child.once('exit', r));
      mark('B killed');

      // The rest is sent at once, while B's tasks wait for its session to time out: a
      // task A keeps must not go quiet for longer than the lateness before it (its clock
      // would carry its watermark past these backfilled events, which are minutes old).
      // C joins; the group rebalances once B's session (6 s here) has timed out.
      const [c] = await Promise.all([worker(), send(ingest.url, batches.slice(part))]);
      mark('the rest sent, C started');
      await settled([a, c]);
      mark('A and C assigned');
      await drained([a, c]);
      const end = new Date(last).toISOString();
      await until(
        'the clock to carry the watermark past the data',
        async () => (await alertsOf([a, c])).filter((x) => x.at > end).length >= 8,
        90_000,
      );
      mark('the clock took over');
      const all = [...fromB, ...(await alertsOf([a, c]))];
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      const live = [...byId.values()].filter((x) => x.at <= end);
      const replayed = (await metricsOf(c)).tasks;
      const late = (await Promise.all([a, c].map(metricsOf))).map((m) => m.late);
      console.log(`late events: A ${late[0]}, C ${late[1]}`);
      // None late: a task that went quiet longer than the lateness before the rest came
      // would have found these minutes-old events behind its clock-driven watermark.
      expect(late).toEqual([0, 0]);
      console.log(
        `${lines.length} events, ${expected.length} alerts in the data; B fired ${fromB.length} before the kill; alerts seen ${all.length}, distinct ${byId.size}; C holds ${replayed} tasks`,
      );
      expect(live.map(view).sort(order)).toEqual(expected);
      // B's alerts fired again on C, with the same ids.
      expect(all.length).toBeGreaterThan(byId.size);

      await stopServe(a);
      await stopServe(c);
      await stopServe(ingest);
      const store = openActionStore(journal);
      const decisions = store.list({ limit: 10_000 });
      store.close();
      const executed = decisions.filter((d) => d.decision === 'executed');
      expect(executed.length).toBeGreaterThan(0);
      // Each action once: one executed entry per id, and as many runs as entries.
      expect(new Set(executed.map((d) => d.id)).size).toBe(executed.length);
      expect(existsSync(acted)).toBe(true);
      expect(readFileSync(acted, 'utf8').trim().split('\n')).toHaveLength(executed.length);
      // The replays were turned away by their claims.
      expect(decisions.some((d) => d.decision === 'suppressed' && d.guard === 'idempotency')).toBe(
        true,
      );
    }, 300_000);
  },
);
