import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { killServes, startServe, stopServe } from '../support/drover.ts';
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
  relayedKafka,
  send,
  settled,
  settledPast,
  type WorkerAlert,
} from '../support/rules-workers.ts';

/**
 * The assignment's commit of a task the worker keeps (docs/scale-out.md, "Position and
 * state"): it must name the task's last snapshot on the changelog, not how far the task
 * has processed since. A kept task that then moves before its next snapshot is restored
 * by its new owner from the snapshot the group's offsets name; had the commit recorded a
 * position past every snapshot, the new owner would find no head to restore (none equal
 * to the committed offsets, none at or past them) and replay the whole retained
 * partition on an empty engine.
 *
 * The race is made certain through a relay worker A reaches Kafka by. A, B and C share
 * the tasks and process the stream. Each task then gets one latency metric (processed at
 * once: the task's metrics input is then caught up) and then five errors, which its
 * merge holds back for the idle timeout (8 s). C stops: the group rebalances, A learns
 * it at its next heartbeat, snapshots and commits its tasks (the errors still queued),
 * and its JoinGroup is held 9 s: meanwhile the idle timeout releases the errors and A
 * processes them, past the snapshots. A keeps one of its two tasks (round-robin over
 * sorted member ids, 3 then 2 members). A is then killed with SIGKILL, before any
 * periodic snapshot (`snapshotEvery` 1h), and B takes A's tasks once A's session times
 * out (12 s). B must restore the task A kept from its snapshot (logged, with the
 * snapshot's offsets: those before the errors), replay only what came after it, and the
 * alerts of all three, by id, must equal the backtest's.
 *
 * The test starts a broker of its own: its relayed listener must be known when the
 * broker starts.
 */
const reason = inject('serverSkipReasons').kafka;
const available = inject('kafkaBrokers') !== null;

afterEach(killServes);

/** Kafka's JoinGroup request (api key 11). */
const JOIN_GROUP = 11;
/**
 * A hears of the rebalance 0.5-3.5 s after C's stop begins (C's snapshot and leave, then
 * A's next heartbeat, every 3 s with this session timeout), about 2-5.5 s after the
 * metric was processed; the errors go 8 s after it. A's JoinGroup, sent at once, is held
 * 9 s: under the session timeout (the heartbeat that told A of the rebalance renewed its
 * session), and past the release with 2.5 s or more to spare either way.
 */
const SESSION_TIMEOUT_MS = 12_000;
const IDLE_MS = 8_000;
const JOIN_HELD_MS = 9_000;

describe.skipIf(!available)(
  `a rules task kept through a rebalance${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const relayed = relayedKafka();

    it('processed past its snapshot, then moved: restored from that snapshot', async () => {
      const fleet = actingFleet({
        tag: 'ra',
        name: 'kept',
        acting: [],
        bus: `sessionTimeout: ${SESSION_TIMEOUT_MS / 1000}s`,
        rules: `partitionFields: [service.name, host.name], idleTimeout: ${IDLE_MS / 1000}s`,
      });
      const { mark, last, prefix, dir, config } = fleet;
      // The first half of the stream (the test's run time): incidents of every rule type.
      const batches = fleet.batches.slice(0, Math.floor(fleet.batches.length / 2));
      const lines = batches.flat();
      // After the stream: per service (the fleet's six and six new ones, so that every
      // task has some), one latency metric, then five errors on one host with a stack
      // trace never seen (host-error-burst, new-stack-trace).
      const services = ['api', 'search', 'checkout', 'apix', 'searchx', 'checkoutx'];
      for (let i = 0; i < 6; i++) services.push(`kept${i}`);
      const at = (ms: number) => new Date(last + ms).toISOString();
      const metricLines = services.map((s) =>
        JSON.stringify({
          '@timestamp': at(500),
          'service.name': s,
          'host.name': `${s}-1`,
          'metric.name': 'http.latency_ms',
          'metric.value': 50,
        }),
      );
      const burst = services.flatMap((s) =>
        [0, 1, 2, 3, 4].map((i) =>
          JSON.stringify({
            '@timestamp': at(1_000 + i * 100),
            'log.level': 'error',
            'service.name': s,
            'host.name': `${s}-1`,
            message: 'kept',
            'error.type': 'Error',
            'error.message': 'kept',
            'error.stack_trace': `Error: kept\n    at kept (${s}/kept.js:1:1)`,
          }),
        ),
      );
      const data = join(dir, 'all.ndjson');
      writeFileSync(data, `${[...lines, ...metricLines, ...burst].join('\n')}\n`);
      const expected = backtestAlerts(join(dir, 'rules'), data).alerts;
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
      const [a, b, c] = await Promise.all([
        worker(`127.0.0.1:${relayed.kafka.cuttable!.advertised}`),
        worker(relayed.kafka.url),
        worker(relayed.kafka.url),
      ]);
      keepLogsOnFailure(dir, { a, b, c, ingest });
      const three = await settled([a, b, c]);
      await send(ingest.url, batches);
      await drained([a, b, c]);
      mark(`A, B and C processed the stream in generation ${three}`);

      // The metrics first: processed at once, each task's metrics input is then caught
      // up, and holds back the errors that follow for IDLE.
      await send(ingest.url, [metricLines]);
      const metricAt = Date.now();
      await new Promise((r) => setTimeout(r, 1_500));
      // Where the errors begin in each logs partition: the offsets A's snapshots at the
      // rebalance record (the errors are queued in the merges, not processed).
      const admin = new Kafka({ brokers: [relayed.kafka.url], logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const before = Object.fromEntries(
        (await admin.fetchTopicOffsets(`${prefix}logs`)).map((o) => [o.partition, Number(o.high)]),
      );
      await admin.disconnect();
      await send(ingest.url, [burst]);
      const join_ = relayed.relay.holdRequests({ apiKey: JOIN_GROUP, ms: JOIN_HELD_MS, times: 1 });
      mark('the errors sent; C stops');
      expect(await stopServe(c)).toBe(0);
      // C's alerts, up to its exit, from its log (its API is gone with it).
      const fromC = logLines(c)
        .filter((l) => l.msg === 'alert' && l.alert)
        .map((l) => l.alert as WorkerAlert);
      const two = await settledPast([a, b], three);
      const kept = (assignments(a).get(three) ?? []).filter((t) =>
        (assignments(a).get(two) ?? []).includes(t),
      );
      const rebalancing = logLines(a).findLast((l) => l.msg === 'rules group rebalancing')?.time;
      mark(
        `A keeps ${kept.join(',')} of ${assignments(a).get(three)?.join(',')} in generation ${two}; it learnt of the rebalance ${rebalancing ? ((rebalancing - metricAt) / 1000).toFixed(1) : '?'} s after the metric was sent (the errors go ${IDLE_MS / 1000} s after it)`,
      );
      await drained([a, b]);
      mark('everything processed; A is killed');
      const fromA = await alertsOf([a]);
      const killedAt = Date.now();
      a.child.kill('SIGKILL');
      await new Promise((r) => a.child.once('exit', r));
      await settledPast([b], two);
      await drained([b]);
      mark('B holds every task and processed everything');

      const restored = logLines(b).filter(
        (l) => l.msg === 'rules task restored' && l.time >= killedAt,
      ) as Array<{ task?: number; offsets?: Record<string, number> }>;
      const metrics = await (await fetch(`${b.url}/metrics`)).text();
      const replayed = Number(
        /^drover_rules_task_replayed_events_total (\S+)/m.exec(metrics)?.[1] ?? 0,
      );
      console.log(
        `B restored after the kill: ${JSON.stringify(restored.map((l) => ({ task: l.task, offsets: l.offsets })))}; B replayed ${replayed} events; the errors began at ${JSON.stringify(before)} in logs`,
      );

      const all = [...fromC, ...fromA, ...(await alertsOf([b]))];
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      const end = at(1_500);
      const live = [...byId.values()].filter((x) => x.at <= end);
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

      // The race was run: A's JoinGroup was held, and A kept a task.
      expect(join_.held).toBe(1);
      expect(kept.length).toBe(1);
      // The task A kept was restored by B from the snapshot A took at the rebalance, from
      // before the errors (B replays what came after it). A task whose last committed
      // snapshot is older (none periodic here; a rebalance snapshot refused or skipped)
      // replays from that one: `replayed` counts those too, so it is printed, not bounded.
      for (const t of kept) {
        const line = restored.find((l) => l.task === t);
        expect(line, `B restored task ${t} from a snapshot`).toBeDefined();
        expect(line!.offsets?.[`logs/${t}`]).toBe(before[t]);
      }
      expect(live.map(view).sort(order)).toEqual(expected);
      await stopServe(b);
      await stopServe(ingest);
      mark('done');
    }, 240_000);
  },
);
