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
 * Rows: a capture puts its entries into an EntryBatch (checkpoint-codec.ts: ids and
 * encoded values back to back in one buffer), which each slice writes by multi-row
 * statements and clears; timers likewise. No Buffer, array or statement per row.
 *
 * Encoding: each entry in checkpoint-codec.ts's form (plain data, typed numbers, ±Infinity
 * kept, strings as they are, linear in their size, no native object per entry); the head
 * and the offsets, once per checkpoint, as V8 values (`node:v8`); ids and keys are BLOBs of their UTF-16 code units, so any string a sender
 * picks (NULs, lone surrogates) comes back unchanged.
 */
import { existsSync, statSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { decodeValue, EntryBatch, PART_BYTES } from './checkpoint-codec.ts';
import { LogFolder } from './checkpoint-fold.ts';
import type { Capture, EngineHead, TimerRow } from '../rules/changes.ts';
import type { RuleRunner, RunnerEntry } from '../rules/runner.ts';
import type { Timer } from '../rules/timers.ts';
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
 * Format 4 stores a value longer than PART_BYTES in parts (`parts` tables, PARTS_TAG); a
 * reader of format 3 would read such a row's head as the value: it refuses format 4.
 */
const FORMAT = 4;
const FORMATS_READ = new Set([1, 2, 3, 4]);

/**
 * An entry's encoded value longer than this is written in parts of this size, each its
 * own statement with a check of the slice's clock after it, so one large entry (a
 * cardinality key's 10,000 values, a sample event of up to 1 MiB) is written over as
 * many slices as it needs: a slice passes its budget by at most one part's write (~0.2
 * ms at 64 KiB on this machine, bench/README.md "Snapshots"), where a whole entry of 10
 * MB was one statement of 7-17 ms. The entry's row then holds a head (PARTS_TAG, the
 * value's length and its parts' count, varints) and `parts` its bytes by part number, in
 * the same set of tables: written by the same transactions as the rest of the
 * checkpoint (one for an incremental one; a full one's become the checkpoint only at its
 * switch), so a crash never leaves half an entry in the checkpoint read back. Values up
 * to this size are stored as before, byte for byte.
 */
export { PART_BYTES };
/** Parts of a replaced or removed value deleted between two checks of the clock (1 MiB). */
const PART_DELETE = 16;
/** A head's first byte: checkpoint-codec.ts's values begin with 0xD1, `node:v8`'s with 0xFF. */
const PARTS_TAG = 0xd2;

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

/**
 * Rows one statement writes at most. Entries and timers are written by multi-row
 * statements of a power of two rows (up to this), their ids and keys (and an entry's
 * value) cut by SQLite out of one BLOB bound for the statement (`substr`, bytes of a
 * BLOB): a row costs no Buffer, array or result object on the JS side.
 */
const MAX_ROWS = 64;
/** The timers' key buffer is kept between checkpoints up to this size. */
const KEY_BYTES_KEEP = 1 << 20;

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
  /**
   * The most bytes (ids, values, parts, timers' keys) written between two checks of the
   * slice's clock: what a slice can write past its budget. A value longer than
   * PART_BYTES is written a part between two checks.
   */
  maxBytesUnchecked: number;
  /**
   * The longest entry's encoded value (bytes). An entry is encoded whole where it is
   * taken (one step of the capture, or an event's copy-on-write), not split across
   * slices: that step's time grows with it (see RuleRunner.writeEntry).
   */
  maxEntryBytes: number;
  /**
   * The most bytes one step of the capture encoded (entries taken, and a step of an entry
   * encoded in steps, RuleRunner.writeEntryParts): what a slice can encode past its
   * budget. An event's copy-on-write, between slices, is not a step.
   */
  maxStepBytes: number;
  /**
   * The most pending timers a full checkpoint copied at once (rules/timers.ts HeapCopy):
   * a chunk of at most COPY_CHUNK, in a slice or in an event's copy-on-write; none at
   * the capture's instant. 0 for an incremental one (its timers are those pushed since).
   */
  maxTimersCopied: number;
  /**
   * SQLite statements (and `exec`s, pragmas) this thread, the event loop's, ran on the
   * store's connection from the write's start to its end: what of the write's SQLite work
   * held the loop.
   */
  loopStatements: number;
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
  /**
   * Called after each slice with its start (performance.now()), its length and the part
   * of it its COMMIT took (ms; 0 without one): the benchmark's trace of where the loop went.
   */
  onSlice?: (began: number, ms: number, commitMs: number) => void;
  /** Called just before each slice's clock starts (the benchmark reads its thread's counters). */
  beforeSlice?: () => void;
}

export { EntryBatch };

/**
 * `db`, each statement run, `exec` and pragma on it counted by `count` (the store's
 * accounting of what its own thread ran: WriteStats.loopStatements).
 */
function counted(db: SqliteDatabase, count: () => void): SqliteDatabase {
  const statement = (st: SqliteStatement): SqliteStatement => ({
    run: (...params) => (count(), st.run(...params)),
    get: (...params) => (count(), st.get(...params)),
    all: (...params) => (count(), st.all(...params)),
    iterate: (...params) => (count(), st.iterate(...params)),
    pluck: () => statement(st.pluck()),
  });
  return {
    get driver() {
      return db.driver;
    },
    get open() {
      return db.open;
    },
    prepare: (sql) => statement(db.prepare(sql)),
    exec: (sql) => (count(), db.exec(sql)),
    pragma: (text) => (count(), db.pragma(text)),
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  };
}

function idString(blob: Uint8Array): string {
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
function readPartsHead(head: Uint8Array): { size: number; parts: number } {
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
type Parted = Map<string, Map<string, number>>;

/** One set of tables (TABLE_SETS) and its statements. */
interface Tables {
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

function tables(db: SqliteDatabase, name: string): Tables {
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

/** Clears a set of tables, CLEAR_CHUNK rows at a time, until `until`; true once empty. */
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
  /** Timers' keys, back to back, for the statement writing them (kept between checkpoints). */
  private keyBytes = Buffer.allocUnsafe(4096);
  /** The timers one statement batch writes, taken from the capture (at most 4·step, emptied after). */
  private readonly timerRows: Array<Timer<RuleRunner>> = [];
  private writing = false;
  /** Statements this thread ran on the connection (counted(): WriteStats.loopStatements). */
  private statements = 0;
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
  /**
   * Bytes of the write-ahead log the fold worker read back after folding it whole, so
   * that the writer, starting the log over, finds its pages in the page cache
   * (checkpoint-fold.ts).
   */
  get logReadBack(): number {
    return this.folder.readBack;
  }
  /**
   * The entries each set of tables holds in parts (PART_BYTES): rule → id → parts, as
   * its `parts` table holds them, read at open and kept with each write (read again
   * after a failed one). Bounded by the bytes stored: each is a value of more than
   * PART_BYTES that the rules' state holds (their key and term caps bound it).
   */
  private readonly parted: [Parted, Parted] = [new Map() as Parted, new Map() as Parted];

  constructor(
    readonly path: string,
    options: { foldBytes?: number } = {},
  ) {
    this.foldBytes = options.foldBytes ?? FOLD_BYTES;
    this.folder = new LogFolder(path, () => this.foldFailures++);
    this.db = counted(openSqlite(path), () => this.statements++);
    enableWal(this.db);
    // No fsync, as the JSON snapshot before it: a process that dies leaves the last
    // commit whole; a power loss may lose the file (the bus is then replayed from the start).
    // A COMMIT so syncs nothing: it writes the transaction's last pages and its commit frame
    // into the log (0.08-0.10 ms median, at most 1.6-4.6 ms at 1.1 M keys when the kernel
    // made the write wait; bench/README.md "Snapshots"). `synchronous = NORMAL` would not
    // shorten it (with a log it syncs only when the log is folded), and it cannot leave the
    // slice to the fold worker: a transaction is its connection's, so only a writer thread
    // of its own, holding every write of the checkpoint, would take it off the loop.
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
    // A statement that writes several rows keeps the original of each page it changes in
    // a statement journal, to undo itself alone if it fails; SQLite's default spills it
    // past 64 KiB to a temporary file (a 16-row upsert at random keys touches 16 leaf
    // pages): at 300 k keys with 1% changed, ~2x the file writes of single-row upserts and
    // a slower checkpoint. Here it stays in memory: at most the pages one statement of
    // MAX_ROWS rows changes, freed when it ends.
    this.db.pragma('temp_store = MEMORY');
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
    this.readParted();
  }

  /** The parted entries of both sets, from their `parts` tables. */
  private readParted(): void {
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
    const path = this.path;
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
        // Parted values are read once the rows' iteration ends (the connection runs one
        // statement at a time); at most one per PART_BYTES of the store.
        const parted: Array<{ rule: string; id: Uint8Array; head: Uint8Array }> = [];
        for (const r of rows) {
          if (r.value[0] === PARTS_TAG) {
            parted.push({ rule: r.rule, id: r.id, head: r.value });
            continue;
          }
          yield [r.rule, idString(r.id), decodeValue(r.value) as RunnerEntry] as [
            string,
            string,
            RunnerEntry,
          ];
        }
        for (const { rule, id, head } of parted) {
          const { size, parts } = readPartsHead(head);
          const chunks = t.partsOf.all(rule, id, parts) as Array<{ bytes: Uint8Array }>;
          const value = Buffer.concat(chunks.map((c) => c.bytes));
          if (chunks.length !== parts || value.length !== size)
            throw new Error(`${path}: checkpoint entry of rule ${rule}: parts missing`);
          yield [rule, idString(id), decodeValue(value) as RunnerEntry] as [
            string,
            string,
            RunnerEntry,
          ];
        }
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
    capture: Capture<EntryBatch>,
    offsets: Record<string, number>,
    options: WriteOptions = {},
  ): Promise<WriteStats> {
    const sliceMs = options.sliceMs ?? 2;
    const work = this.begin(capture, offsets, options.step ?? 16);
    for (;;) {
      options.beforeSlice?.();
      const began = performance.now();
      let done: boolean;
      try {
        done = work.slice(began + sliceMs);
      } catch (err) {
        work.fail();
        throw err;
      }
      const ms = performance.now() - began;
      work.paused(ms);
      options.onSlice?.(began, ms, work.commitMs);
      if (done) return work.stats;
      // Between two transactions (a full checkpoint's), a fold running is waited for:
      // the next transaction then starts the log over, which stays near foldBytes.
      if (!work.open) await this.folder.running();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** write, all at once (at shutdown, and where a caller needs the checkpoint now). */
  writeNow(capture: Capture<EntryBatch>, offsets: Record<string, number>): WriteStats {
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

  private begin(capture: Capture<EntryBatch>, offsets: Record<string, number>, step: number) {
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
      maxBytesUnchecked: 0,
      maxEntryBytes: 0,
      maxStepBytes: 0,
      maxTimersCopied: 0,
      loopStatements: 0,
    };
    const statementsBefore = this.statements;
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
    let removed = 0;
    let switched = false;
    let oldCleared = !full;
    const db = this.db;
    let sliceCommitMs = 0;
    const commit = () => {
      const began = performance.now();
      db.exec('COMMIT');
      const took = performance.now() - began;
      sliceCommitMs += took;
      this.commitMs = 0.8 * this.commitMs + 0.2 * took;
      open = false;
      stats.commits++;
      this.committed();
    };
    /** Bytes written since the clock was last checked (stats.maxBytesUnchecked). */
    let unchecked = 0;
    /** Whether `until` has passed: a check of the clock. */
    const late = (until: number): boolean => {
      if (unchecked > stats.maxBytesUnchecked) stats.maxBytesUnchecked = unchecked;
      unchecked = 0;
      return performance.now() >= until;
    };
    const parted = this.parted[into];
    /** The batch's next row to write, and its next part (or old part to delete) once begun. */
    let row = 0;
    let part = -1;
    let staleFrom = -1;
    /**
     * Row `row` of the batch, whose value is parted now (longer than PART_BYTES) or was
     * (`old` parts stored): old parts past the new ones deleted, the row written, then
     * each part, the clock checked between two steps; true once done, false when `until`
     * passed first (the next call goes on where this one stopped).
     */
    const writeLarge = (old: number | undefined, until: number): boolean => {
      const batch = capture.sink;
      const { bytes, spans } = batch;
      const rule = batch.rules[row]!;
      const r = 3 * row;
      const id = bytes.subarray(spans[r], spans[r + 1]);
      // A value encoded in steps is in pieces of PART_BYTES (the last shorter): its parts.
      const pieces = batch.parted[row];
      const value = pieces?.parts[0] ?? bytes.subarray(spans[r + 1], spans[r + 2]);
      const size = pieces?.size ?? value.length;
      const parts = size > PART_BYTES ? Math.ceil(size / PART_BYTES) : 0;
      if (part < 0) {
        if (old !== undefined && old > parts) {
          if (staleFrom < 0) staleFrom = parts;
          while (staleFrom < old) {
            const to = Math.min(old, staleFrom + PART_DELETE);
            t.partsDelete.run(rule, id, staleFrom, to);
            staleFrom = to;
            if (staleFrom < old && late(until)) return false;
          }
        }
        if (size === 0) t.remove.run(rule, id);
        else t.upsertOne.run(rule, id, parts > 0 ? partsHead(size, parts) : value);
        unchecked += id.length + (parts > 0 ? 0 : size);
        part = 0;
        if (parts > 0 && late(until)) return false;
      }
      for (; part < parts;) {
        const from = part * PART_BYTES;
        const chunk =
          pieces?.parts[part] ?? value.subarray(from, Math.min(value.length, from + PART_BYTES));
        t.partPut.run(rule, id, part, chunk);
        unchecked += chunk.length;
        part++;
        if (part < parts && late(until)) return false;
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
      part = -1;
      staleFrom = -1;
      return true;
    };
    /**
     * The entries the capture put in its batch since the last call, then clears it; false
     * when `until` passed while a parted value was being written (the next call goes on).
     */
    const writeRows = (until: number): boolean => {
      const batch = capture.sink;
      const { bytes, spans, rules } = batch;
      const rows = batch.rows;
      while (row < rows) {
        const i = row;
        const pieces = batch.parted[i];
        const size = pieces?.size ?? spans[3 * i + 2]! - spans[3 * i + 1]!;
        if (size > stats.maxEntryBytes) stats.maxEntryBytes = size;
        // A rule holding parted values: its rows are looked up (their id made a string).
        const ids = parted.size === 0 ? undefined : parted.get(rules[i]!);
        const old =
          ids === undefined
            ? undefined
            : ids.get(bytes.toString('utf16le', spans[3 * i], spans[3 * i + 1]));
        if (size > PART_BYTES || old !== undefined || pieces !== undefined) {
          if (pieces !== undefined && part < 0 && staleFrom < 0) stats.bytes += pieces.size;
          if (!writeLarge(old, until)) return false;
          row++;
          if (late(until)) return false;
          continue;
        }
        if (size === 0) {
          // No value: the rule holds nothing under the id any more.
          t.remove.run(rules[i], bytes.subarray(spans[3 * i], spans[3 * i + 1]));
          unchecked += spans[3 * i + 1]! - spans[3 * i]!;
          row++;
          continue;
        }
        let n = 1;
        while (
          n < MAX_ROWS &&
          i + n < rows &&
          spans[3 * (i + n) + 2]! > spans[3 * (i + n) + 1]! &&
          spans[3 * (i + n) + 2]! - spans[3 * (i + n) + 1]! <= PART_BYTES &&
          (parted.size === 0 || !parted.has(rules[i + n]!))
        )
          n++;
        n = rowsOf(n);
        const { statement, args } = t.upserts(n);
        const from = spans[3 * i]!;
        const to = spans[3 * (i + n - 1) + 2]!;
        args[0] = bytes.subarray(from, to);
        for (let j = 0, a = 1; j < n; j++, a += 5) {
          const r = 3 * (i + j);
          args[a] = rules[i + j];
          args[a + 1] = spans[r]! - from + 1;
          args[a + 2] = spans[r + 1]! - spans[r]!;
          args[a + 3] = spans[r + 1]! - from + 1;
          args[a + 4] = spans[r + 2]! - spans[r + 1]!;
        }
        statement.run(...args);
        unchecked += to - from;
        row += n;
      }
      stats.entries += rows;
      stats.bytes += batch.end;
      batch.clear();
      row = 0;
      return true;
    };
    /** Timers rows[from, to), by multi-row statements. */
    const writeTimers = (rows: ReadonlyArray<Timer<RuleRunner>>, from: number, to: number) => {
      while (from < to) {
        const n = rowsOf(to - from);
        let size = 1;
        for (let j = from; j < from + n; j++) size += 2 * rows[j]!.key.length;
        if (this.keyBytes.length < size) this.keyBytes = Buffer.allocUnsafe(2 * size);
        const keys = this.keyBytes;
        const { statement, args } = t.timerInserts(n);
        let end = 0;
        for (let j = 0, a = 1; j < n; j++, a += 6) {
          const timer = rows[from + j]!;
          const start = end;
          end += keys.write(timer.key, end, 'utf16le');
          args[a] = timer.seq;
          args[a + 1] = timer.at;
          args[a + 2] = timer.target.spec.name;
          args[a + 3] = start + 1;
          args[a + 4] = end - start;
          args[a + 5] = timer.tag;
        }
        // Never an empty BLOB: SQLite reads one as NULL, and substr of NULL is NULL (every
        // key of the statement empty); a byte more, past the keys, is cut by no row.
        args[0] = keys.subarray(0, end + 1);
        statement.run(...args);
        unchecked += 24 * n + end;
        stats.bytes += 24 * n + end;
        stats.timers += n;
        from += n;
      }
      // A key grown past SCRATCH_KEEP is not kept between checkpoints.
      if (this.keyBytes.length > KEY_BYTES_KEEP) this.keyBytes = Buffer.allocUnsafe(4096);
    };
    /** The work up to `until`; true once the checkpoint is committed and the old set cleared. */
    const run = (until: number): boolean => {
      // Rows a full checkpoint that failed or crashed left in the set it goes into.
      if (!cleared) {
        cleared = clearTables(t, until);
        if (!cleared) return false;
        parted.clear();
      }
      while (!taken) {
        // A parted value left by the last slice first.
        if (!writeRows(until)) return false;
        const encoded = capture.sink.encoded;
        taken = capture.step(step);
        const stepBytes = capture.sink.encoded - encoded;
        if (stepBytes > stats.maxStepBytes) stats.maxStepBytes = stepBytes;
        if (!writeRows(until)) return false;
        if (!taken && late(until)) return false;
      }
      // Entries copied on write since the last slice.
      if (!writeRows(until)) return false;
      const rows = this.timerRows;
      while (capture.timersLeft > 0) {
        const n = capture.takeTimers(rows, step * 4);
        writeTimers(rows, 0, n);
        rows.fill(undefined as unknown as Timer<RuleRunner>, 0, n);
        if (capture.timersLeft > 0 && late(until)) return false;
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
        this.parted[old].clear();
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
      /** The time the last slice's COMMITs took (ms). */
      get commitMs() {
        return sliceCommitMs;
      },
      /** One slice of the work, until `until` (performance.now()); true once done. */
      slice: (until: number): boolean => {
        sliceCommitMs = 0;
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
        if (done) {
          this.writing = false;
          stats.loopStatements = this.statements - statementsBefore;
          stats.maxTimersCopied = capture.maxTimersCopied;
          capture.close();
        }
        return done;
      },
      paused: (ms: number) => {
        late(0); // what the slice wrote since its last check
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
        // What was rolled back: the parted entries as the tables hold them. Unreadable (the
        // file failing), none are known: a later write may then leave an old value's parts
        // behind, past its new head's count or under a row no longer parted, which reads
        // ignore and the next full checkpoint's clearing of its set removes.
        try {
          this.readParted();
        } catch {
          for (const parted of this.parted) parted.clear();
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
