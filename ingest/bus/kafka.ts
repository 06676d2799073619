import {
  CompressionTypes,
  type Consumer as KafkaConsumer,
  Kafka,
  logLevel,
  Partitioners,
  type Producer,
} from 'kafkajs';
import type { Event } from '../event.ts';
import { keyOf } from './embedded.ts';
import {
  type Bus,
  BusBackpressureError,
  type Consumer,
  type ConsumeOptions,
  type PublishResult,
  type Topic,
  topicOf,
} from './types.ts';

/**
 * The Kafka bus: a topic per kind (`<prefix>logs`, `<prefix>metrics`), messages keyed
 * by service so a service's events keep their order on one partition, the idempotent
 * producer with acks=-1 and gzip. kafkajs sends what it is given, so Drover batches:
 * publishes arriving within `lingerMs` go out in one sendBatch, and each caller learns
 * the fate of its own events. Consumers commit offsets only after their handler is done.
 */
export interface KafkaBusOptions {
  brokers: string[];
  clientId?: string;
  topicPrefix?: string;
  /** Partitions of topics Drover creates. Default 3. */
  partitions?: number;
  lingerMs?: number;
  maxBatchMessages?: number;
  /** Larger events are refused and sent to `<prefix>deadletter` with the reason. Default 1 MiB. */
  maxEventBytes?: number;
  /** Events waiting to be sent before publish pushes back. Default 100,000. */
  maxQueued?: number;
}

interface Queued {
  messages: Array<{ topic: string; key: string; value: string; index: number }>;
  result: PublishResult;
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

export class KafkaBus implements Bus {
  readonly kind = 'kafka' as const;
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly prefix: string;
  private readonly options: Required<Omit<KafkaBusOptions, 'brokers' | 'clientId' | 'topicPrefix'>>;
  private queue: Queued[] = [];
  private queuedMessages = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private readonly consumers = new Set<KafkaConsumer>();

  constructor(options: KafkaBusOptions) {
    this.kafka = new Kafka({
      clientId: options.clientId ?? 'drover',
      brokers: options.brokers,
      logLevel: logLevel.WARN,
    });
    this.prefix = options.topicPrefix ?? 'drover.';
    this.options = {
      partitions: options.partitions ?? 3,
      lingerMs: options.lingerMs ?? 5,
      maxBatchMessages: options.maxBatchMessages ?? 5_000,
      maxEventBytes: options.maxEventBytes ?? 1 << 20,
      maxQueued: options.maxQueued ?? 100_000,
    };
    // The Java-compatible murmur2 partitioner: a key lands where Kafka's own clients put it.
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  topic(kind: Topic | 'deadletter'): string {
    return `${this.prefix}${kind}`;
  }

  /** Creates the topics if missing and connects the producer. */
  async start(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      const wanted = (['logs', 'metrics', 'deadletter'] as const)
        .map((k) => this.topic(k))
        .filter((t) => !existing.has(t));
      if (wanted.length > 0) {
        await admin.createTopics({
          waitForLeaders: true,
          topics: wanted.map((topic) => ({ topic, numPartitions: this.options.partitions })),
        });
      }
    } finally {
      await admin.disconnect();
    }
    await this.producer.connect();
  }

  publish(events: Event[]): Promise<PublishResult> {
    if (this.queuedMessages + events.length > this.options.maxQueued) {
      return Promise.reject(
        new BusBackpressureError(`${this.queuedMessages} events are waiting for Kafka`, 1),
      );
    }
    return new Promise((resolve, reject) => {
      const result: PublishResult = { accepted: [], rejected: [] };
      const messages: Queued['messages'] = [];
      events.forEach((event, index) => {
        const value = JSON.stringify(event);
        const bytes = Buffer.byteLength(value);
        if (bytes > this.options.maxEventBytes) {
          const reason = `event of ${bytes} bytes exceeds the limit of ${this.options.maxEventBytes}`;
          result.rejected.push({ index, reason });
          messages.push({
            topic: this.topic('deadletter'),
            key: reason,
            value: value.slice(0, 65_536),
            index: -1,
          });
          return;
        }
        messages.push({ topic: this.topic(topicOf(event)), key: keyOf(event), value, index });
      });
      this.queue.push({ messages, result, resolve, reject });
      this.queuedMessages += messages.length;
      if (this.queuedMessages >= this.options.maxBatchMessages) this.flushSoon(0);
      else this.flushSoon(this.options.lingerMs);
    });
  }

  private flushSoon(ms: number): void {
    if (this.timer && ms > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // One batch in flight at a time keeps the idempotent producer's order.
      this.sending = this.sending.then(() => this.flush());
    }, ms);
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.queuedMessages -= batch.reduce((n, q) => n + q.messages.length, 0);
    if (batch.length === 0) return;
    const byTopic = new Map<string, Array<{ key: string; value: string }>>();
    for (const q of batch) {
      for (const m of q.messages) {
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push({ key: m.key, value: m.value });
      }
    }
    try {
      await this.producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.GZIP,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    } catch (err) {
      // Nothing of this batch is acknowledged: the callers answer with a retryable error.
      for (const q of batch) q.reject(err as Error);
      return;
    }
    for (const q of batch) {
      for (const m of q.messages) if (m.index >= 0) q.result.accepted.push(m.index);
      q.resolve(q.result);
    }
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const consumer = this.kafka.consumer({ groupId: options.group, allowAutoTopicCreation: false });
    await consumer.connect();
    await consumer.subscribe({
      topics: options.topics.map((t) => this.topic(t)),
      fromBeginning: true,
    });
    this.consumers.add(consumer);
    let stopping = false;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        if (batch.messages.length === 0) return;
        const topic = batch.topic.slice(this.prefix.length) as Topic;
        const messages = batch.messages.map((m) => ({
          topic,
          partition: batch.partition,
          offset: m.offset,
          key: m.key?.toString() ?? '',
          event: JSON.parse(m.value!.toString()) as Event,
        }));
        // Retry in place until the handler succeeds: the batch is redelivered, never skipped.
        for (let attempt = 0; ; attempt++) {
          if (stopping || !isRunning() || isStale()) return;
          try {
            await options.handler({ topic, partition: batch.partition, messages });
            break;
          } catch {
            await heartbeat();
            await new Promise((r) =>
              setTimeout(r, Math.min(5_000, 50 * 2 ** Math.min(attempt, 7))),
            );
          }
        }
        resolveOffset(batch.lastOffset());
        const next = (BigInt(batch.lastOffset()) + 1n).toString();
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: next },
        ]);
      },
    });
    return {
      stop: async () => {
        stopping = true;
        await consumer.disconnect();
        this.consumers.delete(consumer);
      },
    };
  }

  async close(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.sending = this.sending.then(() => this.flush());
    }
    await this.sending;
    await Promise.all([...this.consumers].map((c) => c.disconnect()));
    this.consumers.clear();
    await this.producer.disconnect();
  }
}

export async function createKafkaBus(options: KafkaBusOptions): Promise<KafkaBus> {
  const bus = new KafkaBus(options);
  await bus.start();
  return bus;
}
