import { EventEmitter } from 'node:events';
import {
  isSqliteBusy,
  openSqlite,
  type SqliteDatabase,
  type SqliteTransaction,
} from '../sqlite.ts';
import type { Event } from '../event.ts';
import { BufferPool, EmbeddedBatch } from './embedded-batch.ts';
import { DEFAULT_MAX_ATTEMPTS, deliver, transient } from './deliver.ts';
import { DEAD_LETTER_BODY_CHARS, keyOf, RateMeter, retryAfterSeconds } from './encode.ts';
import {
  type Bus,
  BusBackpressureError,
  type BusMessage,
  type Consumer,
  type ConsumeOptions,
  type PublishBatch,
  type PublishResult,
  type Topic,
} from './types.ts';

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
  batch: EmbeddedBatch;
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

const TOPICS: Topic[] = ['logs', 'metrics'];
/** Chunks looked at per retention transaction. */
const RETENTION_CHUNK = 5_000;
/** Bounds on one stored chunk, so a consumer's read never has to load a huge row. */
const CHUNK_MESSAGES = 1_000;
const CHUNK_BYTES = 1 << 20;
const NEWLINE = 0x0a;
/** Staging buffers of batches: a request of a few hundred events fits one. */
const STAGING_BYTES = 256 << 10;
/** Page size of a new log file. */
const PAGE_BYTES = 65_536;

/** The chunk a flush is filling for one topic, encoded in place. */
interface OpenChunk {
  next: number;
  count: number;
  /** Bytes of `buffer` holding the chunk so far, separators included. */
  used: number;
  buffer: Buffer;
}

/** A chunk's bookkeeping: offsets `last - count + 1` to `last`, all received at once. */
interface ChunkMeta {
  last: number;
  count: number;
  bytes: number;
  received: number;
}

/** The consumed part of a chunk, as retention sees it. */
interface ConsumedChunk extends ChunkMeta {
  /** Leading messages of the chunk every group has consumed. */
  consumed: number;
}

/** UTF-8 bytes of the messages of a chunk body, not counting the separators. */
function chunkBytes(body: string, count: number): number {
  return Buffer.byteLength(body) - (count - 1);
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
  private storedBytes = 0;
  private storedMessages = 0;
  private readonly stmts: ReturnType<EmbeddedBus['prepareStatements']>;
  private readonly chunks: Record<Topic, ReturnType<EmbeddedBus['prepareChunks']>>;
  private readonly append: SqliteTransaction<EmbeddedBus['appendAll']>;
  private readonly chunkBuffers: Record<Topic, Buffer>;
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
    this.db = openSqlite(options.path);
    // Large pages for a new log (an existing one keeps its own): a commit writes each
    // page to the WAL and a checkpoint copies it to the database, a few syscalls per page,
    // and with 4 KiB pages those syscalls cost more than the bytes they move.
    this.db.pragma(`page_size = ${PAGE_BYTES}`);
    this.db.pragma('journal_mode = WAL');
    // FULL: the WAL is fsync'd at every commit, so an acknowledged publish survives power loss.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS topics (
        topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS positions (
        grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS deadletter (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received INTEGER NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL);
    `);
    for (const topic of TOPICS) {
      // body: the chunk's messages as JSON, one per line (JSON never holds a raw newline).
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS chunks_${topic} (
          last INTEGER PRIMARY KEY, count INTEGER NOT NULL, received INTEGER NOT NULL,
          bytes INTEGER NOT NULL, body TEXT NOT NULL);
      `);
    }
    this.wakeups.setMaxListeners(0);
    this.stmts = this.prepareStatements();
    this.chunks = { logs: this.prepareChunks('logs'), metrics: this.prepareChunks('metrics') };
    this.append = this.db.transaction((batch, received) => this.appendAll(batch, received));
    this.db
      .transaction(() => {
        this.migrateMessageRows();
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
      this.storedMessages += totals.n;
      this.storedBytes += totals.b;
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

  /** A log written with a row per message (before chunks) is read into chunks of one. */
  private migrateMessageRows(): void {
    const old = this.db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
      .get();
    if (!old) return;
    for (const topic of TOPICS)
      this.db
        .prepare(
          `INSERT INTO chunks_${topic} (last, count, received, bytes, body)
           SELECT offset, 1, received, bytes, body FROM messages WHERE topic = ? ORDER BY offset`,
        )
        .run(topic);
    this.db.exec('DROP TABLE messages');
  }

  private prepareStatements() {
    const db = this.db;
    return {
      deadletter: db.prepare('INSERT INTO deadletter (received, reason, body) VALUES (?, ?, ?)'),
      position: db.prepare('SELECT offset FROM positions WHERE grp = ? AND topic = ?').pluck(),
      positions: db.prepare('SELECT grp, topic, offset FROM positions ORDER BY grp, topic'),
      commit: db.prepare(
        'INSERT INTO positions (grp, topic, offset) VALUES (?, ?, ?) ON CONFLICT (grp, topic) DO UPDATE SET offset = excluded.offset',
      ),
      deleteGroup: db.prepare('DELETE FROM positions WHERE grp = ?'),
      slowest: db.prepare('SELECT MIN(offset) FROM positions WHERE topic = ?').pluck(),
      deleteDeadLetters: db.prepare('DELETE FROM deadletter WHERE received < ?'),
      countDeadLetters: db.prepare('SELECT COUNT(*) FROM deadletter').pluck(),
    };
  }

  private prepareChunks(topic: Topic) {
    const db = this.db;
    const table = `chunks_${topic}`;
    return {
      // The next offset follows the newest chunk; `topics` keeps it only for when
      // retention has emptied the topic (offsets must not restart below positions).
      // Appends do not rewrite it: that row's page went to the WAL at every commit.
      next: db
        .prepare(
          `SELECT MAX(COALESCE((SELECT MAX(last) + 1 FROM ${table}), 0), next_offset)
           FROM topics WHERE topic = ?`,
        )
        .pluck(),
      keepNext: db.prepare(
        `UPDATE topics SET next_offset = MAX(next_offset, COALESCE((SELECT MAX(last) + 1 FROM ${table}), 0))
         WHERE topic = ?`,
      ),
      insert: db.prepare(
        `INSERT INTO ${table} (last, count, received, bytes, body) VALUES (?, ?, ?, ?, CAST(? AS TEXT))`,
      ),
      // Every chunk holding an offset at or after the one asked for, in order.
      readFrom: db.prepare(`SELECT last, count, body FROM ${table} WHERE last >= ? ORDER BY last`),
      head: db.prepare(`SELECT last, count, bytes, received FROM ${table} ORDER BY last LIMIT ?`),
      body: db.prepare(`SELECT body FROM ${table} WHERE last = ?`).pluck(),
      trim: db.prepare(`UPDATE ${table} SET count = ?, bytes = ?, body = ? WHERE last = ?`),
      deleteUpTo: db.prepare(`DELETE FROM ${table} WHERE last <= ?`),
      totals: db.prepare(
        `SELECT COALESCE(SUM(count), 0) AS n, COALESCE(SUM(bytes), 0) AS b FROM ${table}`,
      ),
    };
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
    let appended: ReturnType<EmbeddedBus['appendAll']>;
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
    this.storedBytes += bytes;
    this.storedMessages += messages;
    batch.forEach((p, i) => p.resolve(results[i]!));
    this.wakeups.emit('published');
  }

  /** One transaction for every publish of the flush; each caller hears only of its own events. */
  private appendAll(batches: EmbeddedBatch[], received: number) {
    // Read inside the transaction: another process may have appended since our last flush.
    const open = new Map<Topic, OpenChunk>();
    for (const topic of TOPICS)
      open.set(topic, {
        next: this.chunks[topic].next.get(topic) as number,
        count: 0,
        used: 0,
        buffer: this.chunkBuffers[topic],
      });
    let bytes = 0;
    let messages = 0;
    const writeChunk = (topic: Topic) => {
      const o = open.get(topic)!;
      if (o.count === 0) return;
      const size = o.used - (o.count - 1);
      // Bound as UTF-8 bytes and stored as TEXT: no chunk-sized string is built, and
      // SQLite copies the bytes once instead of the binding measuring and encoding a string.
      this.chunks[topic].insert.run(
        o.next - 1,
        o.count,
        received,
        size,
        o.buffer.subarray(0, o.used),
      );
      bytes += size;
      messages += o.count;
      o.count = 0;
      o.used = 0;
    };
    const results = batches.map((batch) => {
      for (const r of batch.refused) this.stmts.deadletter.run(received, r.reason, r.body);
      for (const topic of TOPICS) {
        const staged = batch.staged[topic];
        if (!staged) continue;
        const o = open.get(topic)!;
        const ends = staged.ends;
        let from = 0;
        for (let i = 0; i < ends.length;) {
          // The run of messages i..j-1 that fits the open chunk: at most CHUNK_MESSAGES and
          // CHUNK_BYTES, but an empty chunk takes any one event (its buffer holds the
          // largest a batch lets through).
          let j = i;
          while (
            j < ends.length &&
            o.count + (j - i) < CHUNK_MESSAGES &&
            (o.count + (j - i) === 0 || o.used + 1 + (ends[j]! - from) <= CHUNK_BYTES)
          )
            j++;
          if (j === i) {
            writeChunk(topic);
            continue;
          }
          if (o.count > 0) o.buffer[o.used++] = NEWLINE;
          const to = ends[j - 1]!;
          o.used += staged.buffer.copy(o.buffer, o.used, from, to);
          o.count += j - i;
          o.next += j - i;
          from = to + 1;
          i = j;
        }
      }
      return {
        accepted: batch.accepted(),
        rejected: batch.refused.map((r) => ({ index: r.index, reason: r.reason })),
      };
    });
    for (const topic of TOPICS) writeChunk(topic);
    const next = new Map<Topic, number>();
    for (const [topic, o] of open) next.set(topic, o.next);
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
        let whole = 0;
        const n = this.drop(topic, consumed, (chunks) => {
          let count = 0;
          for (const c of chunks) {
            if (c.received >= horizon) break;
            count += c.consumed;
            if (c.consumed === c.count) whole++;
          }
          return count;
        });
        dropped += n;
        // Another pass only when a full window of chunks went whole.
        if (whole < RETENTION_CHUNK) break;
      }
    }
    // By size, the oldest consumed message across topics goes first.
    while (this.storedBytes > this.options.retentionBytes) {
      const oldest: Array<{ topic: Topic; received: number }> = [];
      for (const [topic, consumed] of consumedUpTo) {
        const head = this.chunks[topic].head.get(1) as ChunkMeta | undefined;
        if (head && head.last - head.count + 1 < consumed)
          oldest.push({ topic, received: head.received });
      }
      if (oldest.length === 0) break;
      oldest.sort((a, b) => a.received - b.received);
      // Take from the oldest topic only what is older than the next topic's oldest.
      const until = oldest[1]?.received ?? Number.POSITIVE_INFINITY;
      const n = this.drop(oldest[0]!.topic, consumedUpTo.get(oldest[0]!.topic)!, (chunks) => {
        let excess = this.storedBytes - this.options.retentionBytes;
        let count = 0;
        for (const c of chunks) {
          if (excess <= 0 || (count > 0 && c.received > until)) break;
          if (c.consumed === c.count && c.bytes <= excess) {
            count += c.count;
            excess -= c.bytes;
            continue;
          }
          // Part of a chunk: its messages are taken at their mean size, and the loop
          // above comes back for more if that fell short.
          const perMessage = c.bytes / c.count;
          const take = Math.min(c.consumed, Math.max(1, Math.ceil(excess / perMessage)));
          count += take;
          break;
        }
        return count;
      });
      if (n === 0) break;
      dropped += n;
    }
    this.stmts.deleteDeadLetters.run(horizon);
    return dropped;
  }

  /**
   * Drops, in one transaction, the leading `howMany` messages of a topic, which `howMany`
   * chooses among the consumed ones of its first RETENTION_CHUNK chunks. A chunk dropped
   * in part is rewritten with the rest of its messages.
   */
  private drop(
    topic: Topic,
    consumedUpTo: number,
    howMany: (chunks: ConsumedChunk[]) => number,
  ): number {
    const statements = this.chunks[topic];
    const { count, bytes } = this.db
      .transaction(() => {
        const chunks: ConsumedChunk[] = [];
        for (const c of statements.head.all(RETENTION_CHUNK) as ChunkMeta[]) {
          const first = c.last - c.count + 1;
          if (first >= consumedUpTo) break;
          const consumed = Math.min(c.count, consumedUpTo - first);
          chunks.push({ ...c, consumed });
          if (consumed < c.count) break;
        }
        let left = howMany(chunks);
        let count = 0;
        let bytes = 0;
        let deleteUpTo: number | undefined;
        for (const c of chunks) {
          if (left <= 0) break;
          if (left >= c.count) {
            deleteUpTo = c.last;
            count += c.count;
            bytes += c.bytes;
            left -= c.count;
            continue;
          }
          const body = statements.body.get(c.last) as string;
          let cut = -1;
          for (let i = 0; i < left; i++) cut = body.indexOf('\n', cut + 1);
          const rest = body.slice(cut + 1);
          const restBytes = chunkBytes(rest, c.count - left);
          statements.trim.run(c.count - left, restBytes, rest, c.last);
          count += left;
          bytes += c.bytes - restBytes;
          left = 0;
        }
        if (deleteUpTo !== undefined) {
          statements.keepNext.run(topic);
          statements.deleteUpTo.run(deleteUpTo);
        }
        return { count, bytes };
      })
      .immediate();
    this.storedMessages -= count;
    this.storedBytes -= bytes;
    return count;
  }

  /** Reads messages of a topic from an offset, for consumers and tools. */
  read(topic: Topic, from: number, limit: number): BusMessage[] {
    const out: BusMessage[] = [];
    if (limit <= 0) return out;
    for (const row of this.chunks[topic].readFrom.iterate(from) as Iterable<{
      last: number;
      count: number;
      body: string;
    }>) {
      let offset = row.last - row.count + 1;
      const body = row.body;
      let start = 0;
      while (start < body.length) {
        let end = body.indexOf('\n', start);
        if (end === -1) end = body.length;
        if (offset >= from) {
          const event = JSON.parse(body.slice(start, end)) as Event;
          out.push({ topic, partition: 0, offset: String(offset), key: keyOf(event), event });
          if (out.length >= limit) return out;
        }
        offset++;
        start = end + 1;
      }
    }
    return out;
  }

  /** The next offset a group will consume on a topic (0 for a group never seen). */
  position(group: string, topic: Topic): number {
    return (this.stmts.position.get(group, topic) as number | undefined) ?? 0;
  }

  /** Moves a group's position: after a handled batch, or to replay from a snapshot's offset. */
  commit(group: string, topic: Topic, nextOffset: number): void {
    this.stmts.commit.run(group, topic, nextOffset);
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
      storedMessages: this.storedMessages,
      storedBytes: this.storedBytes,
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
  private unsubscribe: (() => void) | undefined;
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

  /**
   * Without a flow, topics are read and handled in turns. With one (a merging handler),
   * each pass reads every topic the flow has not paused and hands their batches over
   * together, then reports the topics it found empty as caught up: the merge sees what
   * each input has before it decides which is ahead, and the handler never has to wait
   * for another topic's batch, which this one loop could not deliver while it waited.
   */
  private async run(): Promise<void> {
    const { group, topics, flow } = this.options;
    if (flow) {
      flow.assigned(topics.map((topic) => ({ topic, partition: 0 })));
      this.unsubscribe = flow.onResume(() => this.wake?.());
    }
    let failures = 0;
    while (!this.stopped) {
      try {
        const delivered = await this.pass();
        failures = 0;
        if (!delivered && !this.stopped) await this.sleep(this.settings.pollMs);
      } catch (e) {
        // Reading the log or a position failed (the file is locked past the busy
        // timeout): nothing was handed over for it; the pass is tried again after a
        // backoff, and an error never ends the loop (it would stop the group silently).
        const err = e instanceof Error ? e : new Error(String(e));
        this.settings.onError(
          err,
          `consumer group "${group}" could not read ${topics.join(', ')}; retrying`,
        );
        await this.sleep(Math.min(5_000, 50 * 2 ** Math.min(++failures, 7)));
      }
    }
  }

  /** Reads each topic once and hands what it found over; true if anything was handled. */
  private async pass(): Promise<boolean> {
    const { group, topics, flow } = this.options;
    let delivered = false;
    if (flow) {
      const reads: Array<{ topic: Topic; messages: BusMessage[] }> = [];
      const empty: Array<{ topic: Topic; position: number }> = [];
      for (const topic of topics) {
        if (flow.isPaused({ topic, partition: 0 })) continue;
        const position = this.bus.position(group, topic);
        const messages = this.bus.read(topic, position, this.settings.batchSize);
        if (messages.length === 0) empty.push({ topic, position });
        else reads.push({ topic, messages });
      }
      const results = await Promise.all(reads.map((r) => this.hand(r.topic, r.messages)));
      for (const e of empty) flow.caughtUp({ topic: e.topic, partition: 0 }, e.position);
      delivered = results.includes(true);
    } else {
      for (const topic of topics) {
        if (this.stopped) break;
        const position = this.bus.position(group, topic);
        const messages = this.bus.read(topic, position, this.settings.batchSize);
        if (messages.length === 0) continue;
        // hand() retries until done; false only when the consumer is stopping.
        if (await this.hand(topic, messages)) delivered = true;
        else break;
      }
    }
    return delivered;
  }

  /**
   * Hands a batch to the handler through the shared delivery (deliver.ts: retries, then
   * halves, then the dead-letter store for a message that keeps failing); true once it
   * is done and the position has moved, false when the consumer stopped first.
   */
  private hand(topic: Topic, messages: BusMessage[]): Promise<boolean> {
    const { group, handler } = this.options;
    return deliver(
      { topic, partition: 0, messages },
      {
        handler,
        maxAttempts: this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        // The position moves only once the handler is done with a message.
        commit: (last, count) => {
          try {
            this.bus.commit(group, topic, Number(last.offset) + 1);
          } catch (err) {
            // Another connection holds the file's lock past the busy timeout: the
            // handler is done, so the commit alone is retried (deliver.ts).
            throw isSqliteBusy(err) ? transient(err as Error) : err;
          }
          this.settings.handled(count);
        },
        deadLetter: (m, reason) =>
          this.bus.deadLetterMessage(
            m,
            `consumer group "${group}" at ${topic}@${m.offset}: ${reason}`,
          ),
        backoff: (failures) => this.sleep(Math.min(5_000, 50 * 2 ** Math.min(failures, 7))),
        running: () => !this.stopped,
        onError: this.settings.onError,
        describe: (ms) =>
          `consumer group "${group}" failed a batch of ${ms.length} from ${topic} at offset ${ms[0]!.offset}`,
      },
    );
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
    this.unsubscribe?.();
    this.wake?.();
    await this.loop;
  }
}

export function openEmbeddedBus(options: EmbeddedBusOptions): EmbeddedBus {
  return new EmbeddedBus(options);
}
