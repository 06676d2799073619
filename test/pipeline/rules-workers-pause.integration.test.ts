import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { killServes, stopServe, until } from '../support/drover.ts';
import { alertView as view, byAlert as order } from '../support/fleet-stream.ts';
import {
  alertsOf,
  backtestAlerts,
  createTopics,
  drained,
  lastGeneration,
  send,
  settled,
  startIngestAndWorkers,
  twoFleets,
  type WorkerAlert,
  workersSetup,
} from '../support/rules-workers.ts';

/**
 * A rules worker paused with SIGSTOP past its session timeout (docs/scale-out.md,
 * "Rebalances and fencing"): the group moves its tasks to the other two, and events keep
 * coming. Resumed with SIGCONT, it must not emit anything under the generation it lost
 * (it holds what it fires until the group confirms it, and the rejoin drops it), and it
 * takes tasks again from the changelog. No alert is lost (the alerts of all three, by
 * id, equal the backtest's up to the last event) and no action runs twice (the journal
 * the workers share, and the adapter's own record).
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

describe.skipIf(!brokers)(
  `a rules worker paused on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('SIGSTOP past the session timeout, then SIGCONT: nothing emitted for lost tasks, no alert lost, no action twice', async () => {
      const began = Date.now();
      const mark = (what: string) =>
        console.log(`${((Date.now() - began) / 1000).toFixed(1)} s: ${what}`);
      const { batches, lines, last } = twoFleets(
        Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000,
      );
      const prefix = `rp${randomUUID().slice(0, 8)}.`;
      // The broker's smallest session timeout by default: the pause need not be long.
      const setup = workersSetup({
        name: 'rules-pause',
        prefix,
        lines,
        snapshotEvery: '2s',
        acting: true,
        bus: 'sessionTimeout: 6s',
      });
      const expected = backtestAlerts(join(setup.dir, 'rules'), setup.data).alerts;
      await createTopics(brokers!, prefix);
      const { ingest, worker } = await startIngestAndWorkers(setup, brokers!);
      const [a, b, c] = await Promise.all([worker(), worker(), worker()]);
      const before = await settled([a, b, c]);
      mark(`three workers settled in generation ${before}`);
      const third = Math.floor(batches.length / 3);
      await send(ingest.url, batches.slice(0, third));
      await drained([a, b, c]);
      const fromB = await alertsOf([b]);

      // Paused with its fetch outstanding; what arrives meanwhile is B's partitions' too.
      b.child.kill('SIGSTOP');
      await send(ingest.url, batches.slice(third, 2 * third));
      const without = await settled([a, c], before);
      mark(`B paused; A and C settled in generation ${without}`);
      expect(without).toBeGreaterThan(before);
      await drained([a, c]);

      b.child.kill('SIGCONT');
      const back = await settled([a, b, c], without);
      mark(`B resumed; three settled in generation ${back}`);
      expect(lastGeneration(b)).toBe(back);
      await send(ingest.url, batches.slice(2 * third));
      await drained([a, b, c]);
      const end = new Date(last).toISOString();
      await until(
        'the clock to carry the watermark past the data',
        async () => (await alertsOf([a, b, c])).filter((x) => x.at > end).length >= 8,
        90_000,
      );
      mark('the clock took over');

      // Nothing B emitted after the pause carries the generation it held before.
      const seen = new Set(fromB.map((x) => x.id));
      const ofB = await alertsOf([b]);
      const stale = ofB.filter((x) => !seen.has(x.id) && (x.task?.generation ?? -1) <= before);
      expect(stale).toEqual([]);
      const held = b.log().includes('has not confirmed this worker lately');
      const all = [...fromB, ...ofB, ...(await alertsOf([a, c]))];
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      const live = [...byId.values()].filter((x) => x.at <= end);
      console.log(
        `${lines.length} events, ${expected.length} alerts in the data; B fired ${fromB.length} before the pause, ${ofB.length - fromB.length} after; B held alerts after the pause: ${held}; alerts seen ${all.length}, distinct ${byId.size}`,
      );
      // Every alert carries the task and a generation of the group.
      expect(all.every((x) => x.task !== undefined && x.task.generation >= before)).toBe(true);
      expect(live.map(view).sort(order)).toEqual(expected);

      await stopServe(a);
      await stopServe(b);
      await stopServe(c);
      await stopServe(ingest);
      const store = openActionStore(setup.journal);
      const decisions = store.list({ limit: 10_000 });
      store.close();
      const executed = decisions.filter((d) => d.decision === 'executed');
      expect(executed.length).toBeGreaterThan(0);
      // Each action once: one executed entry per id, and as many runs as entries.
      expect(new Set(executed.map((d) => d.id)).size).toBe(executed.length);
      expect(existsSync(setup.acted)).toBe(true);
      expect(readFileSync(setup.acted, 'utf8').trim().split('\n')).toHaveLength(executed.length);
    }, 240_000);

    it('SIGCONT after the idle time: the clock fires on the paused worker, which holds and drops it', async () => {
      const began = Date.now();
      const mark = (what: string) =>
        console.log(`${((Date.now() - began) / 1000).toFixed(1)} s: ${what}`);
      const { batches, lines, last } = twoFleets(
        Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000,
      );
      const prefix = `rq${randomUUID().slice(0, 8)}.`;
      const setup = workersSetup({
        name: 'rules-pause-clock',
        prefix,
        lines,
        snapshotEvery: '2s',
        acting: true,
        bus: 'sessionTimeout: 6s',
      });
      const expected = backtestAlerts(join(setup.dir, 'rules'), setup.data).alerts;
      await createTopics(brokers!, prefix);
      const { ingest, worker } = await startIngestAndWorkers(setup, brokers!);
      const [a, b, c] = await Promise.all([worker(), worker(), worker()]);
      const before = await settled([a, b, c]);
      mark(`three workers settled in generation ${before}`);
      await send(ingest.url, batches);
      await drained([a, b, c]);
      mark('all the data processed');
      const idleFrom = Date.now();
      const fromB = await alertsOf([b]);
      b.child.kill('SIGSTOP');
      const without = await settled([a, c], before);
      mark(`B paused; A and C settled in generation ${without}`);
      // Past the engines' idle time (the allowed lateness, 30 s): once resumed, B's clock
      // carries the watermark of the tasks it held on, and fires their absences at once.
      await new Promise((r) => setTimeout(r, Math.max(0, idleFrom + 33_000 - Date.now())));
      b.child.kill('SIGCONT');
      mark(`B resumed; three settled in generation ${await settled([a, b, c], without)}`);
      const end = new Date(last).toISOString();
      await until(
        'the clock to carry the watermark past the data',
        async () => (await alertsOf([a, b, c])).filter((x) => x.at > end).length >= 8,
        90_000,
      );
      const seen = new Set(fromB.map((x) => x.id));
      const ofB = await alertsOf([b]);
      // B fired on resume, and held it: the group had not confirmed it for the pause.
      expect(b.log()).toContain('has not confirmed this worker lately');
      expect(ofB.filter((x) => !seen.has(x.id) && (x.task?.generation ?? -1) <= before)).toEqual(
        [],
      );
      const all = [...fromB, ...ofB, ...(await alertsOf([a, c]))];
      const live = [...new Map(all.map((x) => [x.id, x])).values()].filter((x) => x.at <= end);
      expect(live.map(view).sort(order)).toEqual(expected);
      for (const w of [a, b, c, ingest]) await stopServe(w);
      const store = openActionStore(setup.journal);
      const executed = store.list({ limit: 10_000 }).filter((d) => d.decision === 'executed');
      store.close();
      expect(new Set(executed.map((d) => d.id)).size).toBe(executed.length);
      expect(readFileSync(setup.acted, 'utf8').trim().split('\n')).toHaveLength(executed.length);
    }, 240_000);
  },
);
