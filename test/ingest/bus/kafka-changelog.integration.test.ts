import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { chooseHead, KafkaChangelog, type TaskHead } from '../../../ingest/bus/kafka-changelog.ts';
import { kafkajs } from '../../../ingest/bus/kafkajs.ts';

// The client the rules workers' changelog is given in Drover (bus/kafka.ts), with its fix
// for kafkajs's idle timer loop (a negative timeout on Node 24 otherwise).
const { Kafka, logLevel } = kafkajs();

/**
 * The rules' task changelog on a real broker: a snapshot larger than the topic's
 * max.message.bytes goes through in chunks and reads back whole; the head a restore
 * picks follows the group's committed offsets; chunks no restore needs are tombstoned.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

describe.skipIf(!brokers)(
  `the rules task changelog${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const kafka = new Kafka({ brokers: (brokers ?? '').split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    afterAll(async () => {
      await producer.disconnect();
      await admin.disconnect();
    });

    it('chunks a snapshot over max.message.bytes and reads every task back', async () => {
      await admin.connect();
      await producer.connect();
      const topic = `cl${randomUUID().slice(0, 8)}.rules-state`;
      // A small limit, made before ensure() finds the topic.
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: 3,
            configEntries: [
              { name: 'cleanup.policy', value: 'compact' },
              { name: 'max.message.bytes', value: '16384' },
            ],
          },
        ],
      });
      const log = new KafkaChangelog(kafka, admin, producer, topic);
      await log.ensure(3);
      await expect(new KafkaChangelog(kafka, admin, producer, topic).ensure(4)).rejects.toThrow(
        /3 partitions for 4 tasks/,
      );
      // 200 KB of state, multi-byte characters across chunk edges included.
      const big = JSON.stringify({
        keys: Array.from({ length: 4_000 }, (_, i) => `clé-${i}-ü€`.repeat(3)),
      });
      expect(Buffer.byteLength(big)).toBeGreaterThan(100_000);
      const first = await log.write(
        1,
        { generation: 3, offsets: { 'logs/1': 10, 'metrics/1': 4 }, at: 1 },
        big,
      );
      expect(first.chunks).toBeGreaterThan(6);
      await log.write(
        1,
        { generation: 3, offsets: { 'logs/1': 20, 'metrics/1': 4 }, at: 2 },
        '{"second":true}',
      );
      await log.write(2, { generation: 5, offsets: { 'logs/2': 7 }, at: 3 }, '{"task":2}');
      const read = await log.read([0, 1, 2]);
      expect(read.get(0)!.heads).toEqual([]);
      const one = read.get(1)!;
      expect(one.heads.map((h) => h.offsets['logs/1'])).toEqual([10, 20]);
      expect(one.state(one.heads[0]!)).toBe(big);
      expect(one.state(one.heads[1]!)).toBe('{"second":true}');
      expect(read.get(2)!.state(read.get(2)!.heads[0]!)).toBe('{"task":2}');

      // The group committed the first snapshot's offsets: that one is restored.
      expect(chooseHead(one.heads, { 'logs/1': 10, 'metrics/1': 4 })).toBe(one.heads[0]);
      // Chunks the restored head does not name are dropped; the head stays readable.
      const keep = new Set(
        Array.from({ length: one.heads[0]!.chunks }, (_, n) => `1/${one.heads[0]!.id}/${n}`),
      );
      await log.dropChunks(
        1,
        one.chunkKeys.filter((k) => !keep.has(k)),
      );
      const again = (await log.read([1])).get(1)!;
      expect(again.heads.map((h) => h.offsets['logs/1'])).toEqual([10]);
      expect(again.state(again.heads[0]!)).toBe(big);
      await admin.deleteTopics({ topics: [topic] });
    }, 60_000);
  },
);

describe('chooseHead', () => {
  const head = (id: string, generation: number, offsets: Record<string, number>): TaskHead => ({
    id,
    chunks: 1,
    generation,
    offsets,
    at: 0,
  });
  it('prefers the latest head matching the committed offsets, then the latest of the highest generation ahead of them', () => {
    const a = head('a', 4, { 'logs/0': 10 });
    const b = head('b', 5, { 'logs/0': 20 });
    // A stale worker's snapshot (generation 4) written after the new owner's.
    const stale = head('s', 4, { 'logs/0': 30 });
    expect(chooseHead([a, b, stale], { 'logs/0': 20 })).toBe(b);
    // Written but not committed (a crash in between): the highest generation ahead.
    expect(chooseHead([a, b, stale], { 'logs/0': 10 })).toBe(a);
    expect(chooseHead([a, b, stale], { 'logs/0': 15 })).toBe(b);
    // Nothing committed: the highest generation.
    expect(chooseHead([a, b, stale], {})).toBe(b);
    // The group is past every snapshot (the changelog was lost): none.
    expect(chooseHead([a, b], { 'logs/0': 40 })).toBeUndefined();
    expect(chooseHead([], {})).toBeUndefined();
  });
  it('starts from the earliest seed after the last snapshot, whatever was committed', () => {
    const a = head('a', 4, { 'logs/0': 10 });
    const s1 = { ...head('s1', 0, { 'logs/0': 50 }), seed: true };
    const s2 = { ...head('s2', 0, { 'logs/0': 52 }), seed: true };
    // The group's last run committed 10; two workers seeded at the log end since.
    expect(chooseHead([a, s1, s2], { 'logs/0': 10 })).toBe(s1);
    expect(chooseHead([s1], {})).toBe(s1);
    // A snapshot after a seed: the seed has been run from.
    const b = head('b', 1, { 'logs/0': 60 });
    expect(chooseHead([a, s1, b], { 'logs/0': 60 })).toBe(b);
  });
});
