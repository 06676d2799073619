import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { killServes, stopServe, until } from '../support/drover.ts';
import { alertView as view, byAlert as order } from '../support/fleet-stream.ts';
import {
  actingFleet,
  alertsOf,
  assignments,
  backtestAlerts,
  createTopics,
  kafkaRoles,
  drained,
  logLines,
  metricsOf,
  send,
  settled,
  settledPast,
  type WorkerAlert,
} from '../support/rules-workers.ts';

/**
 * A rules worker paused with SIGSTOP past its session timeout, mid-stream, then resumed
 * with SIGCONT (docs/scale-out.md, "Stalls"): the others take its tasks once its session
 * times out; when it resumes, a fetch answered while it was stopped and its clock's tick
 * would fire alerts for tasks it no longer holds. The fence holds them until its
 * membership is confirmed (it is not: it was removed), and at its next assignment drops
 * them. No alert is lost (the alerts of all three, by id, equal the backtest's up to the
 * last event), no action runs twice (the journal the workers share, and the adapter's own
 * record), and every alert the resumed worker emits belongs to a task it holds in a
 * generation after the stop.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

const SESSION_TIMEOUT_MS = 6_000;

describe.skipIf(!brokers)(
  `a rules worker stopped on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('SIGSTOP past the session timeout, then SIGCONT: nothing lost, nothing twice, nothing stale', async () => {
      // partitionFields with host.name (this fleet's hosts are not shared between
      // services): the host.name rules stay in the partition tasks this test moves; the
      // global task's takeover is rules-workers-global's.
      const { mark, batches, lines, last, prefix, dir, data, acted, journal, config } = actingFleet(
        {
          tag: 'rs',
          name: 'stop',
          acting: ['rules/host-error-burst.yaml', 'rules/latency-high.yaml'],
          bus: `sessionTimeout: ${SESSION_TIMEOUT_MS / 1000}s`,
          rules: 'partitionFields: [service.name, host.name]',
        },
      );
      const expected = backtestAlerts(join(dir, 'rules'), data).alerts;
      await createTopics(brokers!, prefix);

      const { worker, ingest: startIngest } = kafkaRoles(config, dir, brokers!);
      const ingest = await startIngest();
      const [a, b, c] = await Promise.all([worker(), worker(), worker()]);
      const before = await settled([a, b, c]);
      mark(`three workers share the tasks in generation ${before}`);
      const half = Math.floor(batches.length / 2);
      const more = Math.floor((batches.length * 3) / 4);
      await send(ingest.url, batches.slice(0, half));
      await drained([a, b, c]);
      mark('the first half processed');
      const fromB = await alertsOf([b]);
      const held = assignments(b).get(before) ?? [];

      // B stops mid-stream, while the third quarter is being sent: it holds messages
      // fetched and not yet processed, and the fetch it had in flight is answered.
      const sending = send(ingest.url, batches.slice(half, more));
      await new Promise((r) => setTimeout(r, 500));
      const stopAt = Date.now();
      b.child.kill('SIGSTOP');
      await sending;
      const after = await settledPast([a, c], before);
      mark(`A and C took B's tasks ${held.join(',')} in generation ${after}`);
      await drained([a, c]);
      mark('A and C processed the third quarter');
      // Past the session timeout whatever the rebalance took.
      await new Promise((r) =>
        setTimeout(r, Math.max(0, stopAt + SESSION_TIMEOUT_MS - Date.now())),
      );
      const contAt = Date.now();
      b.child.kill('SIGCONT');
      const rejoined = await settledPast([a, b, c], after);
      mark(`B resumed after ${((contAt - stopAt) / 1000).toFixed(1)} s, rejoined in ${rejoined}`);
      expect(after).toBeGreaterThan(before);
      expect(rejoined).toBeGreaterThan(after);

      await send(ingest.url, batches.slice(more));
      await drained([a, b, c]);
      const end = new Date(last).toISOString();
      await until(
        'the clock to carry the watermark past the data',
        async () => (await alertsOf([a, b, c])).filter((x) => x.at > end).length >= 8,
        90_000,
      );
      mark('the clock took over');

      // Every alert B logged after it resumed (a line's time is read while it runs: before
      // the stop or after the resumption) is of a task it held in a generation after the stop.
      const split = (stopAt + contAt) / 2;
      const byGeneration = assignments(b);
      const late = logLines(b).filter((l) => l.msg === 'alert' && l.time > split);
      const stale = late.filter((l) => {
        const t = l.alert?.task;
        return (
          !t || t.generation <= before || !(byGeneration.get(t.generation) ?? []).includes(t.id)
        );
      });
      const metrics = await (await fetch(`${b.url}/metrics`)).text();
      const fenced = /^drover_rules_fenced_alerts_total\{reason="stalled"\} (\S+)/m.exec(
        metrics,
      )?.[1];
      const stalls = Number(/^drover_rules_stalls_total (\S+)/m.exec(metrics)?.[1] ?? 0);
      console.log(
        `B held ${held.join(',')} in ${before}; after SIGCONT it logged ${late.length} alerts, ${stale.length} of tasks it did not hold then (${stale
          .slice(0, 5)
          .map((l) => `${l.alert?.id} task ${JSON.stringify(l.alert?.task)}`)
          .join('; ')}); fenced (stalled): ${fenced ?? 0}; stalls noticed: ${stalls}`,
      );
      // B noticed its stall (whether the data it held would have fired alerts or not).
      expect(stalls).toBeGreaterThanOrEqual(1);
      expect(stale).toEqual([]);

      const all = [...fromB, ...(await alertsOf([a, b, c]))];
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      const live = [...byId.values()].filter((x) => x.at <= end);
      console.log(
        `${lines.length} events, ${expected.length} alerts in the data; B fired ${fromB.length} before the stop; alerts seen ${all.length}, distinct ${byId.size}; B holds ${(await metricsOf(b)).tasks} tasks`,
      );
      expect(live.map(view).sort(order)).toEqual(expected);

      await stopServe(a);
      await stopServe(b);
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
      mark('done');
    }, 300_000);
  },
);
