import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import {
  chooseHead,
  headMetadata,
  headOfMetadata,
  KafkaChangelog,
  type TaskHead,
} from '../../../ingest/bus/kafka-changelog.ts';

/**
 * The rules' task changelog on a real broker: a snapshot larger than the topic's
 * max.message.bytes goes through in chunks and reads back whole; the head a restore
 * picks follows the group's committed offsets; chunks no restore needs are tombstoned;
 * a stale writer's snapshots never win over the one the group's commit names.
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

    it('restores the snapshot the commit names, never a stale writer’s, and keeps it on the topic', async () => {
      await admin.connect();
      // A producer of its own: the other test's deleted topic stays in the shared one's
      // metadata.
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      onTestFinished(() => producer.disconnect());
      const prefix = `cf${randomUUID().slice(0, 8)}.`;
      const topic = `${prefix}rules-state`;
      const owner = new KafkaChangelog(kafka, admin, producer, topic);
      await owner.ensure(1);
      const stale = new KafkaChangelog(kafka, admin, producer, topic);
      const at = { 'logs/0': 10 };

      // The owner (generation 5) writes a snapshot; the group commits its offsets with
      // the snapshot's id in the metadata, through a real member of a real group.
      const s1 = await owner.write(0, { generation: 5, offsets: at, at: 1 }, '{"owner":1}');
      const group = `${prefix}rules`;
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: `${prefix}logs` }] });
      await producer.send({
        topic: `${prefix}logs`,
        messages: Array.from({ length: 12 }, (_, i) => ({ partition: 0, value: String(i) })),
      });
      const member = kafka.consumer({ groupId: group });
      const joined = new Promise((r) => member.on(member.events.GROUP_JOIN, r));
      await member.connect();
      await member.subscribe({ topics: [`${prefix}logs`], fromBeginning: true });
      await member.run({ autoCommit: false, eachBatch: async () => {} });
      await joined;
      await member.commitOffsets([
        { topic: `${prefix}logs`, partition: 0, offset: '10', metadata: headMetadata(s1.id) },
      ]);
      await member.disconnect();
      const [fetched] = await admin.fetchOffsets({ groupId: group, topics: [`${prefix}logs`] });
      const p0 = fetched!.partitions.find((p) => p.partition === 0)!;
      expect(p0.offset).toBe('10');
      const named = headOfMetadata(p0.metadata);
      expect(named).toBe(s1.id);
      await owner.committed(0, s1.id);

      // A worker that lost the task but has not noticed writes after the group moved on:
      // one snapshot at the committed offsets (its clock fired what the owner's did not),
      // one ahead, with an equal and a higher generation. Its commits are refused.
      await stale.write(0, { generation: 5, offsets: at, at: 2 }, '{"stale":"equal"}');
      await stale.write(
        0,
        { generation: 6, offsets: { 'logs/0': 30 }, at: 3 },
        '{"stale":"ahead"}',
      );
      // The owner, stale in turn, writes on with every commit refused: its snapshots go
      // past MAX_WRITTEN, never the committed one.
      for (let i = 0; i < 5; i++)
        await owner.write(0, { generation: 5, offsets: { 'logs/0': 40 + i }, at: 4 + i }, '{}');

      const h = (await owner.read([0])).get(0)!;
      const chosen = chooseHead(h.heads, { 'logs/0': 10 }, named);
      expect(chosen?.id).toBe(s1.id);
      expect(h.state(chosen!)).toBe('{"owner":1}');
      // Without the commit's name (offsets alone, as before), the stale one would win.
      expect(h.state(chooseHead(h.heads, { 'logs/0': 10 })!)).toBe('{"stale":"equal"}');
      expect(h.state(chooseHead(h.heads, { 'logs/0': 11 })!)).toBe('{"stale":"ahead"}');
      // A commit naming a snapshot that is gone: none (a replay), not a stale one.
      expect(chooseHead(h.heads, { 'logs/0': 10 }, 'abcdef01-2345')).toBeUndefined();
      // A commit naming no snapshot (the task started empty): none.
      expect(chooseHead(h.heads, { 'logs/0': 10 }, '')).toBeUndefined();
      await admin.deleteGroups([group]).catch(() => {});
      await admin.deleteTopics({ topics: [topic, `${prefix}logs`] });
    }, 90_000);
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

  it('with a commit naming a snapshot, takes that one only', () => {
    const a = head('a', 4, { 'logs/0': 10 });
    const stale = head('s', 9, { 'logs/0': 10 });
    expect(chooseHead([a, stale], { 'logs/0': 10 }, 'a')).toBe(a);
    // Named, but at other offsets than the commit's: not that snapshot's commit.
    expect(chooseHead([a, stale], { 'logs/0': 12 }, 'a')).toBeUndefined();
    expect(chooseHead([a, stale], { 'logs/0': 10 }, 'x')).toBeUndefined();
  });

  it('reads only Drover’s metadata', () => {
    expect(headOfMetadata(headMetadata('0123abcd-4567'))).toBe('0123abcd-4567');
    expect(headOfMetadata(headMetadata(undefined))).toBe('');
    for (const other of [null, undefined, '', 'x', 'drover-head:../../etc', 'drover-head:A B'])
      expect(headOfMetadata(other)).toBeUndefined();
  });
});
