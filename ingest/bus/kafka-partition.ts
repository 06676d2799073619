/**
 * The partitioner of Kafka's Java client (and kafkajs's DefaultPartitioner): a keyed
 * message goes to murmur2(key) mod the topic's partitions, an unkeyed one round-robin
 * over the partitions with a leader. kafkajs computes murmur2 with 64-bit BigInt
 * objects and lists the available partitions for every message; here it is 32-bit
 * integer arithmetic (the same low 32 bits, a test compares them), linear in the key.
 */

import { randomBytes } from 'node:crypto';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Whether every UTF-16 unit of `s` is ASCII: its UTF-8 bytes are then its char codes. */
function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Kafka's murmur2 of the key's UTF-8 bytes (a string) or of the bytes, signed 32-bit. */
export function murmur2(key: string | Uint8Array): number {
  if (typeof key === 'string') return isAscii(key) ? murmur2Ascii(key) : murmur2(Buffer.from(key));
  const data = key;
  const length = data.length;
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[tail]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** murmur2() of an ASCII string, read by char code: no Buffer per key. */
function murmur2Ascii(data: string): number {
  const length = data.length;
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      data.charCodeAt(i4) |
      (data.charCodeAt(i4 + 1) << 8) |
      (data.charCodeAt(i4 + 2) << 16) |
      (data.charCodeAt(i4 + 3) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data.charCodeAt(tail + 2) << 16;
  if (rest >= 2) h ^= data.charCodeAt(tail + 1) << 8;
  if (rest >= 1) h = Math.imul(h ^ data.charCodeAt(tail), M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

interface PartitionMetadata {
  partitionId: number;
  leader: number;
}

interface PartitionerArgs {
  topic: string;
  partitionMetadata: PartitionMetadata[];
  message: { partition?: number | null; key?: string | Buffer | null };
}

/**
 * The partitioner's function taking its arguments as they are, set on the partitioners
 * createMurmur2Partitioner makes: groupMessagesPerPartition calls it without an object
 * per message.
 */
const PLACE = Symbol('drover.place');

type Place = (
  topic: string,
  partitionMetadata: PartitionMetadata[],
  message: PartitionerArgs['message'],
) => number;

/** A kafkajs `createPartitioner`, placing messages as DefaultPartitioner does. */
export function createMurmur2Partitioner(): () => (args: PartitionerArgs) => number {
  return () => {
    // One counter per topic the producer sends to: bounded by Drover's topics.
    const counters = new Map<string, number>();
    const place: Place = (topic, partitionMetadata, message) => {
      if (message.partition !== null && message.partition !== undefined) return message.partition;
      const numPartitions = partitionMetadata.length;
      if (message.key !== null && message.key !== undefined)
        return (murmur2(message.key) & 0x7fffffff) % numPartitions;
      let counter = counters.get(topic);
      if (counter === undefined) counter = randomBytes(4).readUInt32BE(0);
      counters.set(topic, ++counter);
      const available = partitionMetadata.filter((p) => p.leader >= 0);
      if (available.length > 0)
        return available[(counter & 0x7fffffff) % available.length]!.partitionId;
      // No partition has a leader: one without, as kafkajs does.
      return (counter & 0x7fffffff) % numPartitions;
    };
    const partitioner = ({ topic, partitionMetadata, message }: PartitionerArgs) =>
      place(topic, partitionMetadata, message);
    return Object.assign(partitioner, { [PLACE]: place });
  };
}

/**
 * Messages per partition, in order, as kafkajs's groupMessagesPerPartition returns
 * them, in linear time: kafkajs copies a partition's array for every message
 * (quadratic in the messages of a send).
 */
export function groupMessagesPerPartition<M>({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: PartitionMetadata[];
  messages: M[];
  partitioner: (args: {
    topic: string;
    partitionMetadata: PartitionMetadata[];
    message: M;
  }) => number;
}): Record<number, M[]> {
  const result: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  const place = (partitioner as { [PLACE]?: Place })[PLACE];
  if (!place) {
    for (const message of messages) {
      const partition = partitioner({ topic, partitionMetadata, message });
      (result[partition] ??= []).push(message);
    }
    return result;
  }
  // Drover's partitioner: called directly, and a key like the message before's (events
  // come in runs of a service) placed where that one went, which is where murmur2 puts it.
  let lastKey: unknown;
  let lastPartition = -1;
  let list: M[] | undefined;
  for (const message of messages) {
    const m = message as PartitionerArgs['message'];
    const key = m.key;
    if (typeof key !== 'string' || key !== lastKey || (m.partition ?? null) !== null) {
      const partition = place(topic, partitionMetadata, m);
      if (partition !== lastPartition || !list) list = result[partition] ??= [];
      lastPartition = partition;
      lastKey = typeof key === 'string' && (m.partition ?? null) === null ? key : undefined;
    }
    list!.push(message);
  }
  return result;
}
