import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { startKafka, type StartedKafka } from '../servers/kafka.ts';
import { killServes, type Served, startServe, stopServe, until } from '../support/drover.ts';
import { type NetCut, startNetCut } from '../support/net-cut.ts';
import {
  actingFleet,
  alertsOf,
  createTopics,
  drained,
  logLines,
  send,
  settled,
  TASKS,
} from '../support/rules-workers.ts';

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
 * - a batch of the rules' changelog damaged at a restore: the restore stops after a
 *   retry, logged once, counted and listed; the tasks emit nothing.
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

function metric(text: string, name: string, labels: string[]): number | undefined {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe.skipIf(!available)(
  `a corrupt record batch on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let kafka: StartedKafka;
    let relay: NetCut;
    beforeAll(async () => {
      kafka = await startKafka({ cuttable: true });
      relay = await startNetCut(kafka.cuttable!.advertised, kafka.cuttable!.target, {
        tamper: true,
      });
    }, 180_000);
    afterAll(async () => {
      await relay?.close();
      await kafka?.stop();
    });

    /** A worker through the relay, an ingest process beside it, the first half sent and processed. */
    async function start(policy: string, tag: string) {
      const fleet = actingFleet({
        tag,
        name: `corrupt-${policy}`,
        acting: [],
        bus: policy === 'default' ? '' : `corruptBatch: ${policy}`,
        rules: 'partitionFields: [service.name, host.name]',
      });
      await createTopics(kafka.url, fleet.prefix);
      const ingest = await startServe(fleet.config, {
        env: { KAFKA_BROKERS: kafka.url, DROVER_STATE_DIR: join(fleet.dir, 'state-ingest') },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      });
      const worker = await startServe(fleet.config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${kafka.cuttable!.advertised}`,
          DROVER_STATE_DIR: join(fleet.dir, 'state-worker'),
        },
        args: ['--roles', 'rules,actions'],
        timeoutMs: 90_000,
      });
      await settled([worker]);
      const half = Math.floor(fleet.batches.length / 2);
      await send(ingest.url, fleet.batches.slice(0, half));
      await drained([worker]);
      const before = new Set((await alertsOf([worker])).map((a) => a.id));
      fleet.mark(`the first half processed: ${before.size} alerts`);
      return { ...fleet, ingest, worker, half, before };
    }

    it('stop (the default): that partition stops, once logged and counted; the others go on', async () => {
      const f = await start('default', 'cs');
      const tamper = relay.corruptFetches({ topic: `${f.prefix}logs` });
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
      const tamper = relay.corruptFetches({ topic: `${f.prefix}logs` });
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
      const tamper = relay.corruptFetches({ topic: `${f.prefix}logs`, lastOffsetDelta: 100_000 });
      for (const b of f.batches.slice(f.half)) await send(f.ingest.url, [b]);
      const env = {
        KAFKA_BROKERS: `127.0.0.1:${kafka.cuttable!.advertised}`,
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

    it('a corrupt changelog batch at a restore: the restore stops, once logged, counted and listed', async () => {
      const f = await start('default', 'cr');
      // Stopped: its tasks' final snapshots are in the changelog. The restarted worker
      // (an empty state directory: everything from the changelog) fetches one batch of
      // it damaged, every time.
      await stopServe(f.worker);
      const tamper = relay.corruptFetches({ topic: `${f.prefix}rules-state` });
      const worker = await startServe(f.config, {
        env: {
          KAFKA_BROKERS: `127.0.0.1:${kafka.cuttable!.advertised}`,
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
      const p = tamper.partition;
      f.mark(
        `rules-state/${p} batch ${tamper.firstOffset}: restore stopped after ${tamper.responses} damaged fetches`,
      );
      await send(f.ingest.url, f.batches.slice(f.half));
      const damaged = tamper.responses;
      await new Promise((r) => setTimeout(r, 5_000));
      // Read twice (the first try and its retry), then no more: no restore loop.
      expect(damaged).toBeGreaterThanOrEqual(2);
      expect(tamper.responses).toBe(damaged);
      const lines = logLines(worker).filter((l) => RESTORE_LINE.test(l.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        group: `${f.prefix}rules`,
        topic: 'rules-state',
        partition: p,
        firstOffset: tamper.firstOffset,
        err: { message: expect.stringMatching(/CRC-32C/) },
      });
      const text = await (await fetch(`${worker.url}/metrics`)).text();
      const labels = [`group="${f.prefix}rules"`, `topic="rules-state"`, `partition="${p}"`];
      expect(metric(text, 'drover_bus_corrupt_batches_total', labels)).toBe(1);
      expect(metric(text, 'drover_bus_stopped_partitions', labels)).toBe(1);
      const ready = await fetch(`${worker.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({
        ready: true,
        stoppedPartitions: [
          {
            group: `${f.prefix}rules`,
            topic: 'rules-state',
            partition: p,
            firstOffset: tamper.firstOffset,
          },
        ],
      });
      // Nothing emitted from tasks that were not restored, though the second half came.
      expect(await alertsOf([worker])).toEqual([]);
      await stopServe(worker);
      await stopServe(f.ingest);
    }, 300_000);
  },
);
