import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import type { Event } from '../event.ts';
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
 * Publishes that arrive in the same tick share one transaction (a group commit), and
 * each resolves only after that transaction is on disk: what is acknowledged survives
 * a `kill -9`. Retention never drops a message some consumer group has not consumed;
 * when the log is full of unconsumed data, publish pushes back instead of losing it.
 */
export interface EmbeddedBusOptions {
  path: string;
  /** Larger events are refused and dead-lettered. Default 1 MiB. */
  maxEventBytes?: number;
  /** Unconsumed messages of the slowest group before publish pushes back. Default 1,000,000. */
  maxLag?: number;
  /** Retention by age of receipt. Default 7 days. */
  retentionMs?: number;
  /** Retention by total stored bytes. Default 1 GiB. */
  retentionBytes?: number;
  /** How often consumers look for new messages written by other processes. Default 100 ms. */
  pollMs?: number;
  batchSize?: number;
  clock?: () => number;
}

interface Pending {
  events: Event[];
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

export interface DeadLetter {
  id: number;
  received: number;
  reason: string;
  body: string;
}

const TOPICS: Topic[] = ['logs', 'metrics'];

export class EmbeddedBus implements Bus {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
  private readonly options: Required<Omit<EmbeddedBusOptions, 'path' | 'clock'>>;
  private readonly clock: () => number;
  private readonly nextOffset = new Map<Topic, number>();
  private pending: Pending[] = [];
  private flushScheduled = false;
  private readonly wakeups = new EventEmitter();
  private readonly consumers = new Set<EmbeddedConsumer>();
  private closed = false;
  private storedBytes = 0;
  private readonly stmts: ReturnType<EmbeddedBus['prepare']>;

  constructor(options: EmbeddedBusOptions) {
    this.options = {
      maxEventBytes: options.maxEventBytes ?? 1 << 20,
      maxLag: options.maxLag ?? 1_000_000,
      retentionMs: options.retentionMs ?? 7 * 86_400_000,
      retentionBytes: options.retentionBytes ?? 1 << 30,
      pollMs: options.pollMs ?? 100,
      batchSize: options.batchSize ?? 1000,
    };
    this.clock = options.clock ?? Date.now;
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        topic TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
        received INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (topic, offset)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS positions (
        grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS deadletter (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received INTEGER NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL);
    `);
    this.wakeups.setMaxListeners(0);
    this.stmts = this.prepare();
    for (const topic of TOPICS) {
      const row = this.stmts.maxOffset.get(topic) as { next: number | null };
      this.nextOffset.set(topic, row.next ?? 0);
    }
    this.storedBytes = (
      this.db.prepare('SELECT COALESCE(SUM(bytes), 0) AS b FROM messages').get() as { b: number }
    ).b;
  }

  private prepare() {
    return {
      maxOffset: this.db.prepare('SELECT MAX(offset) + 1 AS next FROM messages WHERE topic = ?'),
      insert: this.db.prepare(
        'INSERT INTO messages (topic, offset, key, received, bytes, body) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      deadletter: this.db.prepare(
        'INSERT INTO deadletter (received, reason, body) VALUES (?, ?, ?)',
      ),
      read: this.db.prepare(
        'SELECT offset, key, body FROM messages WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT ?',
      ),
      position: this.db.prepare('SELECT offset FROM positions WHERE grp = ? AND topic = ?'),
      commit: this.db.prepare(
        'INSERT INTO positions (grp, topic, offset) VALUES (?, ?, ?) ON CONFLICT (grp, topic) DO UPDATE SET offset = excluded.offset',
      ),
      slowest: this.db.prepare('SELECT MIN(offset) AS offset FROM positions WHERE topic = ?'),
    };
  }

  publish(events: Event[]): Promise<PublishResult> {
    if (this.closed) return Promise.reject(new Error('bus is closed'));
    const lag = this.maxGroupLag();
    if (lag >= this.options.maxLag) {
      return Promise.reject(
        new BusBackpressureError(
          `consumers are ${lag} messages behind (limit ${this.options.maxLag})`,
          retryAfter(lag),
        ),
      );
    }
    if (this.storedBytes >= this.options.retentionBytes) {
      this.applyRetention();
      if (this.storedBytes >= this.options.retentionBytes) {
        return Promise.reject(
          new BusBackpressureError(
            'the log is full of messages consumers have not read yet',
            retryAfter(lag),
          ),
        );
      }
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ events, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** One transaction for every publish of this tick; each caller hears only of its own events. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const received = this.clock();
    const results: PublishResult[] = [];
    let added = 0;
    const offsets = new Map(this.nextOffset);
    try {
      this.db.transaction(() => {
        for (const p of batch) {
          const result: PublishResult = { accepted: [], rejected: [] };
          p.events.forEach((event, index) => {
            const body = JSON.stringify(event);
            const bytes = Buffer.byteLength(body);
            if (bytes > this.options.maxEventBytes) {
              const reason = `event of ${bytes} bytes exceeds the limit of ${this.options.maxEventBytes}`;
              this.stmts.deadletter.run(received, reason, body.slice(0, 65_536));
              result.rejected.push({ index, reason });
              return;
            }
            const topic = topicOf(event);
            const offset = offsets.get(topic)!;
            offsets.set(topic, offset + 1);
            this.stmts.insert.run(topic, offset, keyOf(event), received, bytes, body);
            added += bytes;
            result.accepted.push(index);
          });
          results.push(result);
        }
      })();
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
      return;
    }
    for (const [topic, offset] of offsets) this.nextOffset.set(topic, offset);
    this.storedBytes += added;
    batch.forEach((p, i) => p.resolve(results[i]!));
    this.wakeups.emit('published');
  }

  /** The largest number of messages some known group has yet to consume, over topics. */
  private maxGroupLag(): number {
    let lag = 0;
    for (const topic of TOPICS) {
      const row = this.stmts.slowest.get(topic) as { offset: number | null };
      if (row.offset === null) continue;
      lag = Math.max(lag, this.nextOffset.get(topic)! - row.offset);
    }
    return lag;
  }

  /** Drops messages past retention that every group has consumed. Returns how many. */
  applyRetention(): number {
    const horizon = this.clock() - this.options.retentionMs;
    let dropped = 0;
    this.db.transaction(() => {
      for (const topic of TOPICS) {
        const row = this.stmts.slowest.get(topic) as { offset: number | null };
        // With no group yet, nothing has been consumed: keep everything.
        if (row.offset === null) continue;
        const consumed = row.offset;
        let r = this.db
          .prepare('DELETE FROM messages WHERE topic = ? AND offset < ? AND received < ?')
          .run(topic, consumed, horizon);
        dropped += r.changes;
        // By size: the oldest consumed messages go first.
        while (this.storedBytesNow() > this.options.retentionBytes) {
          r = this.db
            .prepare(
              'DELETE FROM messages WHERE topic = ? AND offset IN (SELECT offset FROM messages WHERE topic = ? AND offset < ? ORDER BY offset LIMIT 1000)',
            )
            .run(topic, topic, consumed);
          if (r.changes === 0) break;
          dropped += r.changes;
        }
      }
    })();
    this.storedBytes = this.storedBytesNow();
    return dropped;
  }

  private storedBytesNow(): number {
    return (
      this.db.prepare('SELECT COALESCE(SUM(bytes), 0) AS b FROM messages').get() as { b: number }
    ).b;
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

  position(group: string, topic: Topic): number {
    const row = this.stmts.position.get(group, topic) as { offset: number } | undefined;
    return row?.offset ?? 0;
  }

  commit(group: string, topic: Topic, nextOffset: number): void {
    this.stmts.commit.run(group, topic, nextOffset);
  }

  /** Messages a group has yet to consume, per topic: the bus lag. */
  lag(group: string): Record<Topic, number> {
    const out = {} as Record<Topic, number>;
    for (const topic of TOPICS)
      out[topic] = this.nextOffset.get(topic)! - this.position(group, topic);
    return out;
  }

  deadLetters(limit = 100): DeadLetter[] {
    return this.db
      .prepare('SELECT id, received, reason, body FROM deadletter ORDER BY id DESC LIMIT ?')
      .all(limit) as DeadLetter[];
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    // A group starts at the beginning of the log; register it so retention waits for it.
    for (const topic of options.topics) {
      if (this.stmts.position.get(options.group, topic) === undefined)
        this.commit(options.group, topic, 0);
    }
    const consumer = new EmbeddedConsumer(
      this,
      options,
      this.options.batchSize,
      this.options.pollMs,
      this.wakeups,
    );
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
    await Promise.all([...this.consumers].map((c) => c.stop()));
    if (this.flushScheduled || this.pending.length > 0) this.flush();
    this.db.close();
  }
}

class EmbeddedConsumer {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly onPublished = () => this.wake?.();

  constructor(
    private readonly bus: EmbeddedBus,
    private readonly options: ConsumeOptions,
    private readonly batchSize: number,
    private readonly pollMs: number,
    private readonly wakeups: EventEmitter,
  ) {}

  start(): void {
    this.wakeups.on('published', this.onPublished);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let delivered = false;
      for (const topic of this.options.topics) {
        if (this.stopped) break;
        const from = this.bus.position(this.options.group, topic);
        const messages = this.bus.read(topic, from, this.batchSize);
        if (messages.length === 0) continue;
        try {
          await this.options.handler({ topic, partition: 0, messages });
          // The position moves only once the handler is done with the batch.
          this.bus.commit(this.options.group, topic, Number(messages.at(-1)!.offset) + 1);
          failures = 0;
          delivered = true;
        } catch {
          // Redelivered after a backoff, never skipped.
          failures++;
          await this.sleep(Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
        }
      }
      if (!delivered && !this.stopped) await this.sleep(this.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeups.off('published', this.onPublished);
    this.wake?.();
    await this.loop;
  }
}

/** Events are keyed by service so a service's events stay in order on one partition. */
export function keyOf(event: Event): string {
  return event['service.name'] ?? event['host.name'] ?? '';
}

/** A rough wait before retrying: longer the further behind consumers are. */
function retryAfter(lag: number): number {
  return Math.min(60, Math.max(1, Math.ceil(lag / 100_000)));
}

export function openEmbeddedBus(options: EmbeddedBusOptions): EmbeddedBus {
  return new EmbeddedBus(options);
}
