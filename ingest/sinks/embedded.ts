import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { hash } from 'node:crypto';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  enableWal,
  openSqlite,
  type SqliteDatabase,
  type SqliteStatement,
} from '../storage/sqlite.ts';
import type { BusBatch } from '../bus/types.ts';
import type { Event } from '../model/event.ts';
import { documentId, type SearchParams, type SearchResult } from '../index/search.ts';

const DAY_MS = 86_400_000;
/** Partitions kept open at once (3 file descriptors each); the others are opened when needed. */
const OPEN_PARTITIONS = 8;
/**
 * Partitions at most by default, whatever retention allows: ten years of days. Event
 * times are clamped at ingest to 1970..clock+5 min, so without a cap an attacker dating
 * events a day apart could create ~20,000 files; at the cap a new day older than every
 * partition is not indexed, and a newer one drops the oldest partition.
 */
export const MAX_PARTITIONS = 3_660;
const PARTITION_FILE = /^(\d{4}-\d{2}-\d{2})\.db$/;

/** Retention of the embedded index: whole partitions go, by age, then oldest first by size. */
export interface IndexRetention {
  /** A partition goes once its UTC day of event time ended longer ago than this. */
  maxAgeMs: number;
  /** Partitions go, oldest first, while all of them together hold more (the newest stays). */
  maxBytes: number;
}

export interface EmbeddedIndexOptions {
  /** Default: no limit by age or size (`drover serve` passes `index.retention`). */
  retention?: Partial<IndexRetention>;
  /** Partitions at most (default MAX_PARTITIONS). */
  maxPartitions?: number;
  /** How often retention runs on its own; 0 leaves it to `applyRetention()`. Default 60 s. */
  retentionIntervalMs?: number;
  /**
   * An index from before partitions (one file): searched with the partitions, and dropped
   * as a whole by retention once its newest event's day is past `maxAge`.
   */
  legacyPath?: string;
  clock?: () => number;
  /** Events not indexed: their day is past retention (or older than every partition at the cap). */
  onExpired?: (events: number) => void;
  /** A partition dropped, and why. */
  onDropped?: (partition: string, reason: 'age' | 'size' | 'count') => void;
  /** A retention pass that failed on its own timer (it is tried again at the next). */
  onError?: (err: Error) => void;
}

/** A partition: a SQLite file holding the events of one UTC day of event time. */
interface Partition {
  /** `YYYY-MM-DD`, or `legacy`. */
  name: string;
  path: string;
  /** Event times it may hold: [start, end); the legacy file: from 0 to its newest day's end. */
  start: number;
  end: number;
  /** The newest event time it holds; -Infinity while empty. */
  newest: number;
  /** The order of creation, for ties in time: a later partition's rows were inserted later. */
  rank: number;
}

interface Open {
  db: SqliteDatabase;
  /**
   * How a row says which bus message it is: `position` in files written since (the bus
   * position as integers, in the order the bus delivers), `id` in files from before (a
   * hash of the position and the JSON, random-ordered).
   */
  key: 'position' | 'id';
  insertEvent: SqliteStatement;
  insertText: SqliteStatement;
  nextBlock: SqliteStatement;
  insertBlock: SqliteStatement;
  block: SqliteStatement;
  sourceId: SqliteStatement;
  insertSource: SqliteStatement;
  /**
   * (topic, bus partition) → its row in `sources`. Bounded by the bus's topics and
   * partitions, never by event values: a message's topic and partition are where the bus
   * put it.
   */
  sources: Map<string, number>;
}

/**
 * Event bodies are stored in blocks: the JSON of consecutive events indexed together,
 * one per line, gzipped (level 1), up to this many characters of JSON per block (and one
 * event more). Fleet events compress about 8 times in a block, where a body alone would
 * not; a search decompresses a block per distinct block among its hits, so the bound
 * keeps a search of `size` hits to at most `size` blocks of this size.
 */
const BLOCK_CHARS = 64 * 1024;

/** Epoch milliseconds a day can be named for: what ingest lets onto the bus, and more. */
const validTime = (ts: unknown): ts is number =>
  typeof ts === 'number' && Number.isFinite(ts) && ts >= 0 && ts < 8.64e15;

/** The last day named: events come in runs of the same day, and naming one is a Date. */
let lastDay = { name: '1970-01-01', start: 0 };

function dayOf(t: number): { name: string; start: number } {
  const start = t - (t % DAY_MS);
  if (start !== lastDay.start)
    lastDay = { name: new Date(start).toISOString().slice(0, 10), start };
  return lastDay;
}

const MAX_OFFSET = 2n ** 63n - 1n;

/** A bus offset (decimal digits, as Kafka's and the embedded bus's are) as an SQLite integer. */
function offsetOf(m: BusBatch['messages'][number]): number | bigint {
  const o = m.offset;
  if (typeof o === 'string' && /^\d{1,19}$/.test(o)) {
    const n = Number(o);
    if (Number.isSafeInteger(n)) return n;
    const big = BigInt(o);
    if (big <= MAX_OFFSET) return big;
  }
  throw new Error(`bus offset ${String(o).slice(0, 32)} of ${m.topic} is not an integer`);
}

/** 48 bits of the SHA-1 of an event's JSON: with its position, what makes a row unique. */
const digestOf = (json: string): number => hash('sha1', json, 'buffer').readUIntBE(0, 6);

/**
 * Files written since keyed rows by bus position: `(source, position, digest)` is
 * UNIQUE, where source is the (topic, partition) and the digest a hash of the JSON, so a
 * redelivered message is not indexed twice while another event at a reused position (a
 * topic recreated) still is. The bus delivers a partition's messages in offset order, so
 * each insert lands at the right end of that index's B-tree: the pages a batch dirties
 * stay a handful however large the file grows. The `id` of older files (a SHA-1 of the
 * position and the JSON, in random order) made every insert touch a page of its own
 * once the index outgrew a batch, and the cost per event grew with the file.
 */
function open(path: string): Open {
  const db = openSqlite(path);
  enableWal(db);
  db.pragma('synchronous = NORMAL');
  const existing = db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('events');
  // body: the event's JSON, in files written before blocks; '' once it is in `blocks`
  // (block, slot: which block, which line of it).
  if (existing.length === 0)
    db.exec(`
      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, source INTEGER NOT NULL, position INTEGER NOT NULL,
        digest INTEGER NOT NULL, ts INTEGER NOT NULL, service TEXT, host TEXT, level TEXT,
        fingerprint TEXT, body TEXT NOT NULL, block INTEGER, slot INTEGER);
      CREATE UNIQUE INDEX events_position ON events (source, position, digest);
    `);
  db.exec(`
    CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
    CREATE INDEX IF NOT EXISTS events_service_ts ON events (service, ts);
    CREATE VIRTUAL TABLE IF NOT EXISTS events_text USING fts5 (text, content='');
    CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS sources (
      id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
      UNIQUE (topic, partition));
  `);
  const columns = db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('events');
  if (!columns.includes('block'))
    db.exec(
      'ALTER TABLE events ADD COLUMN block INTEGER; ALTER TABLE events ADD COLUMN slot INTEGER;',
    );
  const key = columns.includes('position') ? 'position' : 'id';
  return {
    db,
    key,
    insertEvent: db.prepare(
      key === 'position'
        ? "INSERT INTO events (source, position, digest, ts, service, host, level, fingerprint, body, block, slot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?) ON CONFLICT DO NOTHING"
        : "INSERT INTO events (id, ts, service, host, level, fingerprint, body, block, slot) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?) ON CONFLICT (id) DO NOTHING",
    ),
    insertText: db.prepare('INSERT INTO events_text (rowid, text) VALUES (?, ?)'),
    nextBlock: db.prepare('SELECT COALESCE(MAX(id), 0) + 1 FROM blocks').pluck(),
    insertBlock: db.prepare('INSERT INTO blocks (id, body) VALUES (?, ?)'),
    block: db.prepare('SELECT body FROM blocks WHERE id = ?').pluck(),
    sourceId: db.prepare('SELECT id FROM sources WHERE topic = ? AND partition = ?').pluck(),
    insertSource: db.prepare('INSERT INTO sources (topic, partition) VALUES (?, ?)'),
    sources: new Map(),
  };
}

/**
 * The row in `sources` of a bus topic and partition, added if need be: outside a batch's
 * transaction, so a batch rolled back leaves no id in the cache that the file lacks.
 */
function sourceOf(o: Open, topic: string, partition: number): number {
  const k = `${topic}\u0000${partition}`;
  let id = o.sources.get(k);
  if (id === undefined) {
    id =
      (o.sourceId.get(topic, partition) as number | undefined) ??
      Number(o.insertSource.run(topic, partition).lastInsertRowid);
    o.sources.set(k, id);
  }
  return id;
}

/** A search hit before its body is read. */
interface Hit {
  ts: number;
  seq: number;
  rank: number;
  partition: Partition;
  body: string;
  block: number | null;
  slot: number | null;
}

/** The database file and the WAL and shared-memory files beside it. */
const filesOf = (path: string) => [path, `${path}-wal`, `${path}-shm`];

function bytesOf(path: string): number {
  let bytes = 0;
  for (const f of filesOf(path)) {
    try {
      bytes += statSync(f).size;
    } catch {
      // absent
    }
  }
  return bytes;
}

/**
 * The embedded index: SQLite with an FTS5 table over the text of events (message and
 * error fields), plus columns for time, service, host, level and fingerprint, partitioned
 * by UTC day of event time (a file per day in its directory, as Elasticsearch keeps daily
 * indices), so retention drops whole files. Ids are bus positions, so a redelivered batch
 * does not duplicate anything (an event always lands in the partition of its own day).
 */
export class EmbeddedIndex {
  /** By name; bounded by MAX_PARTITIONS (and retention). */
  private readonly partitions = new Map<string, Partition>();
  /** Open connections, least recently used first; at most OPEN_PARTITIONS. */
  private readonly open = new Map<string, Open>();
  private readonly retention: IndexRetention;
  private readonly clock: () => number;
  private readonly timer: NodeJS.Timeout | undefined;
  private ranks = 0;

  constructor(
    readonly dir: string,
    private readonly options: EmbeddedIndexOptions = {},
  ) {
    this.retention = {
      maxAgeMs: options.retention?.maxAgeMs ?? Number.POSITIVE_INFINITY,
      maxBytes: options.retention?.maxBytes ?? Number.POSITIVE_INFINITY,
    };
    this.clock = options.clock ?? Date.now;
    mkdirSync(dir, { recursive: true });
    const legacy = options.legacyPath;
    if (legacy !== undefined && existsSync(legacy)) {
      const o = this.connect('legacy', legacy);
      const newest = o.db.prepare('SELECT MAX(ts) AS t FROM events').pluck().get() as number | null;
      this.partitions.set('legacy', {
        name: 'legacy',
        path: legacy,
        start: 0,
        end: newest === null ? 0 : dayOf(newest).start + DAY_MS,
        newest: newest ?? Number.NEGATIVE_INFINITY,
        rank: this.ranks++,
      });
    }
    for (const file of readdirSync(dir).sort()) {
      const m = PARTITION_FILE.exec(file);
      if (!m) continue;
      const start = Date.parse(`${m[1]}T00:00:00Z`);
      if (!Number.isFinite(start)) continue;
      const o = this.connect(m[1]!, join(dir, file));
      const newest = o.db.prepare('SELECT MAX(ts) AS t FROM events').pluck().get() as number | null;
      this.partitions.set(m[1]!, {
        name: m[1]!,
        path: join(dir, file),
        start,
        end: start + DAY_MS,
        newest: newest ?? Number.NEGATIVE_INFINITY,
        rank: this.ranks++,
      });
    }
    this.applyRetention();
    const every = options.retentionIntervalMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => {
        try {
          this.applyRetention();
        } catch (err) {
          options.onError?.(err as Error);
        }
      }, every);
      this.timer.unref();
    }
  }

  /** The partitions' names, oldest first (`legacy` first when there is one). */
  partitionNames(): string[] {
    return this.sorted().map((p) => p.name);
  }

  /** Bytes on disk, all partitions together. */
  bytes(): number {
    let total = 0;
    for (const p of this.partitions.values()) total += bytesOf(p.path);
    return total;
  }

  private sorted(): Partition[] {
    return [...this.partitions.values()].sort((a, b) => a.end - b.end || a.rank - b.rank);
  }

  /** The connection of a partition, opened if need be; the least recently used beyond the cap is closed. */
  private connect(name: string, path: string): Open {
    let o = this.open.get(name);
    if (o) {
      this.open.delete(name);
      this.open.set(name, o);
      return o;
    }
    o = open(path);
    this.open.set(name, o);
    if (this.open.size > OPEN_PARTITIONS) {
      const [oldest, conn] = this.open.entries().next().value as [string, Open];
      this.open.delete(oldest);
      conn.db.close();
    }
    return o;
  }

  private drop(p: Partition, reason: 'age' | 'size' | 'count'): void {
    const o = this.open.get(p.name);
    if (o) {
      this.open.delete(p.name);
      o.db.close();
    }
    this.partitions.delete(p.name);
    for (const f of filesOf(p.path)) rmSync(f, { force: true });
    this.options.onDropped?.(p.name, reason);
  }

  /**
   * Drops whole partitions: those whose day ended more than `maxAge` ago, then the
   * oldest while all of them hold more than `maxBytes` (never the newest: it is the one
   * being written). Returns the names dropped.
   */
  applyRetention(now = this.clock()): string[] {
    const dropped: string[] = [];
    const horizon = now - this.retention.maxAgeMs;
    const parts = this.sorted();
    const kept: Partition[] = [];
    for (const p of parts) {
      if (p.end <= horizon) {
        this.drop(p, 'age');
        dropped.push(p.name);
      } else kept.push(p);
    }
    if (Number.isFinite(this.retention.maxBytes)) {
      let total = kept.reduce((n, p) => n + bytesOf(p.path), 0);
      while (total > this.retention.maxBytes && kept.length > 1) {
        const p = kept.shift()!;
        total -= bytesOf(p.path);
        this.drop(p, 'size');
        dropped.push(p.name);
      }
    }
    return dropped;
  }

  /** The partition an event of this day goes to, created if need be; undefined: not indexed. */
  private partitionFor(day: { name: string; start: number }): Partition | undefined {
    const existing = this.partitions.get(day.name);
    if (existing) return existing;
    if (day.start + DAY_MS <= this.clock() - this.retention.maxAgeMs) return undefined;
    if (this.partitions.size >= (this.options.maxPartitions ?? MAX_PARTITIONS)) {
      const oldest = this.sorted()[0]!;
      if (oldest.end > day.start) return undefined;
      this.drop(oldest, 'count');
    }
    const p: Partition = {
      name: day.name,
      path: join(this.dir, `${day.name}.db`),
      start: day.start,
      end: day.start + DAY_MS,
      newest: Number.NEGATIVE_INFINITY,
      rank: this.ranks++,
    };
    this.partitions.set(day.name, p);
    return p;
  }

  /**
   * The consumer handler: one transaction per partition a batch touches. An event whose
   * time is not epoch milliseconds (ingest refuses those; another producer on the bus
   * might not) fails the batch before anything is written, so the bus dead-letters it
   * with the reason.
   */
  async indexBatch(batch: BusBatch): Promise<void> {
    for (const m of batch.messages) {
      const ts: unknown = m.event['@timestamp'];
      if (!validTime(ts))
        throw new Error(
          `event time ${String(ts).slice(0, 64)} at ${m.topic}@${m.offset} is not epoch milliseconds`,
        );
    }
    // Bounded by the batch: one entry per day its events fall on.
    const byDay = new Map<string, { start: number; messages: BusBatch['messages'] }>();
    for (const m of batch.messages) {
      const day = dayOf(m.event['@timestamp']);
      let group = byDay.get(day.name);
      if (!group) byDay.set(day.name, (group = { start: day.start, messages: [] }));
      group.messages.push(m);
    }
    let expired = 0;
    for (const [name, group] of byDay) {
      const p = this.partitionFor({ name, start: group.start });
      if (!p) {
        expired += group.messages.length;
        continue;
      }
      const o = this.connect(p.name, p.path);
      const sources =
        o.key === 'position'
          ? group.messages.map((m) => sourceOf(o, m.topic, m.partition))
          : undefined;
      o.db.transaction(() => {
        // The block being filled: the rows name it before it is written, at the end of
        // the transaction (or when it is full), with only the bodies of rows inserted.
        let block = o.nextBlock.get() as number;
        let bodies: string[] = [];
        let chars = 0;
        const writeBlock = () => {
          if (bodies.length === 0) return;
          o.insertBlock.run(block, gzipSync(bodies.join('\n'), { level: 1 }));
          block++;
          bodies = [];
          chars = 0;
        };
        for (const [i, m] of group.messages.entries()) {
          const e = m.event;
          // JSON.stringify never writes a raw newline: the block's lines are its bodies.
          const body = JSON.stringify(e);
          const fields = [
            e['@timestamp'],
            e['service.name'] ?? null,
            e['host.name'] ?? null,
            e['log.level'] ?? null,
            e['error.fingerprint'] ?? null,
            block,
            bodies.length,
          ];
          const r =
            o.key === 'position'
              ? o.insertEvent.run(sources![i], offsetOf(m), digestOf(body), ...fields)
              : o.insertEvent.run(documentId(m, body), ...fields);
          if (r.changes === 0) continue; // redelivered: already indexed
          bodies.push(body);
          chars += body.length;
          if (chars >= BLOCK_CHARS) writeBlock();
          if (e['@timestamp'] > p.newest) p.newest = e['@timestamp'];
          const text = [e.message, e['error.type'], e['error.message'], e['error.stack_trace']]
            .filter((v) => typeof v === 'string')
            .join('\n');
          o.insertText.run(r.lastInsertRowid, text);
        }
        writeBlock();
      })();
    }
    if (expired > 0) this.options.onExpired?.(expired);
  }

  /**
   * Each partition the time range touches is asked for its count and its newest `size`
   * rows; newest partition first, stopping once no older one can hold a newer row, so
   * the answer is the one a single table gives (ties in time: the later insert first).
   */
  async search(params: SearchParams): Promise<SearchResult> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (params.q) {
      where.push('seq IN (SELECT rowid FROM events_text WHERE events_text MATCH ?)');
      args.push(toFtsQuery(params.q));
    }
    if (params.from !== undefined) {
      where.push('ts >= ?');
      args.push(params.from);
    }
    if (params.to !== undefined) {
      where.push('ts <= ?');
      args.push(params.to);
    }
    if (params.service) {
      where.push('service = ?');
      args.push(params.service);
    }
    if (params.level) {
      where.push('level = ?');
      args.push(params.level);
    }
    const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
    const size = params.size ?? 50;
    const parts = this.sorted()
      .reverse()
      .filter(
        (p) =>
          p.newest !== Number.NEGATIVE_INFINITY &&
          (params.from === undefined || p.end > params.from) &&
          (params.to === undefined || p.start <= params.to),
      );
    let total = 0;
    for (const p of parts)
      total += (
        this.connect(p.name, p.path)
          .db.prepare(`SELECT COUNT(*) AS n FROM events ${clause}`)
          .get(...args) as { n: number }
      ).n;
    let rows: Hit[] = [];
    for (const p of parts) {
      if (rows.length >= size && rows[size - 1]!.ts >= p.newest) continue;
      const found = this.connect(p.name, p.path)
        .db.prepare(
          `SELECT ts, seq, body, block, slot FROM events ${clause} ORDER BY ts DESC, seq DESC LIMIT ?`,
        )
        .all(...args, size) as Omit<Hit, 'rank' | 'partition'>[];
      for (const r of found) rows.push({ ...r, rank: p.rank, partition: p });
      rows.sort((a, b) => b.ts - a.ts || b.rank - a.rank || b.seq - a.seq);
      if (rows.length > size) rows = rows.slice(0, size);
    }
    return { total, events: this.bodies(rows).map((b) => JSON.parse(b) as Event) };
  }

  /**
   * The hits' JSON, in their order: a row's own body (files from before blocks), or its
   * line of its block. Each distinct block is read and decompressed once, one at a time.
   */
  private bodies(rows: Hit[]): string[] {
    const out = rows.map((r) => r.body);
    const byBlock = new Map<string, number[]>();
    rows.forEach((r, i) => {
      if (r.block === null) return;
      const k = `${r.partition.name}\u0000${r.block}`;
      const list = byBlock.get(k);
      if (list) list.push(i);
      else byBlock.set(k, [i]);
    });
    for (const hits of byBlock.values()) {
      const first = rows[hits[0]!]!;
      const stored = this.connect(first.partition.name, first.partition.path).block.get(
        first.block,
      ) as Uint8Array | undefined;
      const lines = stored === undefined ? [] : gunzipSync(stored).toString('utf8').split('\n');
      for (const i of hits) {
        const line = lines[rows[i]!.slot!];
        if (line === undefined)
          throw new Error(
            `index partition ${first.partition.name} lacks line ${rows[i]!.slot} of block ${first.block}`,
          );
        out[i] = line;
      }
    }
    return out;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const o of this.open.values()) o.db.close();
    this.open.clear();
  }
}

/** Words and "quoted phrases", each quoted for FTS5 so user input is never query syntax. */
export function toFtsQuery(q: string): string {
  const terms = q.match(/"[^"]*"|\S+/g) ?? [];
  return terms
    .map((t) => t.replace(/^"|"$/g, ''))
    .filter((t) => t.trim() !== '')
    .map((t) => `"${t.replace(/"/g, '""')}"`)
    .join(' AND ');
}

/** The index in `dir`, a file per UTC day of event time. */
export function openEmbeddedIndex(dir: string, options?: EmbeddedIndexOptions): EmbeddedIndex {
  return new EmbeddedIndex(dir, options);
}
