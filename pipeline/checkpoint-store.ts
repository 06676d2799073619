/**
 * The rules' checkpoint store (docs/architecture.md#checkpoints): the engine's state as
 * entries in SQLite, one row per rule and key, written incrementally from the engine's
 * captures (rules/changes.ts), with the bus offsets the state reflects in the same
 * transaction. A crash, or a failed write, leaves the previous checkpoint.
 *
 * A capture is written in slices: each takes entries from the capture and upserts them,
 * for at most `sliceMs`, then yields the event loop until the next. An incremental
 * capture (bounded by what changed) is one transaction, open across slices (this
 * connection is the file's only writer), committed with the head and the offsets in the
 * last slice. A full one would make a transaction, and a COMMIT, the size of the whole
 * state (~140 ms on the loop at 1 M keys), so it is written as a transaction per slice
 * into the set of tables not in use, and becomes the checkpoint only when its last slice
 * names that set in `meta` with the head and the offsets: a crash or a failure before
 * leaves the previous checkpoint, and the rows written are cleared by the next full one.
 * After the switch, the old set is cleared, a transaction per slice.
 *
 * Encoding: each entry in checkpoint-codec.ts's form (plain data, typed numbers, ±Infinity
 * kept, strings as they are, linear in their size, no native object per entry); the head
 * and the offsets, once per checkpoint, as V8 values (`node:v8`); ids and keys are BLOBs of their UTF-16 code units, so any string a sender
 * picks (NULs, lone surrogates) comes back unchanged.
 */
import { existsSync, statSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { decodeValue, encodeValue } from './checkpoint-codec.ts';
import { LogFolder } from './checkpoint-fold.ts';
import {
  type Capture,
  type EngineHead,
  type EntryRow,
  type TimerRow,
  timerRow,
} from '../rules/changes.ts';
import type { RunnerEntry } from '../rules/runner.ts';
import {
  enableWal,
  openSqlite,
  type SqliteDatabase,
  type SqliteStatement,
} from '../ingest/storage/sqlite.ts';

/**
 * The store's layout; a file of another format is not read. Format 2 encodes entries
 * with checkpoint-codec.ts; format 1's entries (`node:v8`) are read too, and a store's
 * rows may hold both (a format-1 store updated since). Format 3 names the set of tables
 * the checkpoint is in (`meta` 'tables', one of TABLE_SETS); before, always the first. A
 * reader of format 2 would read the other set, stale or empty: it refuses format 3.
 */
const FORMAT = 3;
const FORMATS_READ = new Set([1, 2, 3]);

/** The two sets of tables a checkpoint may be in: entries and timers, by suffix. */
const TABLE_SETS = ['', '_b'] as const;

/**
 * Bytes of write-ahead log past which a commit has it folded into the database, by a
 * worker thread (checkpoint-fold.ts); past FOLD_HERE_FACTOR times that (folds failing or
 * slower than the writes), on this thread, whatever the pause: the log's bound on disk.
 */
const FOLD_BYTES = 64 * 2 ** 20;
const FOLD_HERE_FACTOR = 8;

/** Rows a set of tables is cleared by between two checks of its slice's time. */
const CLEAR_CHUNK = 256;

export interface StoredCheckpoint {
  head: EngineHead;
  offsets: Record<string, number>;
  at: number;
  entries: Iterable<[rule: string, id: string, entry: RunnerEntry]>;
  timers: Iterable<TimerRow>;
}

export interface WriteStats {
  full: boolean;
  entries: number;
  timers: number;
  /** Bytes of entries and timers written (encoded values and ids). */
  bytes: number;
  /** The longest time one slice held the event loop, and all slices together (ms). */
  maxPauseMs: number;
  totalMs: number;
  slices: number;
  /** Transactions committed (a full checkpoint commits one per slice). */
  commits: number;
}

export interface WriteOptions {
  /** How long one slice may hold the event loop (ms). Default 2. */
  sliceMs?: number;
  /**
   * Entries taken from the capture between two checks of the slice's time. Default 16:
   * an upsert into a large table costs up to ~80 us (a page not in SQLite's small cache),
   * so 64 overran a 2 ms slice by ~5 ms at 1.1 M keys with 1% changed.
   */
  step?: number;
}

export function encodeEntry(entry: RunnerEntry): Uint8Array {
  return encodeValue(entry);
}

function idBlob(id: string): Buffer {
  return Buffer.from(id, 'utf16le');
}

function idString(blob: Uint8Array): string {
  return Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).toString('utf16le');
}

/** The offsets and time of the last checkpoint in a store file, without opening it for writing. */
export function readCheckpointHead(
  path: string,
): { offsets: Record<string, number>; at: number } | undefined {
  if (!existsSync(path)) return undefined;
  const db = openSqlite(path, { readonly: true });
  try {
    const row = db.prepare("SELECT value FROM meta WHERE name = 'head'").get() as
      { value: Uint8Array } | undefined;
    if (row === undefined) return undefined;
    const { offsets, at } = deserialize(row.value) as {
      offsets: Record<string, number>;
      at: number;
    };
    return { offsets, at };
  } catch {
    return undefined; // no table yet
  } finally {
    db.close();
  }
}

/** Read each time it is iterated (restore reads a large state once, row by row). */
function iterable<T>(rows: () => Generator<T>): Iterable<T> {
  return { [Symbol.iterator]: rows };
}

/** One set of tables (TABLE_SETS) and its statements. */
interface Tables {
  name: string;
  upsert: SqliteStatement;
  remove: SqliteStatement;
  timerInsert: SqliteStatement;
  timerDelete: SqliteStatement;
  entriesCut: SqliteStatement;
  entriesClearTo: SqliteStatement;
  entriesClearAll: SqliteStatement;
  timersClear: SqliteStatement;
  entriesAll: SqliteStatement;
  timersAll: SqliteStatement;
}

function tables(db: SqliteDatabase, name: string): Tables {
  const entries = `entries${name}`;
  const timers = `timers${name}`;
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${entries} (
      rule TEXT NOT NULL, id BLOB NOT NULL, value BLOB NOT NULL,
      PRIMARY KEY (rule, id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ${timers} (
      seq INTEGER PRIMARY KEY, at REAL NOT NULL, rule TEXT NOT NULL, key BLOB NOT NULL,
      tag INTEGER NOT NULL);
  `);
  return {
    name,
    upsert: db.prepare(
      `INSERT INTO ${entries} (rule, id, value) VALUES (?, ?, ?) ON CONFLICT (rule, id) DO UPDATE SET value = excluded.value`,
    ),
    remove: db.prepare(`DELETE FROM ${entries} WHERE rule = ? AND id = ?`),
    timerInsert: db.prepare(
      `INSERT OR REPLACE INTO ${timers} (seq, at, rule, key, tag) VALUES (?, ?, ?, ?, ?)`,
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
  };
}

/** Clears a set of tables, CLEAR_CHUNK rows at a time, until `until`; true once empty. */
function clearTables(t: Tables, until: number): boolean {
  for (;;) {
    const cut = t.entriesCut.get() as { rule: string; id: Uint8Array } | undefined;
    if (cut !== undefined) t.entriesClearTo.run(cut.rule, cut.id);
    else {
      t.entriesClearAll.run();
      if (Number(t.timersClear.run().changes) === 0) return true;
    }
    if (performance.now() >= until) return false;
  }
}

export class CheckpointStore {
  private readonly db: SqliteDatabase;
  private readonly sets: [Tables, Tables];
  /** The set of tables the last checkpoint committed is in. */
  private current: 0 | 1 = 0;
  /**
   * A recent COMMIT's time (ms, a moving average): a full checkpoint commits each slice,
   * so its slices stop taking entries this much before their end, and the commit falls
   * inside the slice (it was 2-3 ms on top of a 2 ms slice at 1.1 M keys).
   */
  private commitMs = 0;
  private readonly metaSet: SqliteStatement;
  private writing = false;
  private readonly folder: LogFolder;
  private readonly foldBytes: number;
  /**
   * The log file's size when the last fold ended. The file is not cut after a fold: once
   * folded whole, the log starts over from its beginning inside it, and the file grows
   * again only once more than its size has been written since. A fold is asked for when
   * the file grows past this (and foldBytes), so once per that many bytes written, not
   * at every commit while the file stays large.
   */
  private foldedAt = 0;
  /** Folds that failed in the worker (the log is folded at a later commit). */
  foldFailures = 0;

  constructor(
    readonly path: string,
    options: { foldBytes?: number } = {},
  ) {
    this.foldBytes = options.foldBytes ?? FOLD_BYTES;
    this.folder = new LogFolder(path, () => this.foldFailures++);
    this.db = openSqlite(path);
    enableWal(this.db);
    // No fsync, as the JSON snapshot before it: a process that dies leaves the last
    // commit whole; a power loss may lose the file (the bus is then replayed from the start).
    this.db.pragma('synchronous = OFF');
    // The write-ahead log is folded into the database at open and close, and by a worker
    // once it has grown past foldBytes, not at each commit: that copy would hold the loop.
    // Once folded whole, the next transaction starts it over from its beginning; the file
    // keeps the size of the most written between two folds (no journal_size_limit: cutting
    // a few hundred MB off it at a commit held the loop 70 ms), and is cut at close.
    this.db.pragma('wal_autocheckpoint = 0');
    // A small page cache spills changed pages to the log as slices run, so the commit
    // writes few.
    this.db.pragma('cache_size = -256');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.exec('CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);');
    this.sets = [tables(this.db, TABLE_SETS[0]), tables(this.db, TABLE_SETS[1])];
    this.metaSet = this.db.prepare(
      'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    );
    const named = this.db.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as
      { value: Uint8Array } | undefined;
    if (named !== undefined) {
      const i = TABLE_SETS.indexOf(deserialize(named.value) as (typeof TABLE_SETS)[number]);
      if (i < 0) throw new Error(`${this.path}: no such set of checkpoint tables`);
      this.current = i as 0 | 1;
    }
  }

  /** The last checkpoint committed, or undefined when there is none. Entries are read lazily. */
  read(): StoredCheckpoint | undefined {
    const meta = new Map(
      (
        this.db.prepare('SELECT name, value FROM meta').all() as Array<{
          name: string;
          value: Uint8Array;
        }>
      ).map((r) => [r.name, r.value]),
    );
    const format = meta.get('format');
    const head = meta.get('head');
    if (format === undefined || head === undefined) return undefined;
    if (!FORMATS_READ.has(deserialize(format) as number))
      throw new Error(
        `${this.path}: checkpoint format ${String(deserialize(format))} is not ${FORMAT}`,
      );
    const { engine, offsets, at } = deserialize(head) as {
      engine: EngineHead;
      offsets: Record<string, number>;
      at: number;
    };
    const t = this.sets[this.current];
    return {
      head: engine,
      offsets,
      at,
      entries: iterable(function* () {
        const rows = t.entriesAll.iterate() as Iterable<{
          rule: string;
          id: Uint8Array;
          value: Uint8Array;
        }>;
        for (const r of rows)
          yield [r.rule, idString(r.id), decodeValue(r.value) as RunnerEntry] as [
            string,
            string,
            RunnerEntry,
          ];
      }),
      timers: iterable(function* () {
        const rows = t.timersAll.iterate() as Iterable<{
          seq: number | bigint;
          at: number;
          rule: string;
          key: Uint8Array;
          tag: number | bigint;
        }>;
        for (const r of rows)
          yield [Number(r.seq), r.at, r.rule, idString(r.key), Number(r.tag)] as TimerRow;
      }),
    };
  }

  /**
   * Writes a capture with the offsets its state reflects, in slices (see the file's
   * comment). Rejects, leaving the previous checkpoint, when a write fails; the caller
   * then abandons the capture (Engine.abandonCapture).
   */
  async write(
    capture: Capture,
    offsets: Record<string, number>,
    options: WriteOptions = {},
  ): Promise<WriteStats> {
    const sliceMs = options.sliceMs ?? 2;
    const work = this.begin(capture, offsets, options.step ?? 16);
    for (;;) {
      const began = performance.now();
      let done: boolean;
      try {
        done = work.slice(began + sliceMs);
      } catch (err) {
        work.fail();
        throw err;
      }
      work.paused(performance.now() - began);
      if (done) return work.stats;
      // Between two transactions (a full checkpoint's), a fold running is waited for:
      // the next transaction then starts the log over, which stays near foldBytes.
      if (!work.open) await this.folder.running();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** write, all at once (at shutdown, and where a caller needs the checkpoint now). */
  writeNow(capture: Capture, offsets: Record<string, number>): WriteStats {
    const work = this.begin(capture, offsets, 1024);
    const began = performance.now();
    try {
      while (!work.slice(Number.POSITIVE_INFINITY));
    } catch (err) {
      work.fail();
      throw err;
    }
    work.paused(performance.now() - began);
    return work.stats;
  }

  private begin(capture: Capture, offsets: Record<string, number>, step: number) {
    if (this.writing) throw new Error('a checkpoint is being written already');
    this.writing = true;
    const stats: WriteStats = {
      full: capture.full,
      entries: 0,
      timers: 0,
      bytes: 0,
      maxPauseMs: 0,
      totalMs: 0,
      slices: 0,
      commits: 0,
    };
    const at = Date.now();
    const offsetsNow = { ...offsets };
    const full = capture.full;
    // A full checkpoint goes into the other set of tables, an incremental one the current.
    const old = this.current;
    const into: 0 | 1 = full ? ((1 - old) as 0 | 1) : old;
    const t = this.sets[into];
    let open = false;
    let cleared = !full;
    let taken = false;
    let added = 0;
    let removed = 0;
    let switched = false;
    let oldCleared = !full;
    const db = this.db;
    const commit = () => {
      const began = performance.now();
      db.exec('COMMIT');
      this.commitMs = 0.8 * this.commitMs + 0.2 * (performance.now() - began);
      open = false;
      stats.commits++;
      this.committed();
    };
    const writeRows = (rows: EntryRow[]) => {
      for (const [rule, id, value] of rows) {
        const blob = idBlob(id);
        if (value === null) t.remove.run(rule, blob);
        else {
          t.upsert.run(rule, blob, value);
          stats.bytes += value.byteLength;
        }
        stats.bytes += blob.byteLength;
        stats.entries++;
      }
    };
    /** The work up to `until`; true once the checkpoint is committed and the old set cleared. */
    const run = (until: number): boolean => {
      // Rows a full checkpoint that failed or crashed left in the set it goes into.
      if (!cleared) {
        cleared = clearTables(t, until);
        if (!cleared) return false;
      }
      while (!taken) {
        taken = capture.step(step);
        writeRows(capture.drain());
        if (!taken && performance.now() >= until) return false;
      }
      writeRows(capture.drain());
      const rows = capture.timersAdded;
      while (added < rows.length) {
        const end = Math.min(rows.length, added + step * 4);
        for (; added < end; added++) {
          const [seq, ts, rule, key, tag] = timerRow(rows[added]!);
          const blob = idBlob(key);
          t.timerInsert.run(seq, ts, rule, blob, tag);
          stats.bytes += 24 + blob.byteLength;
          stats.timers++;
        }
        if (added < rows.length && performance.now() >= until) return false;
      }
      const gone = capture.timersRemoved;
      while (removed < gone.length) {
        const end = Math.min(gone.length, removed + step * 4);
        for (; removed < end; removed++) t.timerDelete.run(gone[removed]!);
        if (removed < gone.length && performance.now() >= until) return false;
      }
      if (!switched) {
        this.metaSet.run('format', serialize(FORMAT));
        this.metaSet.run('tables', serialize(TABLE_SETS[into]));
        this.metaSet.run('head', serialize({ engine: capture.head, offsets: offsetsNow, at }));
        commit();
        switched = true;
        this.current = into;
        // A fold the switch started is waited for before the old set is cleared.
        if (!oldCleared && (performance.now() >= until || this.folder.busy)) return false;
      }
      if (!oldCleared) {
        if (!open) {
          db.exec('BEGIN IMMEDIATE');
          open = true;
        }
        oldCleared = clearTables(this.sets[old], until);
        if (!oldCleared) return false;
        commit();
      }
      return true;
    };
    return {
      stats,
      /** Whether a transaction is open between two slices (an incremental checkpoint's). */
      get open() {
        return open;
      },
      /** One slice of the work, until `until` (performance.now()); true once done. */
      slice: (until: number): boolean => {
        if (!open) {
          db.exec('BEGIN IMMEDIATE');
          open = true;
        }
        // A full checkpoint commits each slice: its transactions stay a slice's size, and
        // the slice leaves room for the commit (at least half of it goes to the work).
        const done = run(
          full ? until - Math.min(this.commitMs, (until - performance.now()) / 2) : until,
        );
        if (open && (done || full)) commit();
        if (done) this.writing = false;
        return done;
      },
      paused: (ms: number) => {
        stats.slices++;
        stats.totalMs += ms;
        if (ms > stats.maxPauseMs) stats.maxPauseMs = ms;
      },
      fail: () => {
        capture.close();
        if (open) {
          open = false;
          try {
            db.exec('ROLLBACK');
          } catch {
            // SQLite rolled it back itself (a failed commit).
          }
        }
        this.writing = false;
      },
    };
  }

  /** After a commit: folds the log by the worker once it has grown, here past its bound. */
  private committed(): void {
    const log = this.logBytes();
    if (log > this.foldBytes * FOLD_HERE_FACTOR) {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      this.foldedAt = 0;
    } else if (log > this.foldBytes && log > this.foldedAt && !this.folder.busy) {
      void this.folder.fold()?.then((ok) => {
        if (ok) this.foldedAt = this.logBytes();
      });
    }
  }

  /** Whether a capture is being written now. */
  get busy(): boolean {
    return this.writing;
  }

  /** Bytes of the store's files on disk (the database and its write-ahead log). */
  diskBytes(): number {
    const pageCount = this.db.pragma('page_count') as Array<{ page_count: number }>;
    const pageSize = this.db.pragma('page_size') as Array<{ page_size: number }>;
    return Number(pageCount[0]!.page_count) * Number(pageSize[0]!.page_size);
  }

  /** The write-ahead log's size on disk. */
  private logBytes(): number {
    try {
      return statSync(`${this.path}-wal`).size;
    } catch {
      return 0;
    }
  }

  /** Resolves once no fold of the log is running (tests, benchmarks); starts none. */
  async folded(): Promise<void> {
    await this.folder.running();
  }

  close(): void {
    if (!this.db.open) return;
    this.folder.close();
    if (!this.writing) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}
