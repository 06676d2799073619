/**
 * The checkpoint store's writes (docs/architecture.md#checkpoints), on a thread of their
 * own. At 1 M keys every slice of a checkpoint found blocked in the kernel was SQLite's
 * work on the event loop: COMMITs writing the log's frames over pages the kernel had
 * evicted, upserts reading evicted pages of the database (bench/README.md "Snapshots").
 * The loop now only takes the capture's entries and encodes them, in slices, into
 * EntryBatch buffers (ids and values back to back), and hands each batch to a worker
 * thread with a connection of its own (transferred, not copied); the worker upserts them,
 * in order, and commits with the head and offsets. This file is both sides:
 * `TableWriter` (the statements of one connection: the worker's, and the loop's own for
 * `writeNow` at shutdown), `WriterThread` (the loop's handle on the worker) and the
 * worker's loop below.
 *
 * What a batch is: (see checkpoint-store.ts) `rows`: an EntryBatch's bytes and spans, each
 * row's rule as an index into names sent once per write; `timers`: rows of six numbers
 * (seq, at, rule index, key's start and end, tag) and the keys back to back; `removed`:
 * sequence numbers. Every message is answered once it is written, with the buffers it
 * transferred: the loop keeps at most MAX_IN_FLIGHT unanswered (checkpoint-store.ts).
 */
import { statSync } from 'node:fs';
import { deserialize } from 'node:v8';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { PART_BYTES, type PartedValue } from './checkpoint-codec.ts';
import { lowerThisThread } from './thread-priority.ts';
import {
  enableWal,
  openSqlite,
  type SqliteDatabase,
  type SqliteStatement,
} from '../ingest/storage/sqlite.ts';

/** A head's first byte: checkpoint-codec.ts's values begin with 0xD1, `node:v8`'s with 0xFF. */
export const PARTS_TAG = 0xd2;
/** Parts of a replaced or removed value deleted in one statement (1 MiB). */
const PART_DELETE = 16;
/** The two sets of tables a checkpoint may be in: entries and timers, by suffix. */
export const TABLE_SETS = ['', '_b'] as const;
/** Rows a set of tables is cleared by in one statement. */
const CLEAR_CHUNK = 256;
/** A full checkpoint's clearing of a set commits once per this long (ms, on the writer). */
const CLEAR_TX_MS = 20;
/**
 * Rows one statement writes at most. Entries and timers are written by multi-row
 * statements of a power of two rows (up to this), their ids and keys (and an entry's
 * value) cut by SQLite out of one BLOB bound for the statement (`substr`, bytes of a
 * BLOB): a row costs no Buffer, array or result object.
 */
const MAX_ROWS = 64;
/** A timers' row in a batch: seq, at, rule index, key's start, key's end, tag. */
export const TIMER_WIDTH = 6;

/** Bytes of write-ahead log past which the writer folds it itself (see afterCommit). */
export const FOLD_HERE_FACTOR = 8;

export function idString(blob: Uint8Array): string {
  return Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).toString('utf16le');
}

/** A parted value's head: PARTS_TAG, its length and its parts' count (varints). */
function partsHead(size: number, parts: number): Buffer {
  const head = Buffer.allocUnsafe(11);
  let at = 0;
  head[at++] = PARTS_TAG;
  for (let n of [size, parts]) {
    while (n >= 0x80) {
      head[at++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 0x80);
    }
    head[at++] = n;
  }
  return head.subarray(0, at);
}

/** A head's length and parts' count; throws on a damaged one. */
export function readPartsHead(head: Uint8Array): { size: number; parts: number } {
  let at = 1;
  const varint = (): number => {
    let n = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= head.length) break;
      const b = head[at++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
    throw new Error('checkpoint entry: bad parts head');
  };
  const size = varint();
  const parts = varint();
  if (parts !== Math.ceil(size / PART_BYTES)) throw new Error('checkpoint entry: bad parts head');
  return { size, parts };
}

/**
 * A statement writing `rows` rows (a power of two up to MAX_ROWS) and its parameters,
 * reused: the BLOB the rows' bytes are cut from, then `width` values per row.
 */
interface Multi {
  statement: SqliteStatement;
  args: unknown[];
}

/** Multi-row statements by log2 of their rows, each prepared when first used. */
function multiRow(
  db: SqliteDatabase,
  width: number,
  sql: (values: string) => string,
): (rows: number) => Multi {
  const made: Multi[] = [];
  const row = `(${new Array<string>(width).fill('?').join(', ')})`;
  return (rows) => {
    const b = 31 - Math.clz32(rows);
    return (made[b] ??= {
      statement: db.prepare(sql(new Array<string>(rows).fill(row).join(', '))),
      args: new Array<unknown>(1 + width * rows).fill(null),
    });
  };
}

/** The largest power of two rows, up to MAX_ROWS, that `n` rows take a statement of. */
function rowsOf(n: number): number {
  return 1 << (31 - Math.clz32(Math.min(n, MAX_ROWS)));
}

/** Entries stored in parts in one set of tables: rule → id → parts. */
export type Parted = Map<string, Map<string, number>>;

/** One set of tables (TABLE_SETS) and its statements. */
export interface Tables {
  name: string;
  /** Upserts of entries: per row rule, id's start and length, value's start and length. */
  upserts: (rows: number) => Multi;
  remove: SqliteStatement;
  /** Inserts of timers: per row seq, at, rule, key's start and length, tag. */
  timerInserts: (rows: number) => Multi;
  timerDelete: SqliteStatement;
  entriesCut: SqliteStatement;
  entriesClearTo: SqliteStatement;
  entriesClearAll: SqliteStatement;
  timersClear: SqliteStatement;
  entriesAll: SqliteStatement;
  timersAll: SqliteStatement;
  /** One entry's row, with its id and value bound as they are (a parted value's head). */
  upsertOne: SqliteStatement;
  partPut: SqliteStatement;
  /** Parts [from, to) of one entry. */
  partsDelete: SqliteStatement;
  partsClear: SqliteStatement;
  partsOf: SqliteStatement;
  partedAll: SqliteStatement;
}

export function tables(db: SqliteDatabase, name: string): Tables {
  const entries = `entries${name}`;
  const timers = `timers${name}`;
  const parts = `parts${name}`;
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${entries} (
      rule TEXT NOT NULL, id BLOB NOT NULL, value BLOB NOT NULL,
      PRIMARY KEY (rule, id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ${timers} (
      seq INTEGER PRIMARY KEY, at REAL NOT NULL, rule TEXT NOT NULL, key BLOB NOT NULL,
      tag INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS ${parts} (
      rule TEXT NOT NULL, id BLOB NOT NULL, part INTEGER NOT NULL, bytes BLOB NOT NULL,
      PRIMARY KEY (rule, id, part));
  `);
  return {
    name,
    // `WHERE true`: an upsert's ON CONFLICT after a SELECT is otherwise read as a join's.
    upserts: multiRow(
      db,
      5,
      (values) =>
        `INSERT INTO ${entries} (rule, id, value) SELECT v.column1, substr(b.x, v.column2, v.column3), substr(b.x, v.column4, v.column5) FROM (SELECT ? AS x) AS b, (VALUES ${values}) AS v WHERE true ON CONFLICT (rule, id) DO UPDATE SET value = excluded.value`,
    ),
    remove: db.prepare(`DELETE FROM ${entries} WHERE rule = ? AND id = ?`),
    timerInserts: multiRow(
      db,
      6,
      (values) =>
        `INSERT OR REPLACE INTO ${timers} (seq, at, rule, key, tag) SELECT v.column1, v.column2, v.column3, substr(b.x, v.column4, v.column5), v.column6 FROM (SELECT ? AS x) AS b, (VALUES ${values}) AS v`,
    ),
    timerDelete: db.prepare(`DELETE FROM ${timers} WHERE seq = ?`),
    // Tables are cleared in chunks of CLEAR_CHUNK rows, in key order.
    entriesCut: db.prepare(
      `SELECT rule, id FROM ${entries} ORDER BY rule, id LIMIT 1 OFFSET ${CLEAR_CHUNK - 1}`,
    ),
    entriesClearTo: db.prepare(`DELETE FROM ${entries} WHERE (rule, id) <= (?, ?)`),
    entriesClearAll: db.prepare(`DELETE FROM ${entries}`),
    timersClear: db.prepare(
      `DELETE FROM ${timers} WHERE seq IN (SELECT seq FROM ${timers} ORDER BY seq LIMIT ${CLEAR_CHUNK})`,
    ),
    entriesAll: db.prepare(`SELECT rule, id, value FROM ${entries}`),
    timersAll: db.prepare(`SELECT seq, at, rule, key, tag FROM ${timers}`),
    upsertOne: db.prepare(
      `INSERT INTO ${entries} (rule, id, value) VALUES (?, ?, ?) ON CONFLICT (rule, id) DO UPDATE SET value = excluded.value`,
    ),
    partPut: db.prepare(
      `INSERT OR REPLACE INTO ${parts} (rule, id, part, bytes) VALUES (?, ?, ?, ?)`,
    ),
    partsDelete: db.prepare(
      `DELETE FROM ${parts} WHERE rule = ? AND id = ? AND part >= ? AND part < ?`,
    ),
    partsClear: db.prepare(
      `DELETE FROM ${parts} WHERE rowid IN (SELECT rowid FROM ${parts} LIMIT ${PART_DELETE})`,
    ),
    // Only the parts the head counts: any past them (left by a write whose bookkeeping was
    // lost) are not the value's.
    partsOf: db.prepare(
      `SELECT bytes FROM ${parts} WHERE rule = ? AND id = ? AND part < ? ORDER BY part`,
    ),
    partedAll: db.prepare(`SELECT rule, id, count(*) AS n FROM ${parts} GROUP BY rule, id`),
  };
}

/** Clears a set of tables, CLEAR_CHUNK rows a statement, until `until`; true once empty. */
function clearTables(t: Tables, until: number): boolean {
  for (;;) {
    const cut = t.entriesCut.get() as { rule: string; id: Uint8Array } | undefined;
    if (cut !== undefined) t.entriesClearTo.run(cut.rule, cut.id);
    else {
      t.entriesClearAll.run();
      if (Number(t.timersClear.run().changes) === 0 && Number(t.partsClear.run().changes) === 0)
        return true;
    }
    if (performance.now() >= until) return false;
  }
}

/** The `meta` table, created when missing, and its upsert. */
export function metaTable(db: SqliteDatabase): SqliteStatement {
  db.exec('CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);');
  return db.prepare(
    'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
  );
}

/** A batch of entries as the writer reads it (an EntryBatch, or one sent to the worker). */
export interface RowsIn {
  bytes: Buffer;
  spans: Float64Array;
  /** Row i's rule. */
  rule: (i: number) => string;
  rows: number;
  end: number;
  parted: ArrayLike<PartedValue | undefined>;
}

/** Timer rows (TIMER_WIDTH numbers each) and their keys back to back. */
export interface TimersIn {
  nums: Float64Array;
  keys: Buffer;
  names: ArrayLike<string>;
  n: number;
}

/** What the writer counts of one checkpoint (merged into WriteStats). */
export interface WriterStats {
  entries: number;
  timers: number;
  bytes: number;
  commits: number;
  maxBytesUnchecked: number;
  maxEntryBytes: number;
}

interface Job {
  full: boolean;
  into: 0 | 1;
  old: 0 | 1;
  /** A full checkpoint commits each batch (its transactions stay a batch's size). */
  commitEach: boolean;
  open: boolean;
  stats: WriterStats;
  unchecked: number;
}

/**
 * The writes of one connection: one checkpoint at a time (begin, then its batches in
 * order, then finish or fail). A crash, or a failure, before finish leaves the previous
 * checkpoint: an incremental one is one transaction; a full one goes into the set of
 * tables not in use, a transaction a batch, and becomes the checkpoint only when finish
 * names that set in `meta` with the head and the offsets (its rows are cleared by the
 * next full one); after that switch the old set is cleared, a transaction per
 * CLEAR_TX_MS.
 */
export class TableWriter {
  readonly sets: [Tables, Tables];
  /** The set of tables the last checkpoint committed is in. */
  current: 0 | 1 = 0;
  /**
   * The entries each set of tables holds in parts (PART_BYTES): rule → id → parts, as its
   * `parts` table holds them, read at open and kept with each write (read again after a
   * failed one). Bounded by the bytes stored: each is a value of more than PART_BYTES
   * that the rules' state holds (their key and term caps bound it).
   */
  readonly parted: [Parted, Parted] = [new Map() as Parted, new Map() as Parted];
  private readonly metaSet: SqliteStatement;
  private job: Job | undefined;

  constructor(
    private readonly db: SqliteDatabase,
    /**
     * Runs a COMMIT (false: the store is closed, and nothing may be committed any more:
     * the transaction is rolled back and the write fails).
     */
    private readonly commitGuard: (commit: () => void) => boolean,
    /** After each commit. */
    private readonly afterCommit: () => void,
  ) {
    this.metaSet = metaTable(db);
    this.sets = [tables(db, TABLE_SETS[0]), tables(db, TABLE_SETS[1])];
    this.reload();
  }

  /** The set of tables in use and the parted entries of both, from the file. */
  reload(): void {
    const named = this.db.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as
      { value: Uint8Array } | undefined;
    if (named !== undefined) {
      const i = TABLE_SETS.indexOf(deserialize(named.value) as (typeof TABLE_SETS)[number]);
      if (i < 0) throw new Error('no such set of checkpoint tables');
      this.current = i as 0 | 1;
    }
    for (let i = 0; i < 2; i++) {
      const parted = this.parted[i]!;
      parted.clear();
      for (const r of this.sets[i]!.partedAll.iterate() as Iterable<{
        rule: string;
        id: Uint8Array;
        n: number | bigint;
      }>) {
        let ids = parted.get(r.rule);
        if (ids === undefined) parted.set(r.rule, (ids = new Map<string, number>()));
        ids.set(idString(r.id), Number(r.n));
      }
    }
  }

  private commit(job: Job): void {
    // A COMMIT that throws is thrown on by the guard (its lock released first).
    if (!this.commitGuard(() => this.db.exec('COMMIT'))) throw new Error('checkpoint store closed');
    job.open = false;
    job.stats.commits++;
    this.afterCommit();
  }

  private opened(job: Job): void {
    if (job.open) return;
    this.db.exec('BEGIN IMMEDIATE');
    job.open = true;
  }

  /** Bytes written since the last account (stats.maxBytesUnchecked). */
  private account(job: Job): void {
    if (job.unchecked > job.stats.maxBytesUnchecked) job.stats.maxBytesUnchecked = job.unchecked;
    job.unchecked = 0;
  }

  /**
   * Begins a checkpoint; a full one first clears the set it goes into (rows a full
   * checkpoint that failed or crashed left there).
   */
  begin(full: boolean, commitEach: boolean): void {
    if (this.job !== undefined) throw new Error('a checkpoint is being written already');
    const old = this.current;
    const job: Job = {
      full,
      into: full ? ((1 - old) as 0 | 1) : old,
      old,
      commitEach: full && commitEach,
      open: false,
      stats: {
        entries: 0,
        timers: 0,
        bytes: 0,
        commits: 0,
        maxBytesUnchecked: 0,
        maxEntryBytes: 0,
      },
      unchecked: 0,
    };
    this.job = job;
    if (full) {
      this.clear(job, job.into);
      this.parted[job.into].clear();
    }
  }

  /** Clears set `i`, a transaction per CLEAR_TX_MS when committing each batch. */
  private clear(job: Job, i: 0 | 1): void {
    for (;;) {
      this.opened(job);
      const done = clearTables(
        this.sets[i],
        job.commitEach ? performance.now() + CLEAR_TX_MS : Number.POSITIVE_INFINITY,
      );
      if (job.commitEach) this.commit(job);
      if (done) return;
    }
  }

  /** After a batch: a full checkpoint written a transaction a batch commits it. */
  private batchDone(job: Job): void {
    this.account(job);
    if (job.commitEach && job.open) this.commit(job);
  }

  /**
   * Row `row` of the batch, whose value is parted now (longer than PART_BYTES) or was
   * (`old` parts stored): old parts past the new ones deleted, the row written, then
   * each part, accounted between two.
   */
  private writeLarge(job: Job, b: RowsIn, row: number, old: number | undefined): void {
    const t = this.sets[job.into];
    const parted = this.parted[job.into];
    const { bytes, spans } = b;
    const rule = b.rule(row);
    const r = 3 * row;
    const id = bytes.subarray(spans[r], spans[r + 1]);
    // A value encoded in steps is in pieces of PART_BYTES (the last shorter): its parts.
    const pieces = b.parted[row];
    const value = pieces?.parts[0] ?? bytes.subarray(spans[r + 1], spans[r + 2]);
    const size = pieces?.size ?? value.length;
    const parts = size > PART_BYTES ? Math.ceil(size / PART_BYTES) : 0;
    if (old !== undefined && old > parts) {
      for (let from = parts; from < old; from += PART_DELETE)
        t.partsDelete.run(rule, id, from, Math.min(old, from + PART_DELETE));
      this.account(job);
    }
    if (size === 0) t.remove.run(rule, id);
    else t.upsertOne.run(rule, id, parts > 0 ? partsHead(size, parts) : value);
    job.unchecked += id.length + (parts > 0 ? 0 : size);
    if (parts > 0) this.account(job);
    for (let part = 0; part < parts; part++) {
      const from = part * PART_BYTES;
      const chunk =
        pieces?.parts[part] ?? value.subarray(from, Math.min(value.length, from + PART_BYTES));
      t.partPut.run(rule, id, part, chunk);
      job.unchecked += chunk.length;
      this.account(job);
    }
    const key = idString(id);
    let ids = parted.get(rule);
    if (parts > 0) {
      if (ids === undefined) parted.set(rule, (ids = new Map<string, number>()));
      ids.set(key, parts);
    } else if (ids !== undefined) {
      ids.delete(key);
      if (ids.size === 0) parted.delete(rule);
    }
  }

  /** A batch of entries, in order. */
  rows(b: RowsIn): void {
    const job = this.job!;
    this.opened(job);
    const t = this.sets[job.into];
    const parted = this.parted[job.into];
    const { bytes, spans } = b;
    const stats = job.stats;
    const rows = b.rows;
    let row = 0;
    while (row < rows) {
      const i = row;
      const pieces = b.parted[i];
      const size = pieces?.size ?? spans[3 * i + 2]! - spans[3 * i + 1]!;
      if (size > stats.maxEntryBytes) stats.maxEntryBytes = size;
      // A rule holding parted values: its rows are looked up (their id made a string).
      const ids = parted.size === 0 ? undefined : parted.get(b.rule(i));
      const old =
        ids === undefined
          ? undefined
          : ids.get(bytes.toString('utf16le', spans[3 * i], spans[3 * i + 1]));
      if (size > PART_BYTES || old !== undefined || pieces !== undefined) {
        if (pieces !== undefined) stats.bytes += pieces.size;
        this.writeLarge(job, b, i, old);
        row++;
        this.account(job);
        continue;
      }
      if (size === 0) {
        // No value: the rule holds nothing under the id any more.
        t.remove.run(b.rule(i), bytes.subarray(spans[3 * i], spans[3 * i + 1]));
        job.unchecked += spans[3 * i + 1]! - spans[3 * i]!;
        row++;
        continue;
      }
      let n = 1;
      while (
        n < MAX_ROWS &&
        i + n < rows &&
        spans[3 * (i + n) + 2]! > spans[3 * (i + n) + 1]! &&
        spans[3 * (i + n) + 2]! - spans[3 * (i + n) + 1]! <= PART_BYTES &&
        b.parted[i + n] === undefined &&
        (parted.size === 0 || !parted.has(b.rule(i + n)))
      )
        n++;
      n = rowsOf(n);
      const { statement, args } = t.upserts(n);
      const from = spans[3 * i]!;
      const to = spans[3 * (i + n - 1) + 2]!;
      args[0] = bytes.subarray(from, to);
      for (let j = 0, a = 1; j < n; j++, a += 5) {
        const r = 3 * (i + j);
        args[a] = b.rule(i + j);
        args[a + 1] = spans[r]! - from + 1;
        args[a + 2] = spans[r + 1]! - spans[r]!;
        args[a + 3] = spans[r + 1]! - from + 1;
        args[a + 4] = spans[r + 2]! - spans[r + 1]!;
      }
      statement.run(...args);
      job.unchecked += to - from;
      row += n;
    }
    stats.entries += rows;
    stats.bytes += b.end;
    this.batchDone(job);
  }

  /** A batch of timers, by multi-row statements. */
  timers(tb: TimersIn): void {
    const job = this.job!;
    this.opened(job);
    const t = this.sets[job.into];
    const { nums, keys, names } = tb;
    let from = 0;
    while (from < tb.n) {
      const n = rowsOf(tb.n - from);
      const { statement, args } = t.timerInserts(n);
      const k0 = nums[TIMER_WIDTH * from + 3]!;
      const k1 = nums[TIMER_WIDTH * (from + n - 1) + 4]!;
      for (let j = 0, a = 1; j < n; j++, a += 6) {
        const r = TIMER_WIDTH * (from + j);
        args[a] = nums[r]!;
        args[a + 1] = nums[r + 1]!;
        args[a + 2] = names[nums[r + 2]!];
        args[a + 3] = nums[r + 3]! - k0 + 1;
        args[a + 4] = nums[r + 4]! - nums[r + 3]!;
        args[a + 5] = nums[r + 5]!;
      }
      // Never an empty BLOB: SQLite reads one as NULL, and substr of NULL is NULL (every
      // key of the statement empty); a byte more, past the keys, is cut by no row.
      args[0] = keys.subarray(k0, k1 + 1);
      statement.run(...args);
      job.unchecked += 24 * n + (k1 - k0);
      job.stats.bytes += 24 * n + (k1 - k0);
      job.stats.timers += n;
      from += n;
    }
    this.batchDone(job);
  }

  /** Timers that ran since the last checkpoint: their rows deleted. */
  removed(seqs: ArrayLike<number>): void {
    const job = this.job!;
    this.opened(job);
    const t = this.sets[job.into];
    for (let i = 0; i < seqs.length; i++) t.timerDelete.run(seqs[i]!);
    this.batchDone(job);
  }

  /**
   * Names the checkpoint's set of tables in `meta` with `head` (the engine's head, the
   * offsets and the time, serialized) and commits: the switch. A full one's old set is
   * cleared after. Its stats.
   */
  finish(format: Uint8Array, tablesName: (set: 0 | 1) => Uint8Array, head: Uint8Array) {
    const job = this.job!;
    this.opened(job);
    this.metaSet.run('format', format);
    this.metaSet.run('tables', tablesName(job.into));
    this.metaSet.run('head', head);
    this.account(job);
    this.commit(job);
    this.current = job.into;
    if (job.full) {
      job.commitEach = true;
      this.clear(job, job.old);
      this.parted[job.old].clear();
    }
    this.job = undefined;
    return job.stats;
  }

  /** Whether a checkpoint is begun and not finished. */
  get busy(): boolean {
    return this.job !== undefined;
  }

  /** Abandons the checkpoint being written: its open transaction rolled back. */
  fail(): void {
    const job = this.job;
    this.job = undefined;
    if (job?.open) {
      try {
        this.db.exec('ROLLBACK');
      } catch {
        // SQLite rolled it back itself (a failed commit).
      }
    }
    // What was rolled back: the parted entries as the tables hold them. Unreadable (the
    // file failing), none are known: a later write may then leave an old value's parts
    // behind, past its new head's count or under a row no longer parted, which reads
    // ignore and the next full checkpoint's clearing of its set removes.
    try {
      this.reload();
    } catch {
      for (const parted of this.parted) parted.clear();
    }
  }
}

/** The write-ahead log's size on disk. */
export function logBytes(path: string): number {
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
}

/** Opens the store's file for writing, as the store's every connection is. */
export function openStore(path: string): SqliteDatabase {
  const db = openSqlite(path);
  enableWal(db);
  // No fsync, as the JSON snapshot before it: a process that dies leaves the last commit
  // whole; a power loss may lose the file (the bus is then replayed from the start).
  db.pragma('synchronous = OFF');
  // The write-ahead log is folded into the database at open and close, and by a worker
  // once it has grown past foldBytes, not at each commit.
  db.pragma('wal_autocheckpoint = 0');
  // A small page cache spills changed pages to the log as batches are written, so the
  // commit writes few.
  db.pragma('cache_size = -256');
  // A statement that writes several rows keeps the original of each page it changes in
  // a statement journal; SQLite's default spills it past 64 KiB to a temporary file. Here
  // it stays in memory: at most the pages one statement of MAX_ROWS rows changes.
  db.pragma('temp_store = MEMORY');
  return db;
}

/** Messages to the writer thread. Each but `close` is answered by a Reply. */
export type Request =
  | { op: 'begin'; job: number; full: boolean; reload: boolean }
  | {
      op: 'rows';
      job: number;
      bytes: Uint8Array;
      spans: Float64Array;
      idx: Uint32Array;
      rows: number;
      end: number;
      /** Rule names added since the last message of this job. */
      names: string[];
      parted: Array<[row: number, parts: Uint8Array[], size: number]>;
    }
  | {
      op: 'timers';
      job: number;
      nums: Float64Array;
      keys: Uint8Array;
      n: number;
      names: string[];
    }
  | { op: 'removed'; job: number; seqs: Float64Array }
  | {
      op: 'finish';
      job: number;
      format: Uint8Array;
      tables: [Uint8Array, Uint8Array];
      head: Uint8Array;
    }
  | { op: 'abort'; job: number }
  | { op: 'close' };

export type Reply =
  | { op: 'ready' }
  | {
      op: 'answer';
      job: number;
      /** The buffers a `rows` message transferred, handed back. */
      carrier?: { bytes: Uint8Array; spans: Float64Array; idx: Uint32Array };
      /** The log's size after a commit this message made, if it made one. */
      log?: number;
      /** The checkpoint's stats, and its set of tables, once finished. */
      finished?: { stats: WriterStats; current: 0 | 1 };
      /** The write failed (its transaction rolled back; later messages of it are ignored). */
      error?: string;
    }
  | { op: 'fatal'; error: string };

/**
 * The lock of a COMMIT against the store's close (an Int32 shared by both threads): 0
 * idle, 1 the writer committing, 2 closed. The writer commits only from 0 (1 while it
 * commits); close waits out a commit running and then sets 2, so once close returns no
 * commit of that writer lands (a store opened again on the file after a "crash" reads
 * what close left).
 */
export const LOCK_IDLE = 0;
export const LOCK_COMMITTING = 1;
export const LOCK_CLOSED = 2;
/** The thread's start, lock[1]: 0 opening its connection, then STARTED or START_FAILED. */
const STARTED = 1;
const START_FAILED = 2;

/**
 * Writer threads this process has started, and those of them not ended yet (tests: a
 * store only read starts none; a store closed ends its thread).
 */
let threadsStarted = 0;
let threadsRunning = 0;
export function writerThreads(): { started: number; running: number } {
  return { started: threadsStarted, running: threadsRunning };
}

/** Where a writer thread is: opening its connection, writing, or failed to open. */
export type WriterState = 'starting' | 'ready' | 'failed';

/**
 * The loop's handle on the writer thread. Its start is asynchronous: the constructor
 * makes the Worker and returns; the thread loads (0.1-1 s from the sources, through
 * tsx's loader; less from dist/) and opens its connection while the loop goes on, and
 * `ready` resolves once it has (a write waits for it). Opening, the thread only reads
 * the file (the store's own connection made its tables, and set WAL, before: its
 * CREATE TABLE IF NOT EXISTS write nothing, take no write lock), so a restore or a
 * writeNow on the loop's connection meanwhile neither waits for it nor makes it wait
 * (both connections have a busy_timeout, ingest/storage/sqlite.ts, should one ever).
 * The Worker is unref'd: a process may end while its thread opens (the thread has
 * written nothing then); a write, or startWriter, waiting for it holds it (hold()).
 */
export class WriterThread {
  readonly worker: Worker;
  /** [0]: the commit lock (LOCK_*); [1]: the thread's start (0, STARTED, START_FAILED). */
  readonly lock = new Int32Array(new SharedArrayBuffer(8));
  /**
   * Resolves once the thread has opened its connection; rejects if it could not (or
   * ended, or the store was closed, before).
   */
  readonly ready: Promise<void>;
  fatal: Error | undefined;
  /** Set once `ready` has resolved or rejected. */
  private settled = false;
  private readonly fail: (err: Error) => void;
  /** Callers holding the thread (hold()): referenced while any does. */
  private holds = 0;

  constructor(path: string, foldBytes: number) {
    const self = import.meta.url;
    const data = { checkpointWriter: path, foldBytes, lock: this.lock };
    // As ingest/sinks/embedded-worker.ts: from the sources, tsx's loader reads the worker.
    this.worker = self.endsWith('.ts')
      ? new Worker(
          `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(self)}); })`,
          { eval: true, workerData: data },
        )
      : new Worker(new URL(self), { workerData: data });
    this.worker.unref();
    threadsStarted++;
    threadsRunning++;
    this.worker.once('exit', () => threadsRunning--);
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    this.ready = new Promise<void>((yes, no) => {
      resolve = yes;
      reject = no;
    });
    this.ready.catch(() => undefined);
    this.fail = (err) => {
      this.fatal ??= err;
      if (this.settled) return;
      this.settled = true;
      reject(err);
    };
    const starting = (why: string) =>
      this.settled ? why : `checkpoint writer thread could not start: ${why}`;
    this.worker.on('message', (m: Reply) => {
      if (m.op === 'ready') {
        if (this.settled) return;
        this.settled = true;
        resolve();
      } else if (m.op === 'fatal') this.fail(new Error(starting(m.error)));
    });
    this.worker.on('error', (err: unknown) =>
      this.fail(
        new Error(starting(err instanceof Error ? err.message : String(err)), { cause: err }),
      ),
    );
    this.worker.on('exit', () => this.fail(new Error(starting('checkpoint writer thread ended'))));
  }

  /** As the thread last said. */
  get state(): WriterState {
    const at = Atomics.load(this.lock, 1);
    return at === STARTED ? 'ready' : at === START_FAILED ? 'failed' : 'starting';
  }

  /**
   * Held while a write waits for answers (or for the thread's start): the process does
   * not end under it. Counted: each `hold(true)` is released by one `hold(false)`.
   */
  hold(on: boolean): void {
    this.holds = Math.max(0, this.holds + (on ? 1 : -1));
    if (this.holds > 0) this.worker.ref();
    else this.worker.unref();
  }

  post(m: Request, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  /**
   * No commit of the writer lands after this returns (see LOCK_*); the thread ends. A
   * thread still starting reads the close once it has opened its connection (it commits
   * nothing before); `ready` rejects now, so a write waiting for it fails at once.
   */
  close(): void {
    const lock = this.lock;
    while (Atomics.compareExchange(lock, 0, LOCK_IDLE, LOCK_CLOSED) === LOCK_COMMITTING)
      Atomics.wait(lock, 0, LOCK_COMMITTING, 100);
    this.fail(new Error('checkpoint store closed'));
    this.worker.postMessage({ op: 'close' } satisfies Request);
    this.holds = 0;
    this.worker.unref();
  }
}

const writerPath = isMainThread
  ? undefined
  : (workerData as { checkpointWriter?: unknown } | null)?.checkpointWriter;
if (typeof writerPath === 'string') runWriter(writerPath);

/** The writer thread's loop: each message written in order, then answered. */
function runWriter(path: string): void {
  const { foldBytes, lock } = workerData as { foldBytes: number; lock: Int32Array };
  const port = parentPort!;
  lowerThisThread();
  let db: SqliteDatabase;
  let writer: TableWriter;
  let committed: number | undefined;
  try {
    db = openStore(path);
    writer = new TableWriter(
      db,
      (commit) => {
        if (Atomics.compareExchange(lock, 0, LOCK_IDLE, LOCK_COMMITTING) !== LOCK_IDLE)
          return false;
        try {
          commit();
        } finally {
          Atomics.store(lock, 0, LOCK_IDLE);
          Atomics.notify(lock, 0);
        }
        return true;
      },
      () => {
        // Past FOLD_HERE_FACTOR times the fold size (folds failing, or slower than the
        // writes), folded here, on the writer: the log's bound on disk. Under it, the
        // loop asks the fold worker (checkpoint-fold.ts) once it passes foldBytes.
        let log = logBytes(path);
        if (log > foldBytes * FOLD_HERE_FACTOR) {
          db.pragma('wal_checkpoint(TRUNCATE)');
          log = logBytes(path);
        }
        committed = log;
      },
    );
  } catch (err) {
    // The state first: the loop reading it on the message sees it.
    Atomics.store(lock, 1, START_FAILED);
    port.postMessage({ op: 'fatal', error: String(err) } satisfies Reply);
    return;
  }
  /** The job being written, and whether it failed (its later messages are ignored). */
  let job = -1;
  let failed = false;
  let names: string[] = [];
  /** A `rows` message as the TableWriter reads it (one, reused). */
  let idx: Uint32Array = new Uint32Array(0);
  const rowsIn: RowsIn = {
    bytes: Buffer.alloc(0),
    spans: new Float64Array(0),
    rule: (i) => names[idx[i]!]!,
    rows: 0,
    end: 0,
    parted: [],
  };
  port.on('message', (m: Request) => {
    if (m.op === 'close') {
      writer.fail();
      db.close();
      port.close();
      return;
    }
    const answer: Extract<Reply, { op: 'answer' }> = { op: 'answer', job: m.job };
    committed = undefined;
    try {
      if (m.op === 'begin') {
        job = m.job;
        failed = false;
        names = [];
        if (writer.busy) writer.fail();
        if (m.reload) writer.reload();
        writer.begin(m.full, true);
      } else if (m.job !== job || failed) {
        // A message of a checkpoint that failed or was abandoned: answered, not written.
      } else if (m.op === 'rows') {
        for (const name of m.names) names.push(name);
        idx = m.idx;
        rowsIn.bytes = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
        rowsIn.spans = m.spans;
        rowsIn.rows = m.rows;
        rowsIn.end = m.end;
        const parted: Array<PartedValue | undefined> = [];
        for (const [row, parts, size] of m.parted)
          parted[row] = {
            parts: parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)),
            size,
          };
        rowsIn.parted = parted;
        writer.rows(rowsIn);
      } else if (m.op === 'timers') {
        for (const name of m.names) names.push(name);
        writer.timers({
          nums: m.nums,
          keys: Buffer.from(m.keys.buffer, m.keys.byteOffset, m.keys.byteLength),
          names,
          n: m.n,
        });
      } else if (m.op === 'removed') {
        writer.removed(m.seqs);
      } else if (m.op === 'finish') {
        const stats = writer.finish(m.format, (set) => m.tables[set], m.head);
        answer.finished = { stats, current: writer.current };
      } else if (m.op === 'abort') {
        failed = true;
        writer.fail();
      }
    } catch (err) {
      failed = true;
      writer.fail();
      answer.error = err instanceof Error ? err.message : String(err);
    }
    if (committed !== undefined) answer.log = committed;
    if (m.op === 'rows') {
      answer.carrier = { bytes: m.bytes, spans: m.spans, idx: m.idx };
      port.postMessage(answer, [m.bytes.buffer, m.spans.buffer, m.idx.buffer] as ArrayBuffer[]);
    } else port.postMessage(answer);
  });
  Atomics.store(lock, 1, STARTED);
  port.postMessage({ op: 'ready' } satisfies Reply);
}
