import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka, KafkaConfig } from 'kafkajs';
import type { Event } from '../model/event.ts';
import { corruptionOf } from './kafka-fetch.ts';
import { kafkajs } from './kafkajs.ts';

/**
 * Reads the retained Kafka bus for a backtest (`drover backtest --source kafka`): each
 * partition of the topics from the offset of a time up to the end offset it had when
 * the read began (so the read ends however fast the topic grows), the partitions merged
 * in event-time order as the live rules input merges them (pipeline/rules-input.ts: the
 * earliest queued event across partitions; ties to the first partition in topic, then
 * partition order), handed out a page at a time.
 *
 * Offsets by time: Kafka indexes the time a message was published, not its event time.
 * Ingest refuses events more than `maxFutureSkewMs` (5 min) past the clock, so a message
 * published before `from − skew` holds an event before `from`: the read starts at the
 * offset of `from − skew` and drops the events before `from`.
 *
 * The consumer is in a group of its own (`drover-backtest-<random>`), never the serve
 * groups, and commits nothing (autoCommit off, no commitOffsets): the positions of the
 * live groups do not move, and the group it leaves behind holds no offsets.
 *
 * Memory: a partition holding `maxHeldPerPartition` events or more is paused until the
 * merge works it down; held events are at most partitions × (that + one fetch, kafkajs's
 * maxBytesPerPartition, 1 MiB). The partitions are the topics' (configuration).
 */
export interface KafkaScanOptions {
  brokers: string[];
  /** Full topic names (`drover.logs`). */
  topics: string[];
  /** Events before this (epoch ms) are not read. */
  from: number;
  /** How far event times may be ahead of the publish time. Default 5 minutes. */
  maxFutureSkewMs?: number;
  pageSize?: number;
  maxHeldPerPartition?: number;
  client?: Omit<KafkaConfig, 'brokers' | 'clientId'>;
}

export class KafkaScanError extends Error {}

interface PartitionState {
  topic: string;
  partition: number;
  /** The offset the read stops before (the end offset at the start). */
  end: bigint;
  /** The next offset expected; done once it reaches `end`. */
  next: bigint;
  queue: Event[];
  at: number;
  paused: boolean;
}

export class KafkaScan {
  /** Messages in the ranges read (end − start offsets), known after open(). */
  total: number | undefined;
  /** Messages that were not an event object (counted by the caller as bad lines). */
  unreadable = 0;
  private readonly kafka: Kafka;
  private admin: Admin | undefined;
  private consumer: Consumer | undefined;
  private parts: PartitionState[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private readonly pageSize: number;
  private readonly maxHeld: number;

  constructor(private readonly options: KafkaScanOptions) {
    const { Kafka: KafkaClass, logLevel } = kafkajs();
    this.kafka = new KafkaClass({
      ...options.client,
      brokers: options.brokers,
      clientId: 'drover-backtest',
      logLevel: logLevel.NOTHING,
    });
    this.pageSize = options.pageSize ?? 1_000;
    this.maxHeld = options.maxHeldPerPartition ?? 10_000;
  }

  /** Finds each partition's range; errors (no broker, no such topic) before any page. */
  async open(): Promise<void> {
    this.admin = this.kafka.admin();
    try {
      await this.admin.connect();
      const existing = new Set(await this.admin.listTopics());
      for (const topic of this.options.topics)
        if (!existing.has(topic)) throw new KafkaScanError(`no topic "${topic}"`);
      const since = this.options.from - (this.options.maxFutureSkewMs ?? 5 * 60_000);
      let total = 0n;
      for (const topic of this.options.topics) {
        const ends = await this.admin.fetchTopicOffsets(topic);
        const starts = await this.admin.fetchTopicOffsetsByTimestamp(topic, since);
        for (const e of [...ends].sort((a, b) => a.partition - b.partition)) {
          const start = BigInt(starts.find((s) => s.partition === e.partition)?.offset ?? e.high);
          const end = BigInt(e.high);
          const from = start < BigInt(e.low) ? BigInt(e.low) : start;
          if (end > from) total += end - from;
          this.parts.push({
            topic,
            partition: e.partition,
            end,
            next: from,
            queue: [],
            at: 0,
            paused: false,
          });
        }
      }
      this.total = Number(total);
    } catch (err) {
      if (err instanceof KafkaScanError) throw err;
      throw new KafkaScanError(`Kafka: ${(err as Error).message}`);
    }
  }

  private done(p: PartitionState): boolean {
    return p.next >= p.end && p.at >= p.queue.length;
  }

  /** Pages of events merged in event-time order (after open()). */
  async *pages(): AsyncGenerator<Event[]> {
    const pending = this.parts.filter((p) => p.next < p.end);
    if (pending.length > 0) await this.start(pending);
    let page: Event[] = [];
    while (true) {
      if (this.failure) throw this.failure;
      let best: PartitionState | undefined;
      let waiting = false;
      for (const p of this.parts) {
        if (p.at < p.queue.length) {
          if (!best || p.queue[p.at]!['@timestamp'] < best.queue[best.at]!['@timestamp']) best = p;
        } else if (!this.done(p)) waiting = true;
      }
      if (waiting || !best) {
        if (!waiting) break; // every partition read to its end
        if (page.length > 0) {
          yield page;
          page = [];
          continue; // a batch may have come while the page was taken: look again
        }
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      const event = best.queue[best.at++]!;
      if (best.at === best.queue.length) {
        best.queue = [];
        best.at = 0;
      }
      if (best.paused && best.queue.length - best.at < this.maxHeld / 2) {
        best.paused = false;
        this.consumer!.resume([{ topic: best.topic, partitions: [best.partition] }]);
      }
      if (event['@timestamp'] >= this.options.from) page.push(event);
      if (page.length >= this.pageSize) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  private async start(pending: PartitionState[]): Promise<void> {
    const consumer = (this.consumer = this.kafka.consumer({
      groupId: `drover-backtest-${randomUUID()}`,
      allowAutoTopicCreation: false,
    }));
    await consumer.connect();
    await consumer.subscribe({ topics: [...new Set(pending.map((p) => p.topic))] });
    const byKey = new Map(this.parts.map((p) => [`${p.partition}@${p.topic}`, p]));
    consumer.on(consumer.events.CRASH, (e) => {
      this.failure = new KafkaScanError(`Kafka: ${e.payload.error.message}`);
      this.wake?.();
    });
    await consumer
      .run({
        autoCommit: false,
        partitionsConsumedConcurrently: 64,
        eachBatch: async ({ batch }) => {
          const p = byKey.get(`${batch.partition}@${batch.topic}`);
          if (!p) return;
          // A corrupt record batch (kafka-fetch.ts) ends the scan: its events are unknown.
          const bad = corruptionOf((batch as unknown as { rawMessages?: unknown }).rawMessages);
          if (bad && batch.messages.length === 0) {
            consumer.pause([{ topic: p.topic, partitions: [p.partition] }]);
            this.failure ??= new KafkaScanError(`Kafka: ${bad.message}`);
            this.wake?.();
            return;
          }
          for (const m of batch.messages) {
            const offset = BigInt(m.offset);
            if (offset < p.next || offset >= p.end) continue;
            p.next = offset + 1n;
            try {
              const event = JSON.parse(m.value?.toString() ?? '') as Event;
              if (typeof event !== 'object' || event === null || Array.isArray(event))
                throw new Error('not an event object');
              if (!Number.isFinite(event['@timestamp'])) throw new Error('no @timestamp');
              p.queue.push(event);
            } catch {
              this.unreadable++;
            }
          }
          if (batch.messages.length > 0) {
            const last = BigInt(batch.messages[batch.messages.length - 1]!.offset);
            if (last + 1n > p.next) p.next = last + 1n > p.end ? p.end : last + 1n;
          }
          if (p.next >= p.end || p.queue.length - p.at >= this.maxHeld) {
            // Read to its end (nothing more is wanted) or holding enough for now.
            p.paused = p.next < p.end;
            consumer.pause([{ topic: p.topic, partitions: [p.partition] }]);
          }
          this.wake?.();
        },
      })
      .catch((err: unknown) => {
        throw new KafkaScanError(`Kafka: ${(err as Error).message}`);
      });
    for (const p of pending)
      consumer.seek({ topic: p.topic, partition: p.partition, offset: p.next.toString() });
    // Partitions with nothing to read are never fetched.
    const idle = this.parts.filter((p) => p.next >= p.end);
    for (const p of idle) consumer.pause([{ topic: p.topic, partitions: [p.partition] }]);
  }

  async close(): Promise<void> {
    await this.consumer?.disconnect().catch(() => {});
    await this.admin?.disconnect().catch(() => {});
  }
}
