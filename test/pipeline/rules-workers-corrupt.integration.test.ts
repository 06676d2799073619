import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { murmur2 } from '../../ingest/bus/kafka-partition.ts';
import { GLOBAL_TASK } from '../../pipeline/rules-tasks.ts';
import {
  killServes,
  type Served,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';
import { alertView as view, byAlert as order, FLEET_RULES } from '../support/fleet-stream.ts';
import {
  actingFleet,
  alertsOf,
  assignments,
  backtestAlerts,
  createTopics,
  drained,
  globalOwner,
  logLines,
  relayedKafka,
  send,
  settled,
  settledPast,
  TASKS,
  type WorkerAlert,
} from '../support/rules-workers.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

/**
 * A corrupt Kafka record batch (docs/scale-out.md, "A corrupt record batch"): a rules
 * worker reaches the broker only through a relay that flips a byte of one record batch
 * of `logs` in every Fetch response that brings it, as a damaged disk would: the broker
 * serves the same bad copy at every fetch. The batch's CRC-32C no longer matches; the
 * worker fetches it once more, then applies `bus.corruptBatch`:
 *
 * - `stop`: that partition's consumption stops (its task emits nothing past it), the
 *   other tasks go on and fire their alerts; the error is logged once, counted in
 *   drover_bus_corrupt_batches_total and shown by /readyz and
 *   drover_bus_stopped_partitions; the relay sees no fetch loop.
 * - `skip`: the batch's offsets are skipped, logged once and counted; the task drains.
 *   A damaged lastOffsetDelta skips no good record past the batch.
 * - a batch of one task's partition of the rules' changelog damaged at a restore: that
 *   task's restore stops after a retry, logged once, counted and listed, and the task
 *   emits nothing and commits nothing; the worker's other tasks restore and give the
 *   backtest of their events alert for alert.
 * - a batch of the global task's changelog damaged at a restore: the global task stops
 *   alone (the worker starts, its partition tasks give the backtest of their rules).
 *
 * The test starts a broker of its own: the relayed listener must be known when the
 * broker starts (test/servers/kafka.ts, `cuttable`).
 */
const reason = inject('serverSkipReasons').kafka;
const available = inject('kafkaBrokers') !== null;

afterEach(killServes);

const CORRUPT_LINE = /^a corrupt Kafka record batch/;

/** Messages a task has yet to process per `topic/partition` (drover_rules_task_lag_messages). */
async function taskLag(w: Served): Promise<Map<string, number>> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^drover_rules_task_lag_messages\{topic="(\w+)",partition="(\d+)"\} (\S+)/gm,
  ))
    out.set(`${m[1]}/${m[2]}`, Number(m[3]));
  return out;
}

/** The partition (and task) of a service's events: Kafka's partitioner on its name. */
const partitionOf = (service: string) => (murmur2(service) & 0x7fffffff) % TASKS;

/** A group's committed offsets per `topic/partition` of `logs` and `metrics` (-1: none). */
async function committedOffsets(
  brokers: string,
  group: string,
  prefix: string,
): Promise<Record<string, number>> {
  const admin = new Kafka({ brokers: [brokers], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const out: Record<string, number> = {};
    for (const { topic, partitions } of await admin.fetchOffsets({
      groupId: group,
      topics: [`${prefix}logs`, `${prefix}metrics`],
    }))
      for (const p of partitions)
        out[`${topic.slice(prefix.length)}/${p.partition}`] = Number(p.offset);
    return out;
  } finally {
    await admin.disconnect();
  }
}

function metric(text: string, name: string, labels: string[]): number | undefined {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe.skipIf(!available)(
  `a corrupt record batch on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const relayed = relayedKafka();

    /** A worker through the relay, an ingest process beside it, the first half sent and processed. */
    /**
     * `global`: rules.partitionFields left at its default, so the host.name rules run in
     * the global task (and the worker is waited for to hold it).
     */
    async function start(
      policy: string,
      tag: string,
      o: { lateness?: string; global?: boolean; snapshotEvery?: string } = {},
    ) {
      const fleet = actingFleet({
        tag,
        name: `corrupt-${policy}`,
        acting: [],
        ...(o.lateness !== undefined && { lateness: o.lateness }),
        ...(o.snapshotEvery !== undefined && { snapshotEvery: o.snapshotEvery }),
        bus: policy === 'default' ? '' : `corruptBatch: ${policy}`,
        rules: o.global ? '' : 'partitionFields: [service.name, host.name]',
      });
      await createTopics(relayed.kafka.url, fleet.prefix);
      const ingest = await startServe(fleet.config, {
        env: {
          KAFKA_BROKERS: relayed.kafka.url,
          DROVER_STATE_DIR: join(fleet.dir, 'state-ingest'),
        },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      });
      const worker = await startServe(fleet.config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${relayed.kafka.cuttable!.advertised}`,
          DROVER_STATE_DIR: join(fleet.dir, 'state-worker'),
        },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      await settled([worker]);
      if (o.global) await globalOwner([worker]);
      const half = Math.floor(fleet.batches.length / 2);
      await send(ingest.url, fleet.batches.slice(0, half));
      await drained([worker]);
      const before = new Set((await alertsOf([worker])).map((a) => a.id));
      fleet.mark(`the first half processed: ${before.size} alerts`);
      return { ...fleet, ingest, worker, half, before };
    }

    it('stop (the default): that partition stops, once logged and counted; the others go on', async () => {
      const f = await start('default', 'cs');
      const tamper = relayed.relay.corruptFetches({ topic: `${f.prefix}logs` });
      await send(f.ingest.url, f.batches.slice(f.half));
      const p = await until(
        'the corrupt batch to stop its partition',
        () =>
          logLines(f.worker).some((l) => CORRUPT_LINE.test(l.msg)) ? tamper.partition : undefined,
        60_000,
      );
      f.mark(
        `logs/${p} stopped at ${tamper.firstOffset} after ${tamper.responses} damaged fetches`,
      );
      // Every other partition is processed to its end: task p's merge holds its metrics.
      await until(
        'the other partitions to be processed',
        async () => {
          const lag = await taskLag(f.worker);
          return (
            lag.size === 2 * TASKS &&
            [...lag].every(([k, n]) => n === 0 || k === `logs/${p}` || k === `metrics/${p}`)
          );
        },
        120_000,
      );
      const damaged = tamper.responses;
      await new Promise((r) => setTimeout(r, 5_000));
      // Fetched once more, then paused: no loop (at most the fetches in flight when it stopped).
      expect(damaged).toBeGreaterThanOrEqual(2);
      expect(tamper.responses).toBe(damaged);
      expect(damaged).toBeLessThanOrEqual(4);
      expect((await taskLag(f.worker)).get(`logs/${p}`)).toBeGreaterThan(0);

      const lines = logLines(f.worker).filter((l) => CORRUPT_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        msg: expect.stringMatching(/stopped consuming its partition/),
        group: `${f.prefix}rules`,
        topic: 'logs',
        partition: p,
        firstOffset: tamper.firstOffset,
        err: { message: expect.stringMatching(/CRC-32C/) },
      });
      const text = await (await fetch(`${f.worker.url}/metrics`)).text();
      const labels = [`group="${f.prefix}rules"`, `topic="logs"`, `partition="${p}"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      expect(metric(text, 'drover_bus_stopped_partitions', labels)).toBe(1);
      const ready = await fetch(`${f.worker.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({
        ready: true,
        stoppedPartitions: [
          {
            group: `${f.prefix}rules`,
            topic: 'logs',
            partition: p,
            firstOffset: tamper.firstOffset,
          },
        ],
      });
      // The other tasks fired alerts on the second half; the stopped one stands still.
      const after = (await alertsOf([f.worker])).filter((a) => !f.before.has(a.id));
      f.mark(`${after.length} alerts after the corruption`);
      expect(after.filter((a) => a.task?.id !== p).length).toBeGreaterThan(0);
      await stopServe(f.worker);
      await stopServe(f.ingest);
    }, 300_000);

    it('skip: the batch is skipped, once logged and counted, and the task drains', async () => {
      const f = await start('skip', 'ck');
      const tamper = relayed.relay.corruptFetches({ topic: `${f.prefix}logs` });
      await send(f.ingest.url, f.batches.slice(f.half));
      await drained([f.worker]);
      const p = tamper.partition;
      f.mark(
        `logs/${p} batch ${tamper.firstOffset} skipped after ${tamper.responses} damaged fetches`,
      );
      expect(tamper.responses).toBeGreaterThanOrEqual(2);
      const lines = logLines(f.worker).filter((l) => CORRUPT_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        msg: expect.stringMatching(/skipped its offsets/),
        topic: 'logs',
        partition: p,
        firstOffset: tamper.firstOffset,
      });
      const text = await (await fetch(`${f.worker.url}/metrics`)).text();
      const labels = [`group="${f.prefix}rules"`, `topic="logs"`, `partition="${p}"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      expect(metric(text, 'drover_bus_stopped_partitions', labels)).toBeUndefined();
      expect(await (await fetch(`${f.worker.url}/readyz`)).json()).toEqual({ ready: true });
      await stopServe(f.worker);
      await stopServe(f.ingest);
    }, 300_000);

    it('skip: a damaged lastOffsetDelta skips no good record, and a restart does not re-read it', async () => {
      const f = await start('skip', 'cl');
      // The second half goes into the log while the worker is down: its first fetch after
      // the restart brings the damaged batch with good ones after it, below the high
      // watermark. The damaged header says the batch ends 100 000 offsets on.
      await stopServe(f.worker);
      const tamper = relayed.relay.corruptFetches({
        topic: `${f.prefix}logs`,
        lastOffsetDelta: 100_000,
      });
      for (const b of f.batches.slice(f.half)) await send(f.ingest.url, [b]);
      const env = {
        KAFKA_BROKERS: `127.0.0.1:${relayed.kafka.cuttable!.advertised}`,
        DROVER_STATE_DIR: join(f.dir, 'state-worker'),
      };
      const restarted = async () => {
        const w = await startServe(f.config, {
          env,
          args: ['--roles', 'rules,actions'],
          timeoutMs: 90_000,
        });
        await settled([w]);
        return w;
      };
      const worker = await restarted();
      await drained([worker]);
      const p = tamper.partition;
      expect(tamper.lastOffsetDelta).toBeDefined();
      const real = BigInt(tamper.firstOffset!) + BigInt(tamper.lastOffsetDelta!) + 1n;
      f.mark(
        `logs/${p} batch ${tamper.firstOffset}..${real - 1n} (header: +100000) skipped after ${tamper.responses} damaged fetches`,
      );
      const lines = logLines(worker).filter((l) => CORRUPT_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      // Resumed where the next batch starts, not at the high watermark its header implied.
      expect(lines[0]).toMatchObject({
        msg: expect.stringMatching(/skipped its offsets/),
        topic: 'logs',
        partition: p,
        firstOffset: tamper.firstOffset,
        lastOffset: String(BigInt(tamper.firstOffset!) + 100_000n),
        next: String(real),
      });
      const text = await (await fetch(`${worker.url}/metrics`)).text();
      const labels = [`group="${f.prefix}rules"`, `topic="logs"`, `partition="${p}"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      // Restarted again, the tamper still on: its snapshot is past the batch, not re-read.
      const damaged = tamper.responses;
      await stopServe(worker);
      const again = await restarted();
      await drained([again]);
      await new Promise((r) => setTimeout(r, 3_000));
      expect(tamper.responses).toBe(damaged);
      expect(logLines(again).filter((l) => CORRUPT_LINE.test(l.msg))).toHaveLength(0);
      await stopServe(again);
      await stopServe(f.ingest);
    }, 300_000);

    it('a corrupt changelog batch at a restore stops that task alone; the others give the backtest', async () => {
      // A lateness of 30 s: the engines' clocks take over after 30 s of quiet
      // (rules.allowedLateness), which leaves room for the restarts below on a loaded
      // machine (a restart to its restore took about 2 s at load 7) and costs that wait twice.
      const lateness = '30s';
      // Snapshots every 2 s: the healthy tasks commit as they go, the stopped one never.
      const f = await start('default', 'cr', { lateness, snapshotEvery: '2s' });
      // Stopped at once (before its clock carries its watermark past the first half): its
      // tasks' final snapshots are in the changelog and their offsets committed.
      const first = await alertsOf([f.worker]);
      await stopServe(f.worker);
      // The task damaged: the one of `search` (a replica goes silent in the second half;
      // `searchx`, the other fleet's, has the same incident on a task that stays healthy).
      const p = partitionOf('search');
      const service = (line: string) => {
        const j = JSON.parse(line) as { 'service.name'?: string; name?: string };
        return j['service.name'] ?? j.name ?? '';
      };
      const timeOf = (line: string) => {
        const j = JSON.parse(line) as { '@timestamp'?: string; time?: number };
        return j.time ?? Date.parse(j['@timestamp'] ?? '');
      };
      // The backtest of the healthy tasks' events, and of the damaged task's.
      const healthyLines = f.lines.filter((l) => partitionOf(service(l)) !== p);
      const healthyData = join(f.dir, 'healthy.ndjson');
      writeFileSync(healthyData, `${healthyLines.join('\n')}\n`);
      const backtest = backtestAlerts(join(f.dir, 'rules'), healthyData, lateness);
      expect(backtest.stderr).toMatch(/0 bad lines, 0 late events/);
      const expected = backtest.alerts;
      const damagedData = join(f.dir, 'damaged.ndjson');
      writeFileSync(
        damagedData,
        `${f.lines.filter((l) => partitionOf(service(l)) === p).join('\n')}\n`,
      );
      const latest = (lines: string[]) => lines.reduce((m, l) => Math.max(m, timeOf(l)), 0);
      const halfEnd = latest(f.batches.slice(0, f.half).flat());
      const damagedLater = backtestAlerts(
        join(f.dir, 'rules'),
        damagedData,
        lateness,
      ).alerts.filter((a) => Date.parse(a.at) > halfEnd);
      // The damaged task has alerts to miss in the second half.
      expect(damagedLater.length).toBeGreaterThan(0);
      f.mark(
        `task ${p}: ${damagedLater.length} alerts after the half in the backtest of its events; the others' backtest: ${expected.length}`,
      );
      const end = new Date(latest(healthyLines)).toISOString();
      // The restarted worker (an empty state directory: everything from the changelog)
      // fetches the first batch of task p's changelog partition damaged, every time.
      const group = `${f.prefix}rules`;
      const committedBefore = await committedOffsets(relayed.kafka.url, group, f.prefix);
      const tamper = relayed.relay.corruptFetches({
        topic: `${f.prefix}rules-state`,
        partition: p,
      });
      const worker = await startServe(f.config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${relayed.kafka.cuttable!.advertised}`,
          DROVER_STATE_DIR: join(f.dir, 'state-worker-2'),
        },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      const RESTORE_LINE = /^a corrupt Kafka record batch in the rules changelog/;
      await until(
        'the restore to stop at the corrupt changelog batch',
        () => logLines(worker).some((l) => RESTORE_LINE.test(l.msg)),
        60_000,
      );
      f.mark(
        `rules-state/${p} batch ${tamper.firstOffset}: restore stopped after ${tamper.responses} damaged fetches`,
      );
      expect(tamper.partition).toBe(p);
      await send(f.ingest.url, f.batches.slice(f.half));
      // The other five tasks process the second half; task p's partitions stay behind.
      await until(
        'the healthy tasks to process the second half',
        async () => {
          const lag = await taskLag(worker);
          return (
            lag.size === 2 * TASKS &&
            [...lag].every(([k, n]) => n === 0 || k === `logs/${p}` || k === `metrics/${p}`)
          );
        },
        120_000,
      );
      f.mark('the healthy tasks processed the second half');
      // Their snapshots commit their offsets past the second half; nothing is committed
      // for task p's partitions past its last snapshot.
      const healthyKeys = ['logs', 'metrics'].flatMap((t) =>
        Array.from({ length: TASKS }, (_, i) => i)
          .filter((i) => i !== p)
          .map((i) => `${t}/${i}`),
      );
      await until(
        'the healthy tasks to commit past the second half',
        async () => {
          const now = await committedOffsets(relayed.kafka.url, group, f.prefix);
          return healthyKeys.every((k) => now[k]! > committedBefore[k]!);
        },
        30_000,
      );
      const committedNow = await committedOffsets(relayed.kafka.url, group, f.prefix);
      expect(committedNow[`logs/${p}`]).toBe(committedBefore[`logs/${p}`]);
      expect(committedNow[`metrics/${p}`]).toBe(committedBefore[`metrics/${p}`]);
      const lag = await taskLag(worker);
      expect(lag.get(`logs/${p}`)).toBeGreaterThan(0);
      expect(lag.get(`metrics/${p}`)).toBeGreaterThan(0);
      // Their clocks carry their watermarks past the data: every healthy task's hosts
      // fall silent (an expiry after the last event), whatever task p's partitions hold.
      const healthy = Array.from({ length: TASKS }, (_, i) => i).filter((i) => i !== p);
      await until(
        'the healthy tasks to fire past the data',
        async () => {
          const late = (await alertsOf([worker])).filter((a) => a.at > end);
          return healthy.every((i) => late.some((a) => a.task?.id === i));
        },
        150_000,
      );
      const after = await alertsOf([worker]);
      f.mark(`${after.length} alerts after the restart`);
      // Task p emitted nothing; the others, with what they fired before the restart, give
      // the backtest of their events alert for alert.
      expect(after.filter((a) => a.task?.id === p)).toEqual([]);
      const live = [...first, ...after].filter((a) => a.task?.id !== p && a.at <= end);
      expect(live.map(view).sort(order)).toEqual(expected);
      expect(new Set(live.map((a) => a.id)).size).toBe(live.length);

      // Read twice (the first try and its retry), then no more: no restore loop.
      const damaged = tamper.responses;
      expect(damaged).toBeGreaterThanOrEqual(2);
      expect(damaged).toBeLessThanOrEqual(4);
      const lines = logLines(worker).filter((l) => RESTORE_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        group,
        topic: 'rules-state',
        partition: p,
        task: p,
        firstOffset: tamper.firstOffset,
        err: { message: expect.stringMatching(/CRC-32C/) },
      });
      expect(
        logLines(worker).find((l) => l.msg === 'rules tasks assigned') as unknown,
      ).toMatchObject({ stopped: [p], restored: healthy });
      const text = await (await fetch(`${worker.url}/metrics`)).text();
      const labels = [`group="${group}"`, `topic="rules-state"`, `partition="${p}"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      expect(metric(text, 'drover_bus_stopped_partitions', labels)).toBe(1);
      const ready = await fetch(`${worker.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({
        ready: true,
        stoppedPartitions: [
          { group, topic: 'rules-state', partition: p, firstOffset: tamper.firstOffset },
        ],
      });
      expect(tamper.responses).toBe(damaged);
      // Half a minute of snapshots later (every 2 s), still nothing committed for task p.
      const committedLater = await committedOffsets(relayed.kafka.url, group, f.prefix);
      expect(committedLater[`logs/${p}`]).toBe(committedBefore[`logs/${p}`]);
      expect(committedLater[`metrics/${p}`]).toBe(committedBefore[`metrics/${p}`]);

      // The next assignment retries the task. The damage ends (a tamper of no topic
      // replaces it); a second worker joins, a rebalance, and leaves, another: task p is
      // restored from its last snapshot, wherever it lands, and processes what its
      // partitions held.
      relayed.relay.corruptFetches({ topic: `${f.prefix}none`, times: 0 });
      const second = await startServe(f.config, {
        env: { KAFKA_BROKERS: relayed.kafka.url, DROVER_STATE_DIR: join(f.dir, 'state-worker-3') },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      const generation = await settled([worker, second]);
      await drained([worker, second]);
      f.mark(
        `task p restored at the next assignment (tasks here: ${assignments(worker).get(generation)?.join(',')}): everything processed`,
      );
      await stopServe(second);
      await settledPast([worker], generation);
      await drained([worker]);
      // Every alert the three processes logged, once each by id, up to the last event.
      const logged = () => {
        const byId = new Map<string, WorkerAlert>();
        for (const w of [f.worker, worker, second])
          for (const l of logLines(w))
            if (l.msg === 'alert' && l.alert) byId.set(l.alert.id, l.alert as WorkerAlert);
        return [...byId.values()];
      };
      const all = new Date(f.last).toISOString();
      await until(
        "task p's clock to carry its watermark past the data",
        () => logged().some((a) => a.task?.id === p && a.at > all),
        150_000,
      );
      const full = backtestAlerts(join(f.dir, 'rules'), f.data, lateness).alerts;
      const union = logged().filter((a) => a.at <= all);
      f.mark(`${union.length} alerts in all, the backtest of every event: ${full.length}`);
      expect(union.map(view).sort(order)).toEqual(full);
      await stopServe(worker);
      await stopServe(f.ingest);
    }, 480_000);

    it('a corrupt global changelog batch at a restore stops the global task alone', async () => {
      const lateness = '30s';
      const f = await start('default', 'cg', { lateness, global: true });
      const first = await alertsOf([f.worker]);
      await stopServe(f.worker);
      // The backtest of the rules the partition tasks run (keyed by service.name).
      const only = workdir('drover-rules-corrupt-partitioned-', {
        'rules/service-error-spike.yaml': FLEET_RULES['service-error-spike.yaml']!,
        'rules/new-stack-trace.yaml': FLEET_RULES['new-stack-trace.yaml']!,
      });
      const partitioned = backtestAlerts(join(only, 'rules'), f.data, lateness);
      expect(partitioned.stderr).toMatch(/0 bad lines, 0 late events/);
      const expected = partitioned.alerts;
      f.mark(`the partition tasks' backtest: ${expected.length} alerts`);
      expect(expected.length).toBeGreaterThan(0);
      const end = new Date(f.last).toISOString();
      const globalGroup = `${f.prefix}rules-global`;
      const committedBefore = await committedOffsets(relayed.kafka.url, globalGroup, f.prefix);
      const tamper = relayed.relay.corruptFetches({ topic: `${f.prefix}rules-global-state` });
      const worker = await startServe(f.config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${relayed.kafka.cuttable!.advertised}`,
          DROVER_STATE_DIR: join(f.dir, 'state-worker-2'),
        },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      const RESTORE_LINE = /^a corrupt Kafka record batch in the rules changelog/;
      await until(
        'the global task restore to stop at the corrupt changelog batch',
        () => logLines(worker).some((l) => RESTORE_LINE.test(l.msg)),
        60_000,
      );
      f.mark(
        `rules-global-state batch ${tamper.firstOffset}: restore stopped after ${tamper.responses} damaged fetches`,
      );
      await send(f.ingest.url, f.batches.slice(f.half));
      // The partition tasks process everything and fire as the backtest of their rules.
      await until(
        'the partition tasks to process the second half',
        async () => {
          const lag = await taskLag(worker);
          return lag.size === 2 * TASKS && [...lag.values()].every((n) => n === 0);
        },
        120_000,
      );
      const live = async () =>
        [...first, ...(await alertsOf([worker]))].filter(
          (a) => a.task?.id !== GLOBAL_TASK && a.at <= end,
        );
      const same = (xs: WorkerAlert[]) =>
        JSON.stringify(xs.map(view).sort(order)) === JSON.stringify(expected);
      // Their clocks carry their watermarks past the data after 30 s of quiet.
      await until(
        'the partition tasks to fire as the backtest',
        async () => same(await live()),
        150_000,
      ).catch(() => {});
      const got = await live();
      expect(got.map(view).sort(order)).toEqual(expected);
      expect(new Set(got.map((a) => a.id)).size).toBe(got.length);
      // The global task emitted nothing after the restart.
      const after = await alertsOf([worker]);
      expect(after.filter((a) => a.task?.id === GLOBAL_TASK)).toEqual([]);
      f.mark(`${after.length} alerts after the restart, none of the global task`);

      const damaged = tamper.responses;
      expect(damaged).toBeGreaterThanOrEqual(2);
      expect(damaged).toBeLessThanOrEqual(4);
      const lines = logLines(worker).filter((l) => RESTORE_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        group: globalGroup,
        topic: 'rules-global-state',
        partition: 0,
        task: GLOBAL_TASK,
        firstOffset: tamper.firstOffset,
      });
      const text = await (await fetch(`${worker.url}/metrics`)).text();
      const labels = [`group="${globalGroup}"`, `topic="rules-global-state"`, `partition="0"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      expect(metric(text, 'drover_bus_stopped_partitions', labels)).toBe(1);
      expect(await (await fetch(`${worker.url}/readyz`)).json()).toMatchObject({
        ready: true,
        stoppedPartitions: [{ group: globalGroup, topic: 'rules-global-state', partition: 0 }],
      });
      await stopServe(worker);
      expect(tamper.responses).toBe(damaged);
      // Nothing committed for the global group past its last snapshot.
      expect(await committedOffsets(relayed.kafka.url, globalGroup, f.prefix)).toEqual(
        committedBefore,
      );
      await stopServe(f.ingest);
    }, 420_000);
  },
);
