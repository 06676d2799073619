import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { killServes, startServe, stopServe, until } from '../support/drover.ts';
import { keepLogsOnFailure } from '../support/keep-logs.ts';
import { type AlertView, alertView as view, byAlert as order } from '../support/fleet-stream.ts';
import {
  actingFleet,
  alertsOf,
  assignments,
  backtestAlerts,
  createTopics,
  drained,
  logLines,
  metricsOf,
  relayedKafka,
  send,
  settled,
  settledPast,
  TASKS,
  type WorkerAlert,
} from '../support/rules-workers.ts';

/**
 * A rules worker cut off the broker by the network while its process runs on
 * (docs/scale-out.md, "Rebalances and fencing": the membership lease). Worker A reaches
 * Kafka only through a relay the test cuts; nothing stalls, so only the lease can tell
 * it that its heartbeats no longer arrive. Cut off, A sees no more events, and its
 * clock carries its tasks' watermarks on: every replica it had seen would expire
 * (replica-silent), though the fleet is healthy and B, which took A's tasks, sees it
 * report. Those alerts must not go out. Past the lease A holds them; when the network
 * heals it rejoins, drops them (fenced) and restores its tasks from the changelog. No
 * alert is lost and none is stale: the alerts of both equal the backtest's, and every
 * alert A logged after the cut is of a task it held in a generation after it.
 *
 * The test starts a broker of its own: its relayed listener must be known when the
 * broker starts.
 */
const reason = inject('serverSkipReasons').kafka;
const available = inject('kafkaBrokers') !== null;

afterEach(killServes);

const SESSION_TIMEOUT_MS = 6_000;
/** Kafka's OffsetCommit request (api key 8). */
const OFFSET_COMMIT = 8;
/**
 * Shorter than kafkajs's request timeout (30 s), after which A's client gives up on its
 * unanswered requests and rejoins (its tasks then hold as in any rebalance): A's clock
 * must fire its expiries before that, past the session timeout, for the lease to be what
 * holds them.
 */
const LATENESS = '10s';

describe.skipIf(!available)(
  `a rules worker cut off Kafka by the network${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    // Reading the requests (tamper): the second test cuts at a worker's first commit.
    const relayed = relayedKafka();

    it('cut past the session timeout, then healed: its clock fires nothing stale, nothing lost', async () => {
      // partitionFields with host.name (this fleet's hosts are not shared between
      // services): every rule runs in the partition tasks, whose assignments A logs.
      const { mark, batches, last, prefix, dir, data, acted, journal, config } = actingFleet({
        tag: 'rc',
        name: 'cut',
        acting: ['rules/host-error-burst.yaml', 'rules/latency-high.yaml'],
        bus: `sessionTimeout: ${SESSION_TIMEOUT_MS / 1000}s`,
        rules: 'partitionFields: [service.name, host.name]',
        lateness: LATENESS,
      });
      const expected = backtestAlerts(join(dir, 'rules'), data, LATENESS).alerts;
      await createTopics(relayed.kafka.url, prefix);

      let n = 0;
      const worker = (brokers: string) =>
        startServe(config, {
          env: { KAFKA_BROKERS: brokers, DROVER_STATE_DIR: join(dir, `state-${n++}`) },
          args: ['--roles', 'rules,actions'],
          timeoutMs: 90_000,
        });
      const ingest = await startServe(config, {
        env: { KAFKA_BROKERS: relayed.kafka.url, DROVER_STATE_DIR: join(dir, 'state-ingest') },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      });
      // A through the relay: bootstrapped there, the broker sends it back there.
      const [a, b] = await Promise.all([
        worker(`127.0.0.1:${relayed.kafka.cuttable!.advertised}`),
        worker(relayed.kafka.url),
      ]);
      keepLogsOnFailure(dir, { a, b, ingest });
      const before = await settled([a, b]);
      const held = assignments(a).get(before) ?? [];
      mark(`A holds ${held.join(',')} and B the rest in generation ${before}`);
      const half = Math.floor(batches.length / 2);
      await send(ingest.url, batches.slice(0, half));
      await drained([a, b]);
      const fromA = await alertsOf([a]);
      mark('the first half processed');

      const cutAt = Date.now();
      relayed.relay.cut();
      await send(ingest.url, batches.slice(half));
      // B alone holds the six tasks once A's session has timed out.
      const after = await settledPast([b], before);
      await drained([b]);
      mark(`A cut off; B took its tasks in generation ${after} and processed the rest`);
      // A's tasks have had no event for the allowed lateness (10 s) when its clock
      // carries their watermarks on: each replica it saw expires there.
      await new Promise((r) => setTimeout(r, Math.max(0, cutAt + 25_000 - Date.now())));
      const healAt = Date.now();
      relayed.relay.heal();
      const rejoined = await settledPast([a, b], after);
      mark(`healed after ${((healAt - cutAt) / 1000).toFixed(1)} s; rejoined in ${rejoined}`);
      await drained([a, b]);

      // Every alert A logged after the cut (past its lease, which cannot outlast the
      // session) is of a task it held in a generation after the cut.
      const byGeneration = assignments(a);
      const late = logLines(a).filter((l) => l.msg === 'alert' && l.time > cutAt);
      const stale = late.filter((l) => {
        const t = l.alert?.task;
        return (
          !t || t.generation <= before || !(byGeneration.get(t.generation) ?? []).includes(t.id)
        );
      });
      const metrics = await (await fetch(`${a.url}/metrics`)).text();
      const one = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 0);
      const lapses = one(/^drover_rules_lease_lapses_total (\S+)/m);
      const fenced = one(/^drover_rules_fenced_alerts_total\{reason="stalled"\} (\S+)/m);
      // Late events (behind the watermark by more than the allowed lateness) would make
      // a worker's alerts differ from the backtest's without any fault of the fencing.
      const lateEvents = `A ${(await metricsOf(a)).late}, B ${(await metricsOf(b)).late}`;
      const staleShown = stale
        .slice(0, 5)
        .map((l) => `${l.alert?.id} task ${JSON.stringify(l.alert?.task)}`)
        .join('; ');
      console.log(
        `A logged ${late.length} alerts after the cut, ${stale.length} stale (${staleShown}); lease lapses ${lapses}; held and dropped at its rejoin ${fenced}; late events ${lateEvents}`,
      );
      expect(stale).toEqual([]);
      expect(lapses).toBeGreaterThanOrEqual(1);
      // The scenario did produce what the lease held: A's replicas expired on its clock.
      expect(fenced).toBeGreaterThanOrEqual(1);

      const all = [...fromA, ...(await alertsOf([a, b]))];
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      const end = new Date(last).toISOString();
      const live = [...byId.values()].filter((x) => x.at <= end);
      // Which alerts differ, with their ids and tasks (the diff below shows only views).
      const viewed = (x: AlertView) => JSON.stringify(view(x));
      const want = new Set(expected.map(viewed));
      const got = new Set(live.map(viewed));
      const extra = live
        .filter((x) => !want.has(viewed(x)))
        .map(({ id, rule, key, at, task }) => ({ id, rule, key, at, task }));
      const missing = expected.filter((x) => !got.has(viewed(x)));
      if (extra.length + missing.length > 0)
        console.log(
          `alerts differing from the backtest: extra ${JSON.stringify(extra)}; missing ${JSON.stringify(missing)}`,
        );
      expect(live.map(view).sort(order)).toEqual(expected);

      await stopServe(a);
      await stopServe(b);
      await stopServe(ingest);
      const store = openActionStore(journal);
      const decisions = store.list({ limit: 10_000 });
      store.close();
      const executed = decisions.filter((d) => d.decision === 'executed');
      expect(executed.length).toBeGreaterThan(0);
      expect(new Set(executed.map((d) => d.id)).size).toBe(executed.length);
      expect(existsSync(acted)).toBe(true);
      expect(readFileSync(acted, 'utf8').trim().split('\n')).toHaveLength(executed.length);
      mark('done');
    }, 300_000);

    it('removed from the group while it commits its assignment, it rejoins and fires what it reads', async () => {
      // The worker's first assignment: it restores its tasks and commits their start
      // offsets (which tells it its generation), while kafkajs has already fetched a
      // batch that waits for that assignment. The relay cuts at that commit and heals past
      // the session timeout: the broker removed the worker meanwhile, so the commit is
      // refused (unknown member) from then on. The worker must rejoin, not retry it.
      const { mark, batches, last, prefix, dir, data, config } = actingFleet({
        tag: 'rr',
        name: 'removed',
        acting: [],
        bus: `sessionTimeout: ${SESSION_TIMEOUT_MS / 1000}s`,
        rules: 'partitionFields: [service.name, host.name]',
        lateness: LATENESS,
      });
      const expected = backtestAlerts(join(dir, 'rules'), data, LATENESS).alerts;
      await createTopics(relayed.kafka.url, prefix);
      const ingest = await startServe(config, {
        env: { KAFKA_BROKERS: relayed.kafka.url, DROVER_STATE_DIR: join(dir, 'state-ingest') },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      });
      await send(ingest.url, batches);
      const commitCut = relayed.relay.cutAtRequest(OFFSET_COMMIT);
      const w = await startServe(config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${relayed.kafka.cuttable!.advertised}`,
          DROVER_STATE_DIR: join(dir, 'state-w'),
        },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      keepLogsOnFailure(dir, { w, ingest });
      await commitCut;
      mark("the relay cut at the worker's first commit");
      await new Promise((r) => setTimeout(r, SESSION_TIMEOUT_MS + 3_000));
      relayed.relay.heal();
      mark('healed past the session timeout');
      // On the code before, the worker retried that commit every 5 s for good, its fetched
      // batch waiting, so kafkajs never heartbeat again to learn it had to rejoin.
      await until(
        'the worker to rejoin the group and hold the six tasks',
        async () => assignments(w).size > 0 && (await metricsOf(w)).tasks === TASKS,
        60_000,
      );
      await drained([w]);
      mark(`rejoined in generation ${[...assignments(w).keys()].join(', ')}`);
      const end = new Date(last).toISOString();
      const live = (await alertsOf([w])).filter((x) => x.at <= end);
      expect(live.map(view).sort(order)).toEqual(expected);
      await stopServe(w);
      await stopServe(ingest);
    }, 300_000);
  },
);
