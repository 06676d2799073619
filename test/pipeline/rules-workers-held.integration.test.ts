import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
 * A rebalance's snapshots must not pass the alerts a task holds (docs/scale-out.md,
 * "Rebalances and fencing"). At a rebalance worker A snapshots its tasks one after
 * another, each written to the changelog and then committed, while its tasks' merges
 * go on processing what they had queued (an input waits up to `rules.idleTimeout` for
 * its partner), their alerts held. A task whose snapshot is taken after it held alerts
 * and then moves to B is lost: A drops what it held (revoked), B restores a snapshot
 * already past it.
 *
 * The race is made certain through a relay A reaches Kafka by. A alone processes the
 * stream; then each task gets one latency metric (processed at once) and then five
 * errors on a host with a stack trace never seen, which its merge holds back for the
 * idle timeout (15 s), its metrics input caught up a moment ago. B joins. A's first
 * changelog write (task 0's snapshot, at the rebalance) is held 20 s and its JoinGroup
 * 23 s, so the rebalance waits for A while A's snapshot loop is stuck on task 0: the
 * errors are processed meanwhile (their alerts held), and the loop then snapshots and
 * commits, in the old generation, the tasks after task 0 before the assignment. Half
 * the tasks move to B. On the code before, A dropped those tasks' held alerts (12,
 * revoked) and B, restoring snapshots past them, never fired them: 12 alerts missing.
 * Now those tasks are not snapshotted at the rebalance, and B replays and fires them.
 * The alerts of A and B, by id, must equal the backtest's, and A must have dropped
 * held alerts of tasks it lost (the race did happen).
 *
 * The test starts a broker of its own: its relayed listener must be known when the
 * broker starts.
 */
const reason = inject('serverSkipReasons').kafka;
const available = inject('kafkaBrokers') !== null;

afterEach(killServes);

/** Kafka's Produce and JoinGroup requests (api keys 0 and 11). */
const PRODUCE = 0;
const JOIN_GROUP = 11;
const SESSION_TIMEOUT_MS = 30_000;
/**
 * The errors are released by the idle timeout about 13.5 s after they are sent, and A
 * learns of the rebalance 2-3 s after (B's start and A's next heartbeat): the release
 * falls within A's first write, held 20 s, with about 9 s to spare either way. A's JoinGroup
 * is held past that write and within the session timeout, or the broker removes A.
 */
const IDLE_MS = 15_000;
const FIRST_WRITE_HELD_MS = 20_000;
const JOIN_HELD_MS = 23_000;

describe.skipIf(!available)(
  `a rules worker's snapshots at a rebalance${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const relayed = relayedKafka();

    it('a task that holds alerts is not snapshotted past them: moved, they fire', async () => {
      const { mark, batches, lines, last, prefix, dir, config } = actingFleet({
        tag: 'rh',
        name: 'held',
        acting: [],
        bus: `sessionTimeout: ${SESSION_TIMEOUT_MS / 1000}s`,
        // Every rule in the partition tasks; an input waits IDLE for its partner.
        rules: `partitionFields: [service.name, host.name], idleTimeout: ${IDLE_MS / 1000}s`,
      });
      // After the stream: per service (the fleet's six and six new ones, so that every
      // task has some), one latency metric, then five errors on one host with a stack
      // trace never seen (host-error-burst, new-stack-trace).
      const services = ['api', 'search', 'checkout', 'apix', 'searchx', 'checkoutx'];
      for (let i = 0; i < 6; i++) services.push(`held${i}`);
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
            message: 'held',
            'error.type': 'Error',
            'error.message': 'held',
            'error.stack_trace': `Error: held\n    at held (${s}/held.js:1:1)`,
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
      const a = await worker(`127.0.0.1:${relayed.kafka.cuttable!.advertised}`);
      keepLogsOnFailure(dir, { a, ingest });
      const before = await settled([a]);
      await send(ingest.url, batches);
      await drained([a]);
      mark(`A alone processed the stream in generation ${before}`);

      // The metrics first: processed at once (the logs input is idle), each task's metrics
      // input is then caught up, and holds back the errors that follow for IDLE.
      await send(ingest.url, [metricLines]);
      await new Promise((r) => setTimeout(r, 1_500));
      const writes = relayed.relay.holdRequests({
        apiKey: PRODUCE,
        topic: `${prefix}rules-state`,
        ms: FIRST_WRITE_HELD_MS,
        times: 1,
      });
      const join_ = relayed.relay.holdRequests({ apiKey: JOIN_GROUP, ms: JOIN_HELD_MS, times: 1 });
      await send(ingest.url, [burst]);
      const sentAt = Date.now();
      mark('the errors sent; B starts');
      const b = await worker(relayed.kafka.url);
      keepLogsOnFailure(dir, { a, b, ingest });
      const after = await settledPast([a, b], before);
      const rebalancing = logLines(a).find((l) => l.msg === 'rules group rebalancing')?.time;
      mark(
        `A learnt of the rebalance ${rebalancing ? ((rebalancing - sentAt) / 1000).toFixed(1) : '?'} s after the errors were sent; A holds ${assignments(a).get(after)?.join(',')} in generation ${after}; A's JoinGroup held ${join_.held}, changelog writes held ${writes.held}`,
      );
      await drained([a, b]);
      mark('everything processed');

      const metrics = await (await fetch(`${a.url}/metrics`)).text();
      const revoked = Number(
        /^drover_rules_fenced_alerts_total\{reason="revoked"\} (\S+)/m.exec(metrics)?.[1] ?? 0,
      );
      const dropped = logLines(a).filter((l) => l.msg === 'rules task revoked');
      console.log(
        `A dropped ${revoked} held alerts of the tasks it lost (${JSON.stringify(dropped.map((l) => (l as { dropped?: number; task?: number }).task))})`,
      );

      const all = await alertsOf([a, b]);
      const byId = new Map<string, WorkerAlert>(all.map((x) => [x.id, x]));
      // Up to the last error sent, past the stream.
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
      // The race was run: A's JoinGroup and changelog writes were held, and A held alerts
      // of tasks it lost when the assignment came.
      expect(join_.held).toBe(1);
      expect(writes.held).toBeGreaterThan(0);
      expect(revoked).toBeGreaterThanOrEqual(1);
      expect(live.map(view).sort(order)).toEqual(expected);
      await stopServe(a);
      await stopServe(b);
      await stopServe(ingest);
      mark('done');
    }, 300_000);
  },
);
