import type {
  Admin,
  EachBatchHandler,
  Consumer as KafkaConsumer,
  Kafka,
  KafkaConfig,
  Producer,
} from 'kafkajs';
import type * as KafkaJs from 'kafkajs';
import type { Event } from '../model/event.ts';
import { Batcher } from './batcher.ts';
import { DEFAULT_MAX_ATTEMPTS, deliver } from './deliver.ts';
import { DEAD_LETTER_BODY_CHARS, keyOf, serialize } from './encode.ts';
import { KafkaChangelog } from './kafka-changelog.ts';
import { type CorruptRecordBatchError, corruptionOf, skipTarget } from './kafka-fetch.ts';
import { type FetchedBatch, kafkajs, ON_FETCH, rangedValues } from './kafkajs.ts';
import { createTopicsSettled } from './kafka-topics.ts';
import { createMurmur2Partitioner } from './kafka-partition.ts';
import { globalAssigner, taskAssigner, tasksOf } from './kafka-tasks.ts';
import {
  type Bus,
  type BusMessage,
  type Consumer,
  type ConsumeOptions,
  type InputFlow,
  type InputRef,
  type JsonWriter,
  type PublishBatch,
  type PublishResult,
  type Topic,
  topicOf,
} from './types.ts';

/** Partitions handed to a merging handler at once: more than Drover's topics have. */
const FLOW_CONCURRENCY = 64;

/**
 * How long the broker holds a fetch that finds nothing new (kafkajs's maxWaitTimeInMs,
 * 5 s by default). A consumer's stop waits for the fetch in flight, so with 5 s a rules
 * worker took 3.4-5 s to stop and its tasks stood still meanwhile; an idle consumer
 * fetches once per this period instead (bench/README.md, "Idle rules worker").
 */
const FETCH_WAIT_MS = 1_000;

/**
 * The Kafka bus: a topic per kind (`<prefix>logs`, `<prefix>metrics`), messages keyed
 * by service so a service's events keep their order on one partition, the idempotent
 * producer with acks=-1 and lz4. kafkajs sends what it is given, so Drover batches (see
 * batcher.ts). Refused events go to `<prefix>deadletter`, keyed like the event, with
 * the reason in the `drover.reason` header. Consumers commit offsets only after their
 * handler is done; delivery is at-least-once.
 */
export interface KafkaBusOptions {
  brokers: string[];
  clientId?: string;
  /** Default `drover.`. */
  topicPrefix?: string;
  /** Partitions of topics Drover creates. Default 3. */
  partitions?: number;
  /** How long rewind() waits for a group's departed members to time out. Default 60 s. */
  rewindTimeoutMs?: number;
  /** Replication factor of topics Drover creates. Default: the broker's default. */
  replicationFactor?: number;
  /** How long a publish waits for others to share its send. Default 5 ms. */
  lingerMs?: number;
  /** Most messages per send. Default 5,000. */
  maxBatchMessages?: number;
  /**
   * Larger events are refused and dead-lettered. Default 1 MiB, lowered to what the
   * topics' `max.message.bytes` lets through.
   */
  maxEventBytes?: number;
  /**
   * How record batches are compressed: `lz4` (default), `gzip` or `none`. Lz4 (Kafka's
   * LZ4 frame, lz4.ts) costs the producer less CPU than gzip (level 1) and about 1.6×
   * its bytes on the wire and on disk; none about what lz4 costs, at about 5× its bytes;
   * consumers read any of them (kafka-fetch.ts; bench/README.md, "The Kafka bus's
   * default codec"). Drover reads no snappy or zstd, so a topic's `compression.type`
   * must stay `producer`, `uncompressed`, `gzip` or `lz4`: with snappy or zstd the broker
   * would recompress into what Drover's consumers cannot read.
   */
  compression?: 'gzip' | 'lz4' | 'none';
  /** Events queued or in flight before publish pushes back. Default 100,000. */
  maxQueued?: number;
  /**
   * The consumer groups' session timeout: a member unheard this long is removed and its
   * partitions move. Default kafkajs's 30 s. Heartbeats go every third of it, at most
   * every 3 s (kafkajs's default), and a fetch waits at most that long for messages, so
   * an idle consumer still heartbeats on time.
   */
  sessionTimeoutMs?: number;
  /** Failures the bus recovers from on its own (a handler that threw, an unreadable message). */
  onError?: (err: Error, context: string) => void;
  /**
   * What a consumer group does with a record batch that is still corrupt when fetched
   * again (kafka-fetch.ts: a CRC-32C mismatch, lengths its bytes cannot hold, records that
   * do not decompress): `stop` (default) stops consuming that partition in that group,
   * every other partition goes on; `skip` skips the batch's offsets. Skipping removes
   * events, and missing events make absence rules (flatline, expiry) fire: see
   * docs/configuration.md, `bus.corruptBatch`.
   */
  corruptBatch?: CorruptBatchPolicy;
  /** Told once per corrupt batch and consumer group, when the policy is applied to it. */
  onCorruptBatch?: (report: CorruptBatchReport) => void;
  /** More kafkajs client settings: `ssl`, `sasl`, `connectionTimeout`, `retry`... */
  client?: Omit<KafkaConfig, 'brokers' | 'clientId'>;
}

export type CorruptBatchPolicy = 'stop' | 'skip';

/** A corrupt record batch a consumer group stopped at or skipped. */
export interface CorruptBatchReport {
  group: string;
  topic: Topic;
  partition: number;
  /** The batch's first offset, and its last as its header says (undefined if unreadable). */
  firstOffset: string;
  lastOffset: string | undefined;
  action: CorruptBatchPolicy;
  /** `skip`: the offset consumption goes on from. */
  next?: string;
  error: CorruptRecordBatchError;
}

/**
 * A partition a consumer group stopped consuming at a corrupt batch (`stop`), or a
 * changelog partition whose corrupt batch stopped the restore of a group's tasks
 * (`topic` is then the changelog's, `rules-state` or `rules-global-state`).
 */
export interface StoppedPartition {
  group: string;
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string | undefined;
  /** When it stopped (ISO 8601). */
  since: string;
  reason: string;
}

export interface KafkaGroupLag {
  topic: Topic;
  partition: number;
  /** The group's committed offset; -1 when it has committed none. */
  committed: string;
  /** The partition's high watermark (the next offset to be written). */
  end: string;
  lag: number;
}

export interface KafkaBusStats {
  queued: number;
  sentBatches: number;
  sentMessages: number;
}

/**
 * A consumer whose group hands out tasks (partition i of every topic, kafka-tasks.ts)
 * and whose position the caller commits, not the handler (the rules workers,
 * pipeline/rules-tasks.ts).
 */
export interface TaskModeOptions {
  /**
   * At each assignment (the tasks this member now holds), before any batch of it is
   * handled: the handler waits until it resolves.
   */
  onAssigned(tasks: number[], consumer: TaskConsumer): Promise<void>;
  /** The group began a rebalance: the tasks held may move. */
  onRebalancing(): void;
  /**
   * A heartbeat succeeded: the broker had this member in `generation` when it received
   * it, no earlier than `sent` (performance.now() when the request went out), so it
   * cannot have removed the member before `sent` + the session timeout.
   */
  onHeartbeat?(sent: number, generation: number): void;
  /**
   * `global`: one task of every partition, to one member (kafka-tasks.ts, globalAssigner);
   * `onAssigned` is then given the partition numbers that member holds (all, or none).
   * Default: a task per partition number (taskAssigner).
   */
  assigner?: 'tasks' | 'global';
}

/**
 * kafkajs's default session timeout, and the timing derived from one (consumer()): the
 * heartbeat and the fetch wait each at most a third of it.
 */
export const DEFAULT_SESSION_TIMEOUT_MS = 30_000;
export function groupTiming(sessionTimeoutMs = DEFAULT_SESSION_TIMEOUT_MS): {
  sessionTimeout: number;
  heartbeatInterval: number;
  maxWaitTimeInMs: number;
} {
  const third = Math.floor(sessionTimeoutMs / 3);
  return {
    sessionTimeout: sessionTimeoutMs,
    heartbeatInterval: Math.min(3_000, third),
    maxWaitTimeInMs: Math.min(FETCH_WAIT_MS, third),
  };
}

export interface TaskConsumer extends Consumer {
  /**
   * Commits `topic/partition` → next offset with the member's current generation (the
   * broker refuses a stale one), and returns that generation.
   */
  commit(positions: Record<string, number>): Promise<number>;
  /** Moves the next fetch of a partition to `offset`. */
  seek(topic: Topic, partition: number, offset: number): void;
  /**
   * Stops fetching a partition (a task that cannot run: its restore stopped), as a
   * partition the flow pauses: it is resumed once the flow no longer pauses it, looked
   * at when the flow wakes the consumer and at each assignment.
   */
  pause(topic: Topic, partition: number): void;
  /**
   * The high watermark (next offset to be written) per `topic/partition` as last read,
   * and when (`performance.now()`, monotonic): from each fetch response, for every
   * partition it asked for, those that brought nothing too (the broker answers each with
   * its high watermark), at no cost, and from readEnds(). The reading taken last wins, so
   * a log truncated on the broker moves back. A fetch waits at most `maxWaitTimeInMs`
   * (1 s by default) for messages, so a partition the consumer fetches has a reading at
   * most one fetch old; one it does not fetch (paused, stopped at a corrupt batch, not
   * yet fetched since the assignment) keeps its last reading or has none.
   */
  ends(): ReadonlyMap<string, EndReading>;
  /** Reads every partition's high watermark from the broker (the admin client) into ends(). */
  readEnds(): Promise<void>;
}

export interface EndReading {
  end: number;
  at: number;
  /**
   * When the request that read it was sent (`performance.now()`): the broker answered
   * after that. Undefined for a reading taken from a handled batch.
   */
  asked?: number;
}

/**
 * An event serialized for Kafka (a string value and its key), or why Kafka refuses it
 * (it then goes to the dead-letter topic).
 */
type Prepared =
  | { ok: true; body: string; topic: Topic; key: string }
  | { ok: false; reason: string; body: string; key: string };

/**
 * Bytes of the buffers batches write events into (addJson), shared by all batches of
 * the process. An event is sent as a view of the buffer, the bytes the encoder copies
 * into the record batch: no string per event, no second UTF-8 encoding. A buffer lives
 * until the last send holding a view of it is done; a new one is taken when the next
 * event does not fit in the rest, so at most one event's size is left unused per buffer
 * and the bytes held stay within twice the queued events' (the batcher bounds those).
 */
const SLAB_BYTES = 64 << 10;
let slab = Buffer.alloc(0);
let slabUsed = 0;

/**
 * A publish's messages for Kafka, made as events are added: kafkajs's messages
 * themselves (it reads key, value and headers), one object per event. A refused event
 * is a dead-letter message in its place, and listed in `refused`.
 */
class KafkaBatch implements PublishBatch {
  readonly messages: Outgoing[] = [];
  /** Refused events by their index in the batch, ascending. */
  readonly refused: Array<{ index: number; reason: string }> = [];
  private count = 0;

  constructor(readonly bus: KafkaBus) {}

  add(event: Event): void {
    const index = this.count++;
    const p = this.bus.prepare(event);
    if (p.ok) {
      this.messages.push({
        topic: this.bus.topicName(p.topic),
        key: p.key,
        value: p.body,
        bytes: Buffer.byteLength(p.body),
      });
    } else this.refuse(index, p.key, p.body, p.reason);
  }

  addJson(topic: Topic, key: string, write: JsonWriter): void {
    const index = this.count++;
    const limit = this.bus.eventSizeLimit;
    let start = slabUsed;
    let end = write(slab, start);
    if (end > slab.length) {
      const size = end - start;
      if (size > limit) {
        const whole = Buffer.allocUnsafe(size);
        write(whole, 0);
        this.refuseBytes(index, key, whole, limit);
        return;
      }
      slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, size));
      slabUsed = start = 0;
      end = write(slab, 0);
    }
    if (end - start > limit) {
      // Read at once; the next event is written over it.
      this.refuseBytes(index, key, slab.subarray(start, end), limit);
      return;
    }
    slabUsed = end;
    // The event as a range of the slab: a Buffer view per event was a hundred bytes that
    // lived until the broker answered, copied by every scavenge meanwhile.
    if (rangedValues())
      this.messages.push({
        topic: this.bus.topicName(topic),
        key,
        value: slab,
        valueStart: start,
        valueEnd: end,
        bytes: end - start,
      });
    else
      this.messages.push({
        topic: this.bus.topicName(topic),
        key,
        value: slab.subarray(start, end),
        bytes: end - start,
      });
  }

  private refuseBytes(index: number, key: string, bytes: Buffer, limit: number): void {
    const reason = `event of ${bytes.length} bytes exceeds the limit of ${limit}`;
    this.refuse(index, key, bytes.toString('utf8').slice(0, DEAD_LETTER_BODY_CHARS), reason);
  }

  private refuse(index: number, key: string, body: string, reason: string): void {
    this.refused.push({ index, reason });
    this.messages.push({
      topic: this.bus.topicName('deadletter'),
      key,
      value: body,
      headers: { [REASON_HEADER]: reason },
      bytes: body.length + reason.length,
    });
  }

  get length(): number {
    return this.count;
  }
}

interface Outgoing {
  topic: string;
  key: string;
  /**
   * A string (add), or the event's bytes in its batch's buffer (addJson): the buffer
   * itself with the event's range in `valueStart` and `valueEnd` when Drover's Produce
   * encoder writes the requests (kafka-produce.ts, ProduceMessage), else a view of it.
   */
  value: string | Buffer;
  valueStart?: number;
  valueEnd?: number;
  headers?: Record<string, string>;
  bytes: number;
}

/** Room left in a record batch for its header and the records' framing. */
const BATCH_OVERHEAD = 16 * 1024;
/** Kafka's default `max.message.bytes`, if the topic's cannot be read. */
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
const REASON_HEADER = 'drover.reason';

export class KafkaBus implements Bus {
  readonly kind = 'kafka' as const;
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly prefix: string;
  private readonly topicNames: Record<Topic | 'deadletter', string>;
  private readonly options: KafkaBusOptions;
  private readonly onError: (err: Error, context: string) => void;
  private batcher: Batcher<Outgoing> | undefined;
  private maxEventBytes = 0;
  private admin: Admin | undefined;
  private readonly consumers = new Set<KafkaConsumer>();
  /** Partitions stopped at a corrupt batch, per `group topic/partition`: bounded by partitions × groups. */
  private readonly stopped = new Map<string, StoppedPartition>();
  private closed = false;
  private readonly compression: KafkaJs.CompressionTypes;

  constructor(options: KafkaBusOptions) {
    if (options.brokers.length === 0) throw new Error('the Kafka bus needs at least one broker');
    this.options = options;
    const { Kafka, logLevel } = kafkajs();
    this.kafka = new Kafka({
      logLevel: logLevel.WARN,
      ...options.client,
      clientId: options.clientId ?? 'drover',
      brokers: options.brokers,
    });
    this.prefix = options.topicPrefix ?? 'drover.';
    this.topicNames = {
      logs: this.topic('logs'),
      metrics: this.topic('metrics'),
      deadletter: this.topic('deadletter'),
    };
    const { CompressionTypes } = kafkajs();
    this.compression =
      options.compression === 'none'
        ? CompressionTypes.None
        : options.compression === 'gzip'
          ? CompressionTypes.GZIP
          : CompressionTypes.LZ4;
    this.onError =
      options.onError ??
      ((err, context) => process.emitWarning(`${context}: ${err.message}`, 'DroverBusWarning'));
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // The Java-compatible murmur2 partitioner: a key lands where Kafka's own clients put
      // it (kafkajs's DefaultPartitioner, in 32-bit arithmetic: kafka-partition.ts).
      createPartitioner: createMurmur2Partitioner(),
    });
  }

  topic(kind: Topic | 'deadletter'): string {
    return `${this.prefix}${kind}`;
  }

  /** Creates the topics if missing, learns their size limit and connects the producer. */
  async start(): Promise<void> {
    const admin = await this.connectedAdmin();
    const names = (['logs', 'metrics', 'deadletter'] as const).map((k) => this.topic(k));
    const existing = new Set(await admin.listTopics());
    const missing = names.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      // Another process may have created them first: fine either way.
      await createTopicsSettled(
        admin,
        missing.map((topic) => ({
          topic,
          numPartitions: this.options.partitions ?? 3,
          replicationFactor: this.options.replicationFactor ?? -1,
        })),
      );
    }
    const topicLimit = await this.maxMessageBytes(admin, names.slice(0, 2));
    this.maxEventBytes = Math.min(this.options.maxEventBytes ?? 1 << 20, topicLimit - 1024);
    this.batcher = new Batcher<Outgoing>(
      {
        lingerMs: this.options.lingerMs ?? 5,
        maxMessages: this.options.maxBatchMessages ?? 5_000,
        maxBytes: topicLimit - BATCH_OVERHEAD,
        maxQueued: this.options.maxQueued ?? 100_000,
      },
      (messages) => this.send(messages),
    );
    await this.producer.connect();
  }

  /** The smallest `max.message.bytes` of the topics: one record batch may not exceed it. */
  private async maxMessageBytes(admin: Admin, topics: string[]): Promise<number> {
    try {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: topics.map((name) => ({
          type: kafkajs().ConfigResourceTypes.TOPIC,
          name,
          configNames: ['max.message.bytes'],
        })),
      });
      const limits = resources
        .flatMap((r) => r.configEntries)
        .map((e) => Number(e.configValue))
        .filter((n) => Number.isFinite(n) && n > 0);
      return limits.length > 0 ? Math.min(...limits) : KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    } catch (err) {
      // Reading configs may be denied by ACLs: assume Kafka's default.
      this.onError(err as Error, "reading the topics' max.message.bytes");
      return KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    }
  }

  private async connectedAdmin(): Promise<Admin> {
    // kafkajs clients are not to be used after close (a closed bus never reconnects).
    if (this.closed) throw new Error('the bus is closed');
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  /** The largest event publish accepts, after the topics' own limit. */
  get eventSizeLimit(): number {
    return this.maxEventBytes;
  }

  async publish(events: Event[]): Promise<PublishResult> {
    if (!Array.isArray(events)) throw new TypeError('publish takes an array of events');
    const batch = new KafkaBatch(this);
    for (const e of events) batch.add(e);
    return this.publishBatch(batch);
  }

  batch(): PublishBatch {
    return new KafkaBatch(this);
  }

  publishBatch(batch: PublishBatch): Promise<PublishResult> {
    if (!(batch instanceof KafkaBatch) || batch.bus !== this)
      return Promise.reject(new TypeError('publishBatch takes a batch made by this bus'));
    return this.publishMessages(batch);
  }

  /** `<prefix><kind>`, made once per kind. */
  topicName(kind: Topic | 'deadletter'): string {
    return this.topicNames[kind];
  }

  prepare(event: Event): Prepared {
    const s = serialize(event, this.maxEventBytes);
    if (!s.ok) {
      const { code: _code, ...refused } = s;
      return { ...refused, key: s.code === 'not-an-event' ? '' : keyOf(event) };
    }
    return { ok: true, body: s.body, topic: topicOf(event), key: keyOf(event) };
  }

  private async publishMessages(batch: KafkaBatch): Promise<PublishResult> {
    if (this.closed) throw new Error('the bus is closed');
    if (!this.batcher) throw new Error('the Kafka bus is not started (use createKafkaBus)');
    const result: PublishResult = { accepted: [], rejected: batch.refused };
    let r = 0;
    for (let index = 0; index < batch.length; index++) {
      if (r < batch.refused.length && batch.refused[r]!.index === index) r++;
      else result.accepted.push(index);
    }
    await this.batcher.add(batch.messages);
    return result;
  }

  private async send(messages: Outgoing[]): Promise<void> {
    // The outgoing messages are kafkajs's messages themselves (it reads key, value and
    // headers): no second object per message.
    const topic = messages[0]?.topic;
    if (topic !== undefined && messages.every((m) => m.topic === topic)) {
      // One topic (most sends): the list as it is, no second array.
      await this.producer.sendBatch({
        acks: -1,
        compression: this.compression,
        topicMessages: [{ topic, messages }],
      });
      return;
    }
    const byTopic = new Map<string, Outgoing[]>();
    for (const m of messages) {
      let list = byTopic.get(m.topic);
      if (!list) byTopic.set(m.topic, (list = []));
      list.push(m);
    }
    await this.producer.sendBatch({
      acks: -1,
      compression: this.compression,
      topicMessages: [...byTopic].map(([topic, list]) => ({ topic, messages: list })),
    });
  }

  /** The partitions consumer groups of this bus stopped at a corrupt batch (`bus.corruptBatch: stop`). */
  stoppedPartitions(): StoppedPartition[] {
    return [...this.stopped.values()];
  }

  /**
   * Lists a changelog partition whose corrupt batch (located: its topic and partition
   * known) stopped the restore of `group`'s tasks, until forgetStopped(): one entry per
   * group and changelog partition, so bounded by those.
   */
  noteStoppedRestore(group: string, err: CorruptRecordBatchError): StoppedPartition {
    const full = err.topic ?? '';
    const topic = full.startsWith(this.prefix) ? full.slice(this.prefix.length) : full;
    const entry: StoppedPartition = {
      group,
      topic,
      partition: err.partition ?? -1,
      firstOffset: err.firstOffset,
      lastOffset: err.lastOffset,
      since: new Date().toISOString(),
      reason: err.detail,
    };
    this.stopped.set(`${group} ${topic}/${entry.partition}`, entry);
    return entry;
  }

  /** Unlists what noteStoppedRestore() listed. */
  forgetStopped(entry: StoppedPartition): void {
    this.stopped.delete(`${entry.group} ${entry.topic}/${entry.partition}`);
  }

  /**
   * The changelog of the rules' task state (`<prefix>rules-state`, or the global task's
   * `<prefix>rules-global-state`), created if missing.
   */
  async changelog(tasks: number, name = 'rules-state'): Promise<KafkaChangelog> {
    const log = new KafkaChangelog(
      this.kafka,
      await this.connectedAdmin(),
      this.producer,
      `${this.prefix}${name}`,
    );
    await log.ensure(tasks, this.options.replicationFactor ?? -1);
    return log;
  }

  /** Partitions per topic: the rules' tasks need the same count on each. */
  async partitionCounts(topics: Topic[]): Promise<Record<Topic, number>> {
    const admin = await this.connectedAdmin();
    const meta = await admin.fetchTopicMetadata({ topics: topics.map((t) => this.topic(t)) });
    const out = {} as Record<Topic, number>;
    for (const t of meta.topics)
      out[t.name.slice(this.prefix.length) as Topic] = t.partitions.length;
    return out;
  }

  /** A group's committed offsets per `topic/partition` (absent where it committed none). */
  async committed(group: string, topics: Topic[]): Promise<Record<string, number>> {
    const admin = await this.connectedAdmin();
    const out: Record<string, number> = {};
    for (const { topic, partitions } of await admin.fetchOffsets({
      groupId: group,
      topics: topics.map((t) => this.topic(t)),
    }))
      for (const p of partitions)
        if (p.offset !== '-1')
          out[`${topic.slice(this.prefix.length)}/${p.partition}`] = Number(p.offset);
    return out;
  }

  /** Members a group has now (0 when it is empty or unknown). */
  async groupMembers(group: string): Promise<number> {
    const admin = await this.connectedAdmin();
    const { groups } = await admin.describeGroups([group]);
    return groups[0]?.members.length ?? 0;
  }

  /** The high watermark (next offset to be written) per `topic/partition`. */
  async latest(topics: Topic[]): Promise<Record<string, number>> {
    const admin = await this.connectedAdmin();
    const out: Record<string, number> = {};
    for (const topic of topics)
      for (const o of await admin.fetchTopicOffsets(this.topic(topic)))
        out[`${topic}/${o.partition}`] = Number(o.high);
    return out;
  }

  /** The earliest retained offset per `topic/partition`. */
  async earliest(topics: Topic[]): Promise<Record<string, number>> {
    const admin = await this.connectedAdmin();
    const out: Record<string, number> = {};
    for (const topic of topics)
      for (const o of await admin.fetchTopicOffsets(this.topic(topic)))
        out[`${topic}/${o.partition}`] = Number(o.low);
    return out;
  }

  consumeTasks(options: ConsumeOptions, tasks: TaskModeOptions): Promise<TaskConsumer> {
    return this.consume(options, tasks) as Promise<TaskConsumer>;
  }

  async consume(options: ConsumeOptions, tasks?: TaskModeOptions): Promise<Consumer> {
    if (this.closed) throw new Error('the bus is closed');
    if (options.topics.length === 0) throw new Error('consume needs at least one topic');
    const consumer = this.kafka.consumer({
      groupId: options.group,
      allowAutoTopicCreation: false,
      ...groupTiming(this.options.sessionTimeoutMs),
      ...(tasks && {
        partitionAssigners: [tasks.assigner === 'global' ? globalAssigner : taskAssigner],
      }),
    });
    await consumer.connect();
    let stopping = false;
    // High watermarks as last read, per `topic/partition` of the topics consumed (bounded
    // by their partition counts, which the broker decides, not the events).
    const ends = new Map<string, EndReading>();
    const noteEnd = (at: string, reading: EndReading) => {
      const was = ends.get(at);
      if (!was || reading.at >= was.at) ends.set(at, reading);
      if (reading.asked !== undefined && options.flow?.reading) {
        const slash = at.lastIndexOf('/');
        options.flow.reading(
          { topic: at.slice(0, slash) as Topic, partition: Number(at.slice(slash + 1)) },
          reading.end,
          reading.asked,
        );
      }
    };
    const readEnds = async () => {
      const at = performance.now();
      const latest = await this.latest(options.topics);
      for (const [k, end] of Object.entries(latest)) noteEnd(k, { end, at, asked: at });
    };
    // One read from the broker at a time. A call while one runs gets the next read, which
    // starts once that one is done (shared by every call made meanwhile): what a caller
    // gets was read after it asked.
    let reading: Promise<void> | undefined;
    let next: Promise<void> | undefined;
    const startRead = (): Promise<void> =>
      (reading = readEnds().finally(() => (reading = undefined)));
    const readEndsOnce = (): Promise<void> => {
      if (!reading) return startRead();
      return (next ??= reading
        .catch(() => {})
        .then(() => {
          next = undefined;
          return startRead();
        }));
    };
    // Task mode: batches wait for the caller's handling of the latest assignment.
    let assignedReady: Promise<void> = Promise.resolve();
    let generation = -1;
    let heartbeatSent: number | undefined;
    const taskConsumer: TaskConsumer = {
      stop: () => stop(),
      commit: async (positions) => {
        const byTopic = new Map<string, Array<{ partition: number; offset: string }>>();
        for (const [at, offset] of Object.entries(positions)) {
          const slash = at.lastIndexOf('/');
          const topic = this.topic(at.slice(0, slash) as Topic);
          let list = byTopic.get(topic);
          if (!list) byTopic.set(topic, (list = []));
          list.push({ partition: Number(at.slice(slash + 1)), offset: String(offset) });
        }
        await consumer.commitOffsets(
          [...byTopic].flatMap(([topic, ps]) => ps.map((p) => ({ topic, ...p }))),
        );
        // COMMIT_OFFSETS is emitted before commitOffsets resolves, with the generation used.
        return generation;
      },
      seek: (topic, partition, offset) =>
        consumer.seek({ topic: this.topic(topic), partition, offset: String(offset) }),
      pause: (topic, partition) => {
        if (follow) follow.hold({ topic, partition });
        else consumer.pause([{ topic: this.topic(topic), partitions: [partition] }]);
      },
      ends: () => ends,
      readEnds: readEndsOnce,
    };
    const offTaskEvents = tasks
      ? [
          consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
            assignedReady = tasks
              .onAssigned(tasksOf(payload.memberAssignment), taskConsumer)
              .catch((err: unknown) =>
                this.onError(err as Error, `consumer group "${options.group}" assignment`),
              );
          }),
          consumer.on(consumer.events.REBALANCING, () => tasks.onRebalancing()),
          consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
            generation = payload.groupGenerationId;
          }),
          // kafkajs sends one heartbeat at a time per group; its request's event (on the
          // response, before it is parsed) comes before HEARTBEAT, which only a heartbeat
          // the broker accepted emits. sentAt is the wall clock: turned monotonic here.
          consumer.on(consumer.events.REQUEST, ({ payload }) => {
            if (payload.apiName === 'Heartbeat')
              heartbeatSent = performance.now() - (Date.now() - payload.sentAt);
          }),
          consumer.on(consumer.events.HEARTBEAT, ({ payload }) => {
            if (heartbeatSent !== undefined)
              tasks.onHeartbeat?.(heartbeatSent, payload.groupGenerationId);
            heartbeatSent = undefined;
          }),
        ]
      : [];
    const flow = options.flow;
    // Partitions this consumer stopped at a corrupt batch (`stop`), as `topic/partition`:
    // bounded by the partitions assigned.
    const mine = new Set<string>();
    const follow = flow
      ? this.followFlow(
          consumer,
          options.group,
          flow,
          () => stopping,
          (ref) => mine.has(`${ref.topic}/${ref.partition}`),
          // Task mode: the caller knows where each task starts (followFlow).
          !tasks,
        )
      : undefined;
    const policy = this.options.corruptBatch ?? 'stop';
    // The corrupt batch last fetched at the head of each `topic/partition` (bounded by
    // the partitions assigned), and whether the policy was reported for it.
    const corrupt = new Map<string, { first: string; reported: boolean }>();
    /**
     * A partition's fetch that brought no record before a corrupt batch. The first time
     * that batch is fetched again (nothing is resolved: a read damaged on the way heals);
     * the second time the policy applies, reported once per batch; after that (the
     * partition fetched again after a rebalance or a restart of kafkajs's consumer) it
     * applies silently.
     */
    const onCorrupt = async (
      batch: KafkaJs.Batch,
      bad: CorruptRecordBatchError,
      resolveOffset: (offset: string) => void,
    ): Promise<void> => {
      const topic = batch.topic.slice(this.prefix.length) as Topic;
      const at = `${topic}/${batch.partition}`;
      const seen = corrupt.get(at);
      if (seen?.first !== bad.firstOffset) {
        corrupt.set(at, { first: bad.firstOffset, reported: false });
        return;
      }
      const report = !seen.reported;
      seen.reported = true;
      const base = {
        group: options.group,
        topic,
        partition: batch.partition,
        firstOffset: bad.firstOffset,
        lastOffset: bad.lastOffset,
        error: bad,
      };
      if (policy === 'stop') {
        // Paused in kafkajs: its fetches leave the partition out, with no loop and no log.
        consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
        mine.add(at);
        this.stopped.set(`${options.group} ${at}`, {
          group: options.group,
          topic,
          partition: batch.partition,
          firstOffset: bad.firstOffset,
          lastOffset: bad.lastOffset,
          since: new Date().toISOString(),
          reason: bad.detail,
        });
        if (report) this.options.onCorruptBatch?.({ ...base, action: 'stop' });
        return;
      }
      // Past the batch, as far as the fetch confirms its end (skipTarget): its header
      // failed the CRC, so a damaged lastOffsetDelta cannot skip good records.
      const fetched = BigInt((batch as unknown as { fetchedOffset: string }).fetchedOffset);
      const end = BigInt(batch.highWatermark);
      const next = skipTarget(bad, fetched, end);
      resolveOffset(String(next - 1n));
      if (!tasks)
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: String(next) },
        ]);
      if (report) this.options.onCorruptBatch?.({ ...base, action: 'skip', next: String(next) });
      const ref = { topic, partition: batch.partition };
      flow?.skipped?.(ref, Number(next));
      follow?.delivered(ref, next, end);
    };
    // A stopped partition the group gives to another member is that member's to stop;
    // here it is resumed (if it comes back, it is stopped again at its first fetch).
    const offStoppedJoin = consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const assigned = new Set<string>();
      for (const [name, partitions] of Object.entries(payload.memberAssignment))
        for (const partition of partitions)
          assigned.add(`${name.slice(this.prefix.length)}/${partition}`);
      for (const at of [...mine]) {
        if (assigned.has(at)) continue;
        mine.delete(at);
        this.stopped.delete(`${options.group} ${at}`);
        const slash = at.lastIndexOf('/');
        consumer.resume([
          {
            topic: this.topic(at.slice(0, slash) as Topic),
            partitions: [Number(at.slice(slash + 1))],
          },
        ]);
      }
    });
    const forgetStopped = () => {
      offStoppedJoin();
      for (const at of mine) this.stopped.delete(`${options.group} ${at}`);
      mine.clear();
    };
    try {
      await consumer.subscribe({
        topics: options.topics.map((t) => this.topic(t)),
        fromBeginning: true,
      });
      // Task mode: every fetch response's high watermarks, the partitions with nothing new
      // included (kafkajs.ts, ON_FETCH), so ends() has a reading of every partition the
      // consumer fetches at most one fetch old (a fetch waits at most maxWaitTimeInMs).
      const onFetch = (batches: FetchedBatch[], asked: number) => {
        const at = performance.now();
        for (const b of batches) {
          const end = Number(b.highWatermark);
          // A broker answers -1 for a partition it could not read: no reading.
          if (!Number.isSafeInteger(end) || end < 0) continue;
          noteEnd(`${b.topic.slice(this.prefix.length)}/${b.partition}`, { end, at, asked });
        }
      };
      const eachBatch: EachBatchHandler & { [ON_FETCH]?: typeof onFetch } =
        // eslint-disable-next-line @typescript-eslint/unbound-method -- kafkajs passes these as closures, destructuring them is its documented use
        async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
          // A corrupt batch with nothing before it (kafka-fetch.ts); one after records is
          // at the head of the partition's next fetch.
          const bad = corruptionOf((batch as unknown as { rawMessages?: unknown }).rawMessages);
          if (bad && batch.messages.length === 0) {
            if (tasks) await assignedReady;
            if (!stopping && isRunning() && !isStale()) await onCorrupt(batch, bad, resolveOffset);
            return;
          }
          if (batch.messages.length === 0) return;
          const topic = batch.topic.slice(this.prefix.length) as Topic;
          noteEnd(`${topic}/${batch.partition}`, {
            end: Number(batch.highWatermark),
            at: performance.now(),
          });
          if (tasks) await assignedReady;
          const messages: BusMessage[] = [];
          for (const m of batch.messages) {
            try {
              const event = JSON.parse(m.value?.toString() ?? '') as Event;
              if (typeof event !== 'object' || event === null || Array.isArray(event))
                throw new Error('not an event object');
              messages.push({
                topic,
                partition: batch.partition,
                offset: m.offset,
                key: m.key?.toString() ?? '',
                event,
              });
            } catch (err) {
              // Something else wrote to our topic: keep it aside rather than stall the partition.
              await this.deadLetterUnreadable(batch.topic, batch.partition, m, err as Error);
            }
          }
          const commit = async (offset: string) => {
            resolveOffset(offset);
            // Task mode: the caller commits what its snapshots record.
            if (tasks) return;
            await consumer.commitOffsets([
              {
                topic: batch.topic,
                partition: batch.partition,
                offset: (BigInt(offset) + 1n).toString(),
              },
            ]);
          };
          if (messages.length > 0) {
            const done = await deliver(
              { topic, partition: batch.partition, messages },
              {
                handler: options.handler,
                maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
                commit: (last) => commit(last.offset),
                deadLetter: (m, reason) =>
                  this.deadLetterFailed(
                    m,
                    `consumer group "${options.group}" at ${batch.topic}/${batch.partition}@${m.offset}: ${reason}`,
                  ),
                backoff: async (failures) => {
                  await heartbeat();
                  await new Promise((r) =>
                    setTimeout(r, Math.min(5_000, 50 * 2 ** Math.min(failures, 7))),
                  );
                },
                running: () => !stopping && isRunning() && !isStale(),
                onError: this.onError,
                describe: (ms) =>
                  `consumer group "${options.group}" failed a batch of ${ms.length} from ${batch.topic}/${batch.partition} at offset ${ms[0]!.offset}`,
              },
            );
            if (!done) return;
          }
          // Past unreadable messages at the end of the batch too.
          await commit(batch.lastOffset());
          follow?.delivered(
            { topic, partition: batch.partition },
            BigInt(batch.lastOffset()) + 1n,
            BigInt(batch.highWatermark),
          );
        };
      if (tasks) eachBatch[ON_FETCH] = onFetch;
      await consumer.run({
        // A merging handler gets every batch of a fetch at once (it never blocks, see
        // InputFlow), so it sees all inputs before deciding which is ahead.
        ...(flow && { partitionsConsumedConcurrently: FLOW_CONCURRENCY }),
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch,
      });
    } catch (err) {
      follow?.stop();
      forgetStopped();
      for (const off of offTaskEvents) off();
      await consumer.disconnect();
      throw err;
    }
    this.consumers.add(consumer);
    const stop = async () => {
      stopping = true;
      follow?.stop();
      forgetStopped();
      for (const off of offTaskEvents) off();
      await consumer.disconnect();
      this.consumers.delete(consumer);
    };
    if (!tasks) return { stop };
    return taskConsumer;
  }

  /**
   * Drives an InputFlow from a kafkajs consumer: the partitions of each assignment, the
   * ones a batch brought to their high watermark are caught up, and a partition the flow
   * pauses is paused in kafkajs (its fetch skips it) until the flow lets it go.
   *
   * `probeLag`: at each assignment, also the partitions the group's lag (read through the
   * admin client, retried each second until it answers) finds at 0. Only for a plain
   * consumer (bench/rules-consumer.ts, or any `consume` with a flow): it commits what it
   * delivers and never seeks, so the group's committed offset is where its fetch starts,
   * and a partition with nothing past it brings no batch to say it is caught up. Not in
   * task mode (the rules tasks, pipeline/rules-tasks.ts): a task restored from the
   * changelog starts at its snapshot's offsets, which may be behind the group's committed
   * ones (no snapshot matches the commit), and a read of the committed offsets answering
   * during its replay would set it caught up, its lag 0 and its clock going with events
   * still to replay (docs/scale-out.md, "Watermarks and the clock"). The tasks tell their
   * merges from their own positions against the fetches' log ends instead.
   */
  private followFlow(
    consumer: KafkaConsumer,
    group: string,
    flow: InputFlow,
    stopping: () => boolean,
    stopped: (ref: InputRef) => boolean,
    probeLag: boolean,
  ) {
    const name = (topic: Topic) => this.topic(topic);
    // Partitions paused here: bounded by the partitions assigned.
    const paused = new Map<string, InputRef>();
    let generation = 0;
    const probe = async (refs: InputRef[], gen: number) => {
      while (!stopping() && gen === generation) {
        try {
          const lags = await this.groupLag(group, [...new Set(refs.map((r) => r.topic))]);
          if (stopping() || gen !== generation) return;
          for (const l of lags)
            if (l.lag === 0 && refs.some((r) => r.topic === l.topic && r.partition === l.partition))
              flow.caughtUp({ topic: l.topic, partition: l.partition }, Number(l.end));
          return;
        } catch (err) {
          this.onError(err as Error, `consumer group "${group}" could not read its lag`);
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    };
    const offJoin = consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const refs: InputRef[] = [];
      for (const [name, partitions] of Object.entries(payload.memberAssignment))
        for (const partition of partitions)
          refs.push({ topic: name.slice(this.prefix.length) as Topic, partition });
      generation++;
      flow.assigned(refs);
      // A partition paused before the rebalance that the flow no longer holds goes again.
      resume();
      if (probeLag) void probe(refs, generation);
    });
    const resume = () => {
      for (const [key, ref] of paused) {
        if (flow.isPaused(ref)) continue;
        paused.delete(key);
        // Stopped at a corrupt batch: stays paused.
        if (stopped(ref)) continue;
        consumer.resume([{ topic: name(ref.topic), partitions: [ref.partition] }]);
      }
    };
    const offResume = flow.onResume(resume);
    return {
      /** Paused now, until the flow no longer pauses it (TaskConsumer.pause). */
      hold(ref: InputRef) {
        paused.set(`${ref.topic}/${ref.partition}`, ref);
        consumer.pause([{ topic: name(ref.topic), partitions: [ref.partition] }]);
      },
      /** After a batch is handled: `next` is the offset after it, `end` the high watermark. */
      delivered(ref: InputRef, next: bigint, end: bigint) {
        if (next >= end) flow.caughtUp(ref, Number(end));
        if (flow.isPaused(ref)) {
          paused.set(`${ref.topic}/${ref.partition}`, ref);
          consumer.pause([{ topic: name(ref.topic), partitions: [ref.partition] }]);
        }
      },
      stop() {
        generation++;
        offJoin();
        offResume();
      },
    };
  }

  /** A message a consumer group failed `maxAttempts` times, with why (see deliver.ts). */
  private async deadLetterFailed(message: BusMessage, reason: string): Promise<void> {
    await this.producer.send({
      topic: this.topic('deadletter'),
      acks: -1,
      compression: this.compression,
      messages: [
        {
          key: message.key,
          value: (JSON.stringify(message.event) ?? '').slice(0, DEAD_LETTER_BODY_CHARS),
          headers: { [REASON_HEADER]: reason },
        },
      ],
    });
  }

  private async deadLetterUnreadable(
    topic: string,
    partition: number,
    message: { offset: string; key: Buffer | null; value: Buffer | null },
    err: Error,
  ): Promise<void> {
    const reason = `unreadable message at ${topic}/${partition}@${message.offset}: ${err.message}`;
    this.onError(err, reason);
    await this.producer.send({
      topic: this.topic('deadletter'),
      acks: -1,
      compression: this.compression,
      messages: [
        {
          key: message.key,
          value: (message.value?.toString() ?? '').slice(0, DEAD_LETTER_BODY_CHARS),
          headers: { [REASON_HEADER]: reason },
        },
      ],
    });
  }

  /** A group's committed offset, end and lag per partition: the bus lag for metrics. */
  async groupLag(group: string, topics: Topic[] = ['logs', 'metrics']): Promise<KafkaGroupLag[]> {
    const admin = await this.connectedAdmin();
    const committed = await admin.fetchOffsets({
      groupId: group,
      topics: topics.map((t) => this.topic(t)),
    });
    const out: KafkaGroupLag[] = [];
    for (const { topic, partitions } of committed) {
      const ends = await admin.fetchTopicOffsets(topic);
      for (const p of partitions) {
        const end = ends.find((e) => e.partition === p.partition);
        if (!end) continue;
        // With nothing committed the group starts at the earliest retained offset.
        const from = p.offset === '-1' ? end.low : p.offset;
        out.push({
          topic: topic.slice(this.prefix.length) as Topic,
          partition: p.partition,
          committed: p.offset,
          end: end.high,
          lag: Math.max(0, Number(BigInt(end.high) - BigInt(from))),
        });
      }
    }
    return out;
  }

  /**
   * Moves a group, while none of its members runs, to the given positions
   * (`"topic/partition"` → next offset to consume); partitions not named go back to their
   * earliest retained offset. The rules engine uses it to replay from the offsets its
   * restored snapshot reflects, whatever the group committed after that snapshot.
   */
  async rewind(group: string, positions: Record<string, number>, topics: Topic[]): Promise<void> {
    const admin = await this.connectedAdmin();
    for (const topic of topics) {
      const ends = await admin.fetchTopicOffsets(this.topic(topic));
      const request = {
        groupId: group,
        topic: this.topic(topic),
        partitions: ends.map((e) => {
          const at = positions[`${topic}/${e.partition}`];
          // Retention may have dropped what the snapshot still wanted: start at the earliest.
          const offset = at === undefined ? e.low : String(Math.max(at, Number(e.low)));
          return { partition: e.partition, offset };
        }),
      };
      // A member of a killed process stays in the group until its session times out
      // (30 s by default); the group can only be moved once it is empty.
      const deadline = Date.now() + (this.options.rewindTimeoutMs ?? 60_000);
      for (;;) {
        try {
          await admin.setOffsets(request);
          break;
        } catch (err) {
          if (!/no running instances/i.test((err as Error).message) || Date.now() > deadline)
            throw err;
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    }
  }

  /** Messages a group has yet to consume, per topic. */
  async lag(group: string): Promise<Record<Topic, number>> {
    const out: Record<Topic, number> = { logs: 0, metrics: 0 };
    for (const p of await this.groupLag(group)) out[p.topic] += p.lag;
    return out;
  }

  stats(): KafkaBusStats {
    return {
      queued: this.batcher?.queued ?? 0,
      sentBatches: this.batcher?.sent.batches ?? 0,
      sentMessages: this.batcher?.sent.messages ?? 0,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Publishes already queued are sent (and their callers answered) before disconnecting.
    await this.batcher?.flush();
    await Promise.all([...this.consumers].map((c) => c.disconnect()));
    this.consumers.clear();
    await this.admin?.disconnect();
    await this.producer.disconnect();
  }
}

export async function createKafkaBus(options: KafkaBusOptions): Promise<KafkaBus> {
  const bus = new KafkaBus(options);
  try {
    await bus.start();
  } catch (err) {
    await bus.close().catch(() => {});
    throw new Error(
      `the Kafka bus could not start (brokers ${options.brokers.join(',')}): ${(err as Error).message}`,
      { cause: err },
    );
  }
  return bus;
}
