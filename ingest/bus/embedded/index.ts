/**
 * The embedded bus: a durable append-only log in SQLite (WAL, synchronous=FULL), with
 * per-topic offsets, consumer-group positions, retention and a dead-letter table.
 *
 * Messages are stored in chunks, a row per run of consecutive offsets of one topic (as
 * Kafka stores record batches): a row per message cost more than parsing the message.
 *
 * Publishes that arrive while a commit is under way share the next transaction (a group
 * commit), and each resolves only after that transaction is on disk: what is
 * acknowledged survives a `kill -9` or a power cut. Retention never drops a message some
 * consumer group has not consumed; when the log is full of unconsumed data, publish
 * pushes back (BusBackpressureError) instead of losing it.
 *
 * The parts: log.ts (schema, statements, reading chunks), append.ts (the group commit),
 * retention.ts, consumer.ts (a group member's loop) and batch.ts (a publish's events,
 * serialized as they are added).
 */
import { EventEmitter } from 'node:events';
import type { SqliteDatabase, SqliteTransaction } from '../../storage/sqlite.ts';
import type { Event } from '../../model/event.ts';
import { DEAD_LETTER_BODY_CHARS, RateMeter, retryAfterSeconds } from '../encode.ts';
import {
  type Bus,
  BusBackpressureError,
  type BusMessage,
  type Consumer,
  type ConsumeOptions,
  type PublishBatch,
  type PublishResult,
  type Topic,
} from '../types.ts';
import { type AppendLog, appendAll } from './append.ts';
import { BufferPool, EmbeddedBatch } from './batch.ts';
import { EmbeddedConsumer } from './consumer.ts';
import {
  CHUNK_BYTES,
  type ChunkMeta,
  type ChunkStatements,
  migrateMessageRows,
  openLog,
  prepareChunks,
  prepareStatements,
  readChunks,
  STAGING_BYTES,
  type Statements,
  TOPICS,
} from './log.ts';
import { applyRetention, LOW_WATER, type RetentionLog } from './retention.ts';

/** Where the log lives and the bounds it keeps. */
export interface EmbeddedBusOptions {
  path: string;
  /** Larger events are refused and dead-lettered. Default 1 MiB. */
  maxEventBytes?: number;
  /** Unconsumed messages of the slowest group before publish pushes back. Default 1,000,000. */
  maxLag?: number;
  /** Consumed messages older than this (by receipt) are dropped. Default 7 days. */
  retentionMs?: number;
  /**
   * Bound on stored event bytes: beyond it the oldest consumed messages are dropped, and
   * when only unconsumed ones are left, publish pushes back. Default 1 GiB.
   */
  retentionBytes?: number;
  /** How often retention runs on its own; 0 leaves it to `applyRetention()` and a full log. Default 60 s. */
  retentionIntervalMs?: number;
  /** How often consumers look for messages written by other processes. Default 100 ms. */
  pollMs?: number;
  /** Most messages per delivered batch. Default 1000. */
  batchSize?: number;
  /**
   * How chunks are stored: `gzip` (default; log.ts#storedBody), or `none`, as TEXT any
   * SQLite client reads. Either reads a log written the other way.
   */
  compression?: 'gzip' | 'none';
  clock?: () => number;
  /** Failures the bus recovers from on its own (a handler that threw, a retention pass). */
  onError?: (err: Error, context: string) => void;
}

export interface DeadLetter {
  id: number;
  received: number;
  reason: string;
  body: string;
}

export interface GroupPosition {
  group: string;
  topic: Topic;
  /** The next offset the group will consume. */
  position: number;
  lag: number;
}

export interface EmbeddedBusStats {
  topics: Record<Topic, { earliest: number; next: number }>;
  storedMessages: number;
  storedBytes: number;
  groups: GroupPosition[];
  deadLetters: number;
}

interface Pending {
  batch: EmbeddedBatch;
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

export class EmbeddedBus implements Bus {
  readonly kind = 'embedded' as const;
  private readonly db: SqliteDatabase;
  private readonly options: Required<Omit<EmbeddedBusOptions, 'path' | 'clock' | 'onError'>>;
  private readonly clock: () => number;
  private readonly onError: (err: Error, context: string) => void;
  private readonly nextOffset = new Map<Topic, number>();
  private pending: Pending[] = [];
  private flushScheduled = false;
  private readonly wakeups = new EventEmitter();
  private readonly consumers = new Set<EmbeddedConsumer>();
  private readonly consumeRates = new Map<string, RateMeter>();
  private readonly retentionTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Messages and bytes in the log, kept in step by appends and retention. */
  private readonly stored = { bytes: 0, messages: 0 };
  private readonly stmts: Statements;
  private readonly chunks: Record<Topic, ChunkStatements>;
  private readonly append: SqliteTransaction<
    (batches: EmbeddedBatch[], received: number) => ReturnType<typeof appendAll>
  >;
  private readonly chunkBuffers: Record<Topic, Buffer>;
  /** The parts append.ts and retention.ts work on. */
  private readonly log: AppendLog & RetentionLog;
  private readonly staging = new BufferPool(STAGING_BYTES, 8);

  constructor(options: EmbeddedBusOptions) {
    this.options = {
      maxEventBytes: options.maxEventBytes ?? 1 << 20,
      maxLag: options.maxLag ?? 1_000_000,
      retentionMs: options.retentionMs ?? 7 * 86_400_000,
      retentionBytes: options.retentionBytes ?? 1 << 30,
      retentionIntervalMs: options.retentionIntervalMs ?? 60_000,
      pollMs: options.pollMs ?? 100,
      batchSize: options.batchSize ?? 1000,
      compression: options.compression ?? 'gzip',
    };
    this.clock = options.clock ?? Date.now;
    // Reused by every flush; SQLite copies what is bound.
    const capacity = Math.max(CHUNK_BYTES, this.options.maxEventBytes);
    this.chunkBuffers = {
      logs: Buffer.allocUnsafe(capacity),
      metrics: Buffer.allocUnsafe(capacity),
    };
    this.onError =
      options.onError ??
      ((err, context) => process.emitWarning(`${context}: ${err.message}`, 'DroverBusWarning'));
    this.db = openLog(options.path);
    this.wakeups.setMaxListeners(0);
    this.stmts = prepareStatements(this.db);
    this.chunks = {
      logs: prepareChunks(this.db, 'logs'),
      metrics: prepareChunks(this.db, 'metrics'),
    };
    this.log = {
      db: this.db,
      stmts: this.stmts,
      chunks: this.chunks,
      chunkBuffers: this.chunkBuffers,
      compress: this.options.compression === 'gzip',
      stored: this.stored,
    };
    this.append = this.db.transaction((batches: EmbeddedBatch[], received: number) =>
      appendAll(this.log, batches, received),
    );
    this.db
      .transaction(() => {
        migrateMessageRows(this.db);
        for (const topic of TOPICS) {
          // The next offset is stored, not derived from the messages: after retention has
          // dropped every message of a topic, offsets must still not restart below positions.
          const derived = this.db
            .prepare(
              `SELECT MAX(COALESCE((SELECT MAX(last) + 1 FROM chunks_${topic}), 0),
                        COALESCE((SELECT MAX(offset) FROM positions WHERE topic = @topic), 0)) AS next`,
            )
            .get({ topic }) as { next: number };
          this.db
            .prepare('INSERT OR IGNORE INTO topics (topic, next_offset) VALUES (?, ?)')
            .run(topic, derived.next);
        }
      })
      .immediate();
    for (const topic of TOPICS)
      this.nextOffset.set(topic, this.chunks[topic].next.get(topic) as number);
    for (const topic of TOPICS) {
      const totals = this.chunks[topic].totals.get() as { n: number; b: number };
      this.stored.messages += totals.n;
      this.stored.bytes += totals.b;
    }
    if (this.options.retentionIntervalMs > 0) {
      this.retentionTimer = setInterval(() => {
        try {
          this.applyRetention();
        } catch (err) {
          this.onError(err as Error, 'bus retention');
        }
      }, this.options.retentionIntervalMs);
      this.retentionTimer.unref();
    }
  }

  publish(events: Event[]): Promise<PublishResult> {
    if (!Array.isArray(events))
      return Promise.reject(new TypeError('publish takes an array of events'));
    const batch = this.batch();
    for (const event of events) batch.add(event);
    return this.publishBatch(batch);
  }

  batch(): EmbeddedBatch {
    return new EmbeddedBatch(this, this.options.maxEventBytes, this.staging);
  }

  publishBatch(batch: PublishBatch): Promise<PublishResult> {
    if (this.closed) return Promise.reject(new Error('the bus is closed'));
    if (!(batch instanceof EmbeddedBatch) || batch.owner !== this)
      return Promise.reject(new TypeError('publishBatch takes a batch made by this bus'));
    if (batch.published) return Promise.reject(new Error('this batch was published already'));
    const refusal = this.refusal();
    if (refusal) {
      batch.release();
      return Promise.reject(refusal);
    }
    batch.published = true;
    return new Promise((resolve, reject) => {
      this.pending.push({ batch, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Whatever arrives while this tick's commit is fsyncing joins the next one.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Why publish must push back now, if it must. */
  private refusal(): BusBackpressureError | undefined {
    const slowest = this.slowestGroup();
    if (slowest && slowest.lag >= this.options.maxLag) {
      const backlog = slowest.lag - Math.floor(this.options.maxLag * 0.9);
      return new BusBackpressureError(
        `consumer group "${slowest.group}" is ${slowest.lag} messages behind on ${slowest.topic} (limit ${this.options.maxLag})`,
        retryAfterSeconds(backlog, this.consumeRate(slowest.group)),
      );
    }
    if (this.stored.bytes >= this.options.retentionBytes) {
      this.applyRetention();
      if (this.stored.bytes >= this.options.retentionBytes) {
        const excess = this.stored.bytes - Math.floor(this.options.retentionBytes * LOW_WATER);
        const perMessage = this.stored.bytes / Math.max(1, this.stored.messages);
        return new BusBackpressureError(
          slowest
            ? `the log holds ${this.stored.bytes} bytes (limit ${this.options.retentionBytes}) that consumer group "${slowest.group}" has not consumed yet`
            : `the log holds ${this.stored.bytes} bytes (limit ${this.options.retentionBytes}) and no consumer group has consumed any of it`,
          retryAfterSeconds(
            Math.ceil(excess / perMessage),
            slowest ? this.consumeRate(slowest.group) : 0,
          ),
        );
      }
    }
    return undefined;
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    let appended: ReturnType<typeof appendAll>;
    try {
      // IMMEDIATE: another process writing the same file waits for us rather than failing mid-way.
      appended = this.append.immediate(
        batch.map((p) => p.batch),
        this.clock(),
      );
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
      return;
    } finally {
      for (const p of batch) p.batch.release();
    }
    const { results, next, bytes, messages } = appended;
    for (const [topic, offset] of next) this.nextOffset.set(topic, offset);
    this.stored.bytes += bytes;
    this.stored.messages += messages;
    batch.forEach((p, i) => p.resolve(results[i]!));
    this.wakeups.emit('published');
  }

  /** The group furthest behind on some topic, if any group exists. */
  private slowestGroup(): GroupPosition | undefined {
    let slowest: GroupPosition | undefined;
    for (const p of this.groups()) if (!slowest || p.lag > slowest.lag) slowest = p;
    return slowest;
  }

  private consumeRate(group: string): number {
    return this.consumeRates.get(group)?.perSecond(this.clock()) ?? 0;
  }

  /**
   * Drops what every consumer group has consumed and retention no longer covers: first
   * messages older than `retentionMs`, then, once the log has reached `retentionBytes`, the
   * oldest until it is back to LOW_WATER of that (retention.ts). Unconsumed messages are
   * never dropped, and a topic is only ever cut at its start, so what remains is
   * contiguous. Returns how many messages went.
   */
  applyRetention(): number {
    return applyRetention(this.log, this.clock(), this.options);
  }

  /** Reads messages of a topic from an offset, for consumers and tools. */
  read(topic: Topic, from: number, limit: number): BusMessage[] {
    return readChunks(this.chunks[topic], topic, from, limit);
  }

  /** The next offset a group will consume on a topic (0 for a group never seen). */
  position(group: string, topic: Topic): number {
    return (this.stmts.position.get(group, topic) as number | undefined) ?? 0;
  }

  /** Moves a group's position: after a handled batch, or to replay from a snapshot's offset. */
  /**
   * Without an fsync of its own: a consumer group's position is written with
   * synchronous=NORMAL, and becomes durable with the next publish or retention pass,
   * whose FULL commit syncs the WAL and every frame before it. Power lost in between
   * takes back at most the positions committed since, and the group is delivered those
   * batches again (at least once, as always: the index's ids and the rules' snapshot
   * offsets make a redelivery a no-op); never a message, since retention only drops
   * what a durable position has passed. An fsync per consumed batch cost the ingest
   * loop about a tenth of its time in the soak benchmark.
   */
  commit(group: string, topic: Topic, nextOffset: number): void {
    this.stmts.relaxed.run();
    try {
      this.stmts.commit.run(group, topic, nextOffset);
    } finally {
      this.stmts.durable.run();
    }
  }

  /**
   * Moves a group to the given positions (`"topic/0"` → next offset to consume); a topic
   * not named goes back to 0, which reads from the earliest retained message.
   */
  async rewind(group: string, positions: Record<string, number>, topics: Topic[]): Promise<void> {
    for (const topic of topics) this.commit(group, topic, positions[`${topic}/0`] ?? 0);
  }

  /** Forgets a group, so its lag no longer holds back retention or publishing. */
  deleteGroup(group: string): void {
    this.stmts.deleteGroup.run(group);
    this.consumeRates.delete(group);
  }

  /** Messages a group has yet to consume, per topic: the bus lag. */
  lag(group: string): Record<Topic, number> {
    const out = {} as Record<Topic, number>;
    for (const topic of TOPICS)
      out[topic] = Math.max(0, this.nextOffset.get(topic)! - this.position(group, topic));
    return out;
  }

  /** Every known group's position and lag per topic, for metrics. */
  groups(): GroupPosition[] {
    const rows = this.stmts.positions.all() as Array<{ grp: string; topic: Topic; offset: number }>;
    return rows
      .filter((r) => this.nextOffset.has(r.topic))
      .map((r) => ({
        group: r.grp,
        topic: r.topic,
        position: r.offset,
        lag: Math.max(0, this.nextOffset.get(r.topic)! - r.offset),
      }));
  }

  stats(): EmbeddedBusStats {
    const topics = {} as EmbeddedBusStats['topics'];
    for (const topic of TOPICS) {
      const next = this.nextOffset.get(topic)!;
      const head = this.chunks[topic].head.get(1) as ChunkMeta | undefined;
      topics[topic] = { earliest: head ? head.last - head.count + 1 : next, next };
    }
    return {
      topics,
      storedMessages: this.stored.messages,
      storedBytes: this.stored.bytes,
      groups: this.groups(),
      deadLetters: this.stmts.countDeadLetters.get() as number,
    };
  }

  /**
   * Keeps a message a consumer group could not handle aside, with why (its body cut to
   * DEAD_LETTER_BODY_CHARS, as for refused events).
   */
  deadLetterMessage(message: BusMessage, reason: string): void {
    const body = JSON.stringify(message.event) ?? '';
    this.stmts.deadletter.run(this.clock(), reason, body.slice(0, DEAD_LETTER_BODY_CHARS));
  }

  /** The refused events, newest first. */
  deadLetters(limit = 100): DeadLetter[] {
    return this.db
      .prepare('SELECT id, received, reason, body FROM deadletter ORDER BY id DESC LIMIT ?')
      .all(limit) as DeadLetter[];
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    if (this.closed) throw new Error('the bus is closed');
    if (options.topics.length === 0) throw new Error('consume needs at least one topic');
    for (const topic of options.topics) {
      if (!TOPICS.includes(topic)) throw new Error(`unknown topic "${topic}"`);
      // A new group starts at the beginning of the log; registering it makes retention wait for it.
      if (this.stmts.position.get(options.group, topic) === undefined)
        this.commit(options.group, topic, 0);
    }
    let rate = this.consumeRates.get(options.group);
    if (!rate) this.consumeRates.set(options.group, (rate = new RateMeter()));
    const consumer = new EmbeddedConsumer(this, options, {
      batchSize: this.options.batchSize,
      pollMs: this.options.pollMs,
      wakeups: this.wakeups,
      handled: (n) => rate.record(n, this.clock()),
      onError: this.onError,
    });
    this.consumers.add(consumer);
    consumer.start();
    return {
      stop: async () => {
        await consumer.stop();
        this.consumers.delete(consumer);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    await Promise.all([...this.consumers].map((c) => c.stop()));
    // Publishes already accepted into the queue are written before the file closes.
    this.flush();
    this.db.close();
  }
}

export function openEmbeddedBus(options: EmbeddedBusOptions): EmbeddedBus {
  return new EmbeddedBus(options);
}
