/**
 * The embedded bus's log in SQLite: the schema, the statements over it, and reading
 * messages back out of their chunks. Messages are stored in chunks, a row per run of
 * consecutive offsets of one topic (as Kafka stores record batches): a row per message
 * cost more than parsing the message.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { enableWal, openSqlite, type SqliteDatabase } from '../../storage/sqlite.ts';
import type { Event } from '../../model/event.ts';
import { keyOf } from '../encode.ts';
import type { BusMessage, Topic } from '../types.ts';

export const TOPICS: Topic[] = ['logs', 'metrics'];
/** Bounds on one stored chunk, so a consumer's read never has to load a huge row. */
export const CHUNK_MESSAGES = 1_000;
export const CHUNK_BYTES = 1 << 20;
export const NEWLINE = 0x0a;
/** Staging buffers of batches: a request of a few hundred events fits one. */
export const STAGING_BYTES = 256 << 10;

/** The chunk a flush is filling for one topic, encoded in place. */
export interface OpenChunk {
  next: number;
  count: number;
  /** Bytes of `buffer` holding the chunk so far, separators included. */
  used: number;
  buffer: Buffer;
}

/** A chunk's bookkeeping: offsets `last - count + 1` to `last`, all received at once. */
export interface ChunkMeta {
  last: number;
  count: number;
  bytes: number;
  received: number;
}

/** The consumed part of a chunk, as retention sees it. */
export interface ConsumedChunk extends ChunkMeta {
  /** Leading messages of the chunk every group has consumed. */
  consumed: number;
}

/** UTF-8 bytes of the messages of a chunk body, not counting the separators. */
export function chunkBytes(body: string, count: number): number {
  return Buffer.byteLength(body) - (count - 1);
}

/**
 * A chunk body as stored: TEXT (the messages, one per line) or, with compression, a BLOB
 * holding that text gzipped. Both kinds may sit in one log (a log written before
 * compression, or with `compression: none`, is read as it is).
 */
export type StoredBody = string | Uint8Array;

/** Chunks smaller than this are stored as text: gzip would save too little to pay for itself. */
const COMPRESS_FROM_BYTES = 512;

/**
 * The stored form of a chunk's text (UTF-8 bytes). gzip at level 1: JSON events compress
 * 5 to 10 times at a few nanoseconds per byte, and a gzip member is what any tool reads
 * back (`SELECT writefile('c.gz', body)` in the sqlite3 shell, then gunzip).
 */
export function storedBody(text: Buffer, compress: boolean): Buffer | undefined {
  if (!compress || text.length < COMPRESS_FROM_BYTES) return undefined;
  return gzipSync(text, { level: 1 });
}

/** A chunk's text, whichever way it was stored. */
export function chunkText(body: StoredBody): string {
  return typeof body === 'string' ? body : gunzipSync(body).toString('utf8');
}

/** Page size of a new log file. */
const PAGE_BYTES = 65_536;

/** Opens the log file (WAL, synchronous=FULL) and creates its tables. */
export function openLog(path: string): SqliteDatabase {
  const db = openSqlite(path);
  // Large pages for a new log (an existing one keeps its own): a commit writes each
  // page to the WAL and a checkpoint copies it to the database, a few syscalls per page,
  // and with 4 KiB pages those syscalls cost more than the bytes they move.
  db.pragma(`page_size = ${PAGE_BYTES}`);
  enableWal(db);
  // FULL: the WAL is fsync'd at every commit, so an acknowledged publish survives power loss.
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // The WAL: checkpointed every 256 pages (16 MiB at 64 KiB pages; SQLite's 1,000 would let
  // it reach 64 MiB, more than the gzipped log of a million events), and cut back to
  // that size after a checkpoint rather than kept at its high-water mark.
  db.pragma('wal_autocheckpoint = 256');
  db.pragma(`journal_size_limit = ${16 << 20}`);
  db.exec(`
  CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS positions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received INTEGER NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL);
`);
  for (const topic of TOPICS) {
    // body: the chunk's messages as JSON, one per line (JSON never holds a raw newline),
    // as TEXT, or as a BLOB of that text gzipped (StoredBody).
    db.exec(`
    CREATE TABLE IF NOT EXISTS chunks_${topic} (
      last INTEGER PRIMARY KEY, count INTEGER NOT NULL, received INTEGER NOT NULL,
      bytes INTEGER NOT NULL, body TEXT NOT NULL);
  `);
  }
  return db;
}

/** A log written with a row per message (before chunks) is read into chunks of one. */
export function migrateMessageRows(db: SqliteDatabase): void {
  const old = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
    .get();
  if (!old) return;
  for (const topic of TOPICS)
    db.prepare(
      `INSERT INTO chunks_${topic} (last, count, received, bytes, body)
         SELECT offset, 1, received, bytes, body FROM messages WHERE topic = ? ORDER BY offset`,
    ).run(topic);
  db.exec('DROP TABLE messages');
}

export function prepareStatements(db: SqliteDatabase) {
  return {
    deadletter: db.prepare('INSERT INTO deadletter (received, reason, body) VALUES (?, ?, ?)'),
    position: db.prepare('SELECT offset FROM positions WHERE grp = ? AND topic = ?').pluck(),
    positions: db.prepare('SELECT grp, topic, offset FROM positions ORDER BY grp, topic'),
    commit: db.prepare(
      'INSERT INTO positions (grp, topic, offset) VALUES (?, ?, ?) ON CONFLICT (grp, topic) DO UPDATE SET offset = excluded.offset',
    ),
    deleteGroup: db.prepare('DELETE FROM positions WHERE grp = ?'),
    // Around position commits only (EmbeddedBus.commit); the log is FULL otherwise.
    relaxed: db.prepare('PRAGMA synchronous = NORMAL'),
    durable: db.prepare('PRAGMA synchronous = FULL'),
    slowest: db.prepare('SELECT MIN(offset) FROM positions WHERE topic = ?').pluck(),
    deleteDeadLetters: db.prepare('DELETE FROM deadletter WHERE received < ?'),
    countDeadLetters: db.prepare('SELECT COUNT(*) FROM deadletter').pluck(),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

export function prepareChunks(db: SqliteDatabase, topic: Topic) {
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
    insertCompressed: db.prepare(
      `INSERT INTO ${table} (last, count, received, bytes, body) VALUES (?, ?, ?, ?, ?)`,
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

export type ChunkStatements = ReturnType<typeof prepareChunks>;

/** Reads messages of a topic from an offset, for consumers and tools. */
export function readChunks(
  chunks: ChunkStatements,
  topic: Topic,
  from: number,
  limit: number,
): BusMessage[] {
  const out: BusMessage[] = [];
  if (limit <= 0) return out;
  for (const row of chunks.readFrom.iterate(from) as Iterable<{
    last: number;
    count: number;
    body: StoredBody;
  }>) {
    let offset = row.last - row.count + 1;
    const body = chunkText(row.body);
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
