import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  createMurmur2Partitioner,
  groupMessagesPerPartition,
  murmur2,
} from '../../../ingest/bus/kafka-partition.ts';
import { kafkajs } from '../../../ingest/bus/kafkajs.ts';

const requireLib = createRequire(import.meta.url);
const theirMurmur2 = requireLib('kafkajs/src/producer/partitioners/default/murmur2.js') as (
  key: string | Buffer,
) => number;

const keys = [
  '',
  'a',
  'ab',
  'abc',
  'abcd',
  'checkout',
  'payments-api-7',
  'ünïcode-sërvice ✓',
  '\u0000\uffff',
  '\u007f\u007f\u007f\u007f\u007f',
  'abc\u0080',
  'ab\ud800c',
  ...Array.from({ length: 300 }, (_, i) => `svc-${i}-${'x'.repeat(i % 37)}`),
];

describe("Kafka's murmur2 partitioner (kafka-partition.ts)", () => {
  it("hashes every key as kafkajs's murmur2 does", () => {
    for (const key of keys) {
      expect(murmur2(key)).toBe(theirMurmur2(key));
      expect(murmur2(Buffer.from(key))).toBe(theirMurmur2(Buffer.from(key)));
    }
    // Kafka's own test vectors (Java's Utils.murmur2 of the UTF-8 bytes).
    expect(murmur2('21')).toBe(-973932308);
    expect(murmur2('foobar')).toBe(-790332482);
  });

  it("places keyed messages where kafkajs's DefaultPartitioner does", () => {
    const theirs = kafkajs().Partitioners.DefaultPartitioner();
    const ours = createMurmur2Partitioner()();
    for (const n of [1, 3, 6, 7, 64]) {
      const partitionMetadata = Array.from({ length: n }, (_, i) => ({
        partitionId: i,
        leader: i === 1 ? -1 : 0,
        replicas: [0],
        isr: [0],
        partitionErrorCode: 0,
      }));
      for (const key of keys) {
        const args = { topic: 't', partitionMetadata, message: { key, value: null } };
        expect(ours(args)).toBe(theirs(args));
      }
      const unkeyed = ours({ topic: 't', partitionMetadata, message: { key: null } });
      expect(unkeyed).toBeGreaterThanOrEqual(0);
      expect(n === 1 || unkeyed !== 1).toBe(true); // partition 1 has no leader
      expect(ours({ topic: 't', partitionMetadata, message: { key: 'k', partition: 0 } })).toBe(0);
    }
  });

  it('groups a send of 50,000 messages per partition in order, one partitioner call each', () => {
    // Its speed (kafkajs copied the partition's list per message: 2.2 s for 50,000) is
    // measured by `npm run bench -- ingest`, not timed here.
    const messages = Array.from({ length: 50_000 }, (_, i) => ({ key: `s${i % 7}`, i }));
    const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionId, leader: 0 }));
    const murmur2 = createMurmur2Partitioner()();
    let calls = 0;
    const groups = groupMessagesPerPartition({
      topic: 't',
      partitionMetadata,
      messages,
      partitioner: (args) => (calls++, murmur2(args)),
    });
    expect(calls).toBe(50_000);
    const all = Object.values(groups).flat();
    expect(all).toHaveLength(50_000);
    for (const list of Object.values(groups))
      for (let j = 1; j < list.length; j++) expect(list[j]!.i).toBeGreaterThan(list[j - 1]!.i);
    expect(
      groupMessagesPerPartition({
        topic: 't',
        partitionMetadata: [],
        messages,
        partitioner: murmur2,
      }),
    ).toEqual({});
  });

  it("groups with Drover's partitioner as with each message placed by itself", () => {
    // Runs of one key, explicit partitions, null and Buffer keys, a key after a partition.
    const seq = ['a', 'a', 'a', 'b', 'a', null, null, 'b', 'b', 'c', 'c', 'a'];
    const messages = Array.from({ length: 3_000 }, (_, i) => ({
      i,
      key: i % 97 === 5 ? Buffer.from(`buf${i % 3}`) : seq[Math.floor(i / 3) % seq.length]!,
      ...(i % 53 === 7 && { partition: (i >> 3) % 5 }),
    }));
    const partitionMetadata = [0, 1, 2, 3, 4].map((partitionId) => ({ partitionId, leader: 0 }));
    const ours = createMurmur2Partitioner()();
    const grouped = groupMessagesPerPartition({
      topic: 't',
      partitionMetadata,
      messages,
      partitioner: ours,
    });
    const expected: Record<number, typeof messages> = {};
    const one = createMurmur2Partitioner()();
    for (const message of messages) {
      const keyed = message.key !== null || message.partition !== undefined;
      // The same partitioner, called through an object as kafkajs calls it, message by
      // message; unkeyed messages go round-robin, so only keyed ones are compared exactly.
      const p = one({ topic: 't', partitionMetadata, message });
      if (keyed) (expected[p] ??= []).push(message);
    }
    const keyedOnly = Object.fromEntries(
      Object.entries(grouped).map(([p, list]) => [
        p,
        list.filter((m) => m.key !== null || m.partition !== undefined),
      ]),
    );
    expect(keyedOnly).toEqual(expected);
    expect(Object.values(grouped).flat()).toHaveLength(messages.length);
    for (const list of Object.values(grouped))
      for (let j = 1; j < list.length; j++) expect(list[j]!.i).toBeGreaterThan(list[j - 1]!.i);
  });

  it("is what kafkajs's producer uses once Drover loads it", () => {
    kafkajs();
    expect(requireLib('kafkajs/src/producer/groupMessagesPerPartition.js')).toBe(
      groupMessagesPerPartition,
    );
  });
});
