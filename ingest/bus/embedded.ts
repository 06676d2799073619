import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import type { Event } from '../event.ts';
import { type Encoded, encode, keyOf, RateMeter, retryAfterSeconds } from './encode.ts';
import {
  type Bus,
  BusBackpressureError,
  type BusMessage,
  type Consumer,
  type ConsumeOptions,
  type PublishResult,
  type Topic,
  topicOf,
} from './types.ts';

/**
 * The embedded bus: a durable append-only log in SQLite (WAL, synchronous=FULL), with
 * per-topic offsets, consumer-group positions, retention and a dead-letter table.
 *
 * Publishes that arrive while a commit is under way share the next transaction (a group
 * commit), and each resolves only after that transaction is on disk: what is
 * acknowledged survives a `kill -9` or a power cut. Retention never drops a message some
 * consumer group has not consumed; when the log is full of unconsumed data, publish
 * pushes back (BusBackpressureError) instead of losing it.
 */
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
  events: Event[];
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

const TOPICS: Topic[] = ['logs', 'metrics'];
const RETENTION_CHUNK = 5_000;

export class EmbeddedBus implements Bus {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
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
  private storedBytes = 0;
  private storedMessages = 0;
  private readonly stmts: ReturnType<EmbeddedBus['prepare']>;
  private readonly append: Database.Transaction<EmbeddedBus['appendAll']>;

  constructor(options: EmbeddedBusOptions) {
    this.options = {
      maxEventBytes: options.maxEventBytes ?? 1 << 20,
      maxLag: options.maxLag ?? 1_000_000,
      retentionMs: options.retentionMs ?? 7 * 86_400_000,
      retentionBytes: options.retentionBytes ?? 1 << 30,
      retentionIntervalMs: options.retentionIntervalMs ?? 60_000,
      pollMs: options.pollMs ?? 100,
      batchSize: options.batchSize ?? 1000,
    };
    this.clock = options.clock ?? Date.now;
    this.onError =
      options.onError ??
      ((err, context) => process.emitWarning(`${context}: ${err.message}`, 'DroverBusWarning'));
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    // FULL: the WAL is fsync'd at every commit, so an acknowledged publish survives power loss.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        topic TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
        received INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (topic, offset)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS topics (
        topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS positions (
        grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS deadletter (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received INTEGER NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL);
    `);
    this.wakeups.setMaxListeners(0);
    this.stmts = this.prepare();
    this.append = this.db.transaction((batch, received) => this.appendAll(batch, received));
    this.db
      .transaction(() => {
        for (const topic of TOPICS) {
          // The next offset is stored, not derived from the messages: after retention has
          // dropped every message of a topic, offsets must still not restart below positions.
          const derived = this.db
            .prepare(
              `SELECT MAX(COALESCE((SELECT MAX(offset) + 1 FROM messages WHERE topic = @topic), 0),
                        COALESCE((SELECT MAX(offset) FROM positions WHERE topic = @topic), 0)) AS next`,
            )
            .get({ topic }) as { next: number };
          this.db
            .prepare('INSERT OR IGNORE INTO topics (topic, next_offset) VALUES (?, ?)')
            .run(topic, derived.next);
        }
      })
      .immediate();
    for (const topic of TOPICS) this.nextOffset.set(topic, this.stmts.next.get(topic) as number);
    const totals = this.db
      .prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM messages')
      .get() as { n: number; b: number };
    this.storedMessages = totals.n;
    this.storedBytes = totals.b;
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

  private prepare() {
    const db = this.db;
    return {
      next: db.prepare('SELECT next_offset FROM topics WHERE topic = ?').pluck(),
      setNext: db.prepare('UPDATE topics SET next_offset = ? WHERE topic = ?'),
      insert: db.prepare(
        'INSERT INTO messages (topic, offset, key, received, bytes, body) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      deadletter: db.prepare('INSERT INTO deadletter (received, reason, body) VALUES (?, ?, ?)'),
      read: db.prepare(
        'SELECT offset, key, body FROM messages WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT ?',
      ),
      earliest: db.prepare('SELECT MIN(offset) FROM messages WHERE topic = ?').pluck(),
      position: db.prepare('SELECT offset FROM positions WHERE grp = ? AND topic = ?').pluck(),
      positions: db.prepare('SELECT grp, topic, offset FROM positions ORDER BY grp, topic'),
      commit: db.prepare(
        'INSERT INTO positions (grp, topic, offset) VALUES (?, ?, ?) ON CONFLICT (grp, topic) DO UPDATE SET offset = excluded.offset',
      ),
      deleteGroup: db.prepare('DELETE FROM positions WHERE grp = ?'),
      slowest: db.prepare('SELECT MIN(offset) FROM positions WHERE topic = ?').pluck(),
      oldestConsumed: db
        .prepare(
          'SELECT received FROM messages WHERE topic = ? AND offset < ? ORDER BY offset LIMIT 1',
        )
        .pluck(),
      consumed: db.prepare(
        'SELECT offset, bytes, received FROM messages WHERE topic = ? AND offset < ? ORDER BY offset LIMIT ?',
      ),
      deleteUpTo: db.prepare('DELETE FROM messages WHERE topic = ? AND offset <= ?'),
      deleteDeadLetters: db.prepare('DELETE FROM deadletter WHERE received < ?'),
      countDeadLetters: db.prepare('SELECT COUNT(*) FROM deadletter').pluck(),
    };
  }

  publish(events: Event[]): Promise<PublishResult> {
    if (this.closed) return Promise.reject(new Error('the bus is closed'));
    if (!Array.isArray(events))
      return Promise.reject(new TypeError('publish takes an array of events'));
    const refusal = this.refusal();
    if (refusal) return Promise.reject(refusal);
    return new Promise((resolve, reject) => {
      this.pending.push({ events, resolve, reject });
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
    if (this.storedBytes >= this.options.retentionBytes) {
      this.applyRetention();
      if (this.storedBytes >= this.options.retentionBytes) {
        const excess = this.storedBytes - Math.floor(this.options.retentionBytes * 0.9);
        const perMessage = this.storedBytes / Math.max(1, this.storedMessages);
        return new BusBackpressureError(
          slowest
            ? `the log holds ${this.storedBytes} bytes (limit ${this.options.retentionBytes}) that consumer group "${slowest.group}" has not consumed yet`
            : `the log holds ${this.storedBytes} bytes (limit ${this.options.retentionBytes}) and no consumer group has consumed any of it`,
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
    // Serialization happens outside the transaction, so the write lock is held briefly.
    const encoded = batch.map((p) => ({
      events: p.events,
      encoded: p.events.map((e) => encode(e, this.options.maxEventBytes)),
    }));
    let appended: ReturnType<EmbeddedBus['appendAll']>;
    try {
      // IMMEDIATE: another process writing the same file waits for us rather than failing mid-way.
      appended = this.append.immediate(encoded, this.clock());
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
      return;
    }
    const { results, next, bytes, messages } = appended;
    for (const [topic, offset] of next) this.nextOffset.set(topic, offset);
    this.storedBytes += bytes;
    this.storedMessages += messages;
    batch.forEach((p, i) => p.resolve(results[i]!));
    this.wakeups.emit('published');
  }

  /** One transaction for every publish of the flush; each caller hears only of its own events. */
  private appendAll(batch: Array<{ events: Event[]; encoded: Encoded[] }>, received: number) {
    const next = new Map<Topic, number>();
    // Read inside the transaction: another process may have appended since our last flush.
    for (const topic of TOPICS) next.set(topic, this.stmts.next.get(topic) as number);
    const start = new Map(next);
    let bytes = 0;
    let messages = 0;
    const results = batch.map(({ events, encoded }) => {
      const result: PublishResult = { accepted: [], rejected: [] };
      encoded.forEach((e, index) => {
        if (!e.ok) {
          this.stmts.deadletter.run(received, e.reason, e.body);
          result.rejected.push({ index, reason: e.reason });
          return;
        }
        const event = events[index]!;
        const topic = topicOf(event);
        const offset = next.get(topic)!;
        next.set(topic, offset + 1);
        this.stmts.insert.run(topic, offset, keyOf(event), received, e.bytes, e.body);
        bytes += e.bytes;
        messages++;
        result.accepted.push(index);
      });
      return result;
    });
    for (const [topic, offset] of next)
      if (offset !== start.get(topic)) this.stmts.setNext.run(offset, topic);
    return { results, next, bytes, messages };
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
   * messages older than `retentionMs`, then the oldest until the log fits `retentionBytes`.
   * Unconsumed messages are never dropped, and a topic is only ever cut at its start, so
   * what remains is contiguous. Returns how many messages went.
   */
  applyRetention(): number {
    const horizon = this.clock() - this.options.retentionMs;
    let dropped = 0;
    const consumedUpTo = new Map<Topic, number>();
    for (const topic of TOPICS) {
      // With no group yet, nothing has been consumed: everything stays.
      const slowest = this.stmts.slowest.get(topic) as number | null;
      if (slowest !== null) consumedUpTo.set(topic, slowest);
    }
    for (const [topic, consumed] of consumedUpTo) {
      for (;;) {
        const n = this.drop(topic, consumed, (rows) => {
          const young = rows.findIndex((r) => r.received >= horizon);
          return young === -1 ? rows.length : young;
        });
        dropped += n;
        if (n < RETENTION_CHUNK) break;
      }
    }
    // By size, the oldest consumed message across topics goes first.
    while (this.storedBytes > this.options.retentionBytes) {
      const oldest: Array<{ topic: Topic; received: number }> = [];
      for (const [topic, consumed] of consumedUpTo) {
        const received = this.stmts.oldestConsumed.get(topic, consumed) as number | undefined;
        if (received !== undefined) oldest.push({ topic, received });
      }
      if (oldest.length === 0) break;
      oldest.sort((a, b) => a.received - b.received);
      // Take from the oldest topic only what is older than the next topic's oldest.
      const until = oldest[1]?.received ?? Number.POSITIVE_INFINITY;
      const n = this.drop(oldest[0]!.topic, consumedUpTo.get(oldest[0]!.topic)!, (rows) => {
        let excess = this.storedBytes - this.options.retentionBytes;
        let count = 0;
        while (count < rows.length && excess > 0 && (count === 0 || rows[count]!.received <= until))
          excess -= rows[count++]!.bytes;
        return count;
      });
      if (n === 0) break;
      dropped += n;
    }
    this.stmts.deleteDeadLetters.run(horizon);
    return dropped;
  }

  /**
   * Deletes, in one transaction, the leading run of a topic's consumed messages that
   * `howMany` chooses from the first RETENTION_CHUNK of them.
   */
  private drop(
    topic: Topic,
    consumedUpTo: number,
    howMany: (rows: Array<{ offset: number; bytes: number; received: number }>) => number,
  ): number {
    const { count, bytes } = this.db
      .transaction(() => {
        const rows = this.stmts.consumed.all(topic, consumedUpTo, RETENTION_CHUNK) as Array<{
          offset: number;
          bytes: number;
          received: number;
        }>;
        const count = howMany(rows);
        if (count === 0) return { count: 0, bytes: 0 };
        this.stmts.deleteUpTo.run(topic, rows[count - 1]!.offset);
        return { count, bytes: rows.slice(0, count).reduce((sum, r) => sum + r.bytes, 0) };
      })
      .immediate();
    this.storedMessages -= count;
    this.storedBytes -= bytes;
    return count;
  }

  /** Reads messages of a topic from an offset, for consumers and tools. */
  read(topic: Topic, from: number, limit: number): BusMessage[] {
    const rows = this.stmts.read.all(topic, from, limit) as Array<{
      offset: number;
      key: string;
      body: string;
    }>;
    return rows.map((r) => ({
      topic,
      partition: 0,
      offset: String(r.offset),
      key: r.key,
      event: JSON.parse(r.body) as Event,
    }));
  }

  /** The next offset a group will consume on a topic (0 for a group never seen). */
  position(group: string, topic: Topic): number {
    return (this.stmts.position.get(group, topic) as number | undefined) ?? 0;
  }

  /** Moves a group's position: after a handled batch, or to replay from a snapshot's offset. */
  commit(group: string, topic: Topic, nextOffset: number): void {
    this.stmts.commit.run(group, topic, nextOffset);
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
      topics[topic] = { earliest: (this.stmts.earliest.get(topic) as number | null) ?? next, next };
    }
    return {
      topics,
      storedMessages: this.storedMessages,
      storedBytes: this.storedBytes,
      groups: this.groups(),
      deadLetters: this.stmts.countDeadLetters.get() as number,
    };
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

interface ConsumerSettings {
  batchSize: number;
  pollMs: number;
  wakeups: EventEmitter;
  handled: (messages: number) => void;
  onError: (err: Error, context: string) => void;
}

class EmbeddedConsumer {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly onPublished = () => this.wake?.();

  constructor(
    private readonly bus: EmbeddedBus,
    private readonly options: ConsumeOptions,
    private readonly settings: ConsumerSettings,
  ) {}

  start(): void {
    this.settings.wakeups.on('published', this.onPublished);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const { group, topics, handler } = this.options;
    let failures = 0;
    while (!this.stopped) {
      let delivered = false;
      for (const topic of topics) {
        if (this.stopped) break;
        const messages = this.bus.read(
          topic,
          this.bus.position(group, topic),
          this.settings.batchSize,
        );
        if (messages.length === 0) continue;
        try {
          await handler({ topic, partition: 0, messages });
        } catch (err) {
          // Redelivered after a backoff, never skipped.
          failures++;
          this.settings.onError(
            err instanceof Error ? err : new Error(String(err)),
            `consumer group "${group}" failed a batch of ${messages.length} from ${topic} at offset ${messages[0]!.offset} (attempt ${failures}); it will be redelivered`,
          );
          await this.sleep(Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
          continue;
        }
        // The position moves only once the handler is done with the batch.
        this.bus.commit(group, topic, Number(messages.at(-1)!.offset) + 1);
        this.settings.handled(messages.length);
        failures = 0;
        delivered = true;
      }
      if (!delivered && !this.stopped) await this.sleep(this.settings.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.settings.wakeups.off('published', this.onPublished);
    this.wake?.();
    await this.loop;
  }
}

export function openEmbeddedBus(options: EmbeddedBusOptions): EmbeddedBus {
  return new EmbeddedBus(options);
}
