/**
 * The rules' checkpoint store (docs/architecture.md#checkpoints): the engine's state as
 * entries in SQLite, one row per rule and key, written incrementally from the engine's
 * captures (rules/changes.ts), with the bus offsets the state reflects in the same
 * transaction. A crash, or a failed write, leaves the previous checkpoint.
 *
 * A capture is written in slices: each takes entries from the capture and upserts them,
 * for at most `sliceMs`, then yields the event loop until the next; the transaction
 * stays open across slices (this connection is the file's only writer) and commits
 * with the head and the offsets in the last one.
 *
 * Encoding (format 2): each entry is JSON text (the parts RuleRunner.entry gives, a key's
 * values left out where its id spells them), and its id is the id as a JSON string:
 * JSON escapes NULs and lone surrogates, so any string a sender picks comes back
 * unchanged, and a run of rows read back is one JSON text (`id,entry,id,entry...`) that
 * SQLite joins (group_concat) and one JSON.parse decodes, a batch at a time: no row
 * objects, no decoder per entry. The head, the offsets and the timers (few) are V8
 * values (`node:v8` serialize); timer keys BLOBs of their UTF-16 code units.
 *
 * Format 1 (earlier versions) stored entries as V8 values under BLOB ids; such a store is
 * read row by row, and its next checkpoint must be a full one (RuleCheckpoints.restore
 * asks the engine for it), which rewrites every row in format 2.
 */
import { existsSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  type Capture,
  type EngineHead,
  type EntryRow,
  type TimerRow,
  timerRow,
} from '../rules/changes.ts';
import type { RunnerEntry } from '../rules/runner.ts';
import { openSqlite, type SqliteDatabase, type SqliteStatement } from '../ingest/storage/sqlite.ts';

/** The store's layout, written with each checkpoint; a file of a format not here is not read. */
const FORMAT = 2;
const LEGACY_FORMAT = 1;

/**
 * Entries read back per query (restore): one joined string of at most this many rows,
 * each bounded by what one key holds (its rule's caps), so memory per batch is bounded.
 */
const READ_BATCH = 2048;

/** Pages of write-ahead log (4 KiB each) past which a commit folds it into the database. */
const WAL_LIMIT = 65_536;

export interface StoredCheckpoint {
  /** The store's format: 1 (earlier versions) needs a full checkpoint next. */
  format: number;
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
  /** Bytes of entries and timers written (encoded values and ids, as UTF-8). */
  bytes: number;
  /** The longest time one slice held the event loop, and all slices together (ms). */
  maxPauseMs: number;
  totalMs: number;
  slices: number;
}

export interface WriteOptions {
  /** How long one slice may hold the event loop (ms). Default 2. */
  sliceMs?: number;
  /** Entries taken from the capture between two checks of the slice's time. Default 64. */
  step?: number;
}

/** An entry as stored (format 2): JSON text. */
export function encodeEntry(entry: RunnerEntry): string {
  return JSON.stringify(entry);
}

/** An entry id as stored (format 2): the id as a JSON string (NULs, lone surrogates escaped). */
function idText(id: string): string {
  return JSON.stringify(id);
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

/** Read each time it is iterated (restore reads a large state once, a batch at a time). */
function iterable<T>(rows: () => Generator<T>): Iterable<T> {
  return { [Symbol.iterator]: rows };
}

type Entry = [rule: string, id: string, entry: RunnerEntry];

/**
 * Format 2: each rule's entries in id order, READ_BATCH rows per query joined by SQLite
 * into one JSON text (`id,entry,...`), decoded by one JSON.parse. The rules are the
 * head's: entries of any other rule would not be restored.
 */
function* entries(db: SqliteDatabase, head: EngineHead): Generator<Entry> {
  const batch = db.prepare(
    `SELECT max(id) AS last, group_concat(id || ',' || value, ',') AS body FROM (
       SELECT id, value FROM entries WHERE rule = ? AND id > ? ORDER BY id LIMIT ${READ_BATCH})`,
  );
  for (const rule of Object.keys(head.rules)) {
    let after = '';
    for (;;) {
      const row = batch.get(rule, after) as { last: string | null; body: string | null };
      if (row.last === null || row.body === null) break;
      const items = JSON.parse(`[${row.body}]`) as unknown[];
      for (let i = 0; i + 1 < items.length; i += 2)
        yield [rule, items[i] as string, items[i + 1] as RunnerEntry];
      after = row.last;
    }
  }
}

/** Format 1: V8 values under BLOB ids, row by row. */
function* legacyEntries(db: SqliteDatabase): Generator<Entry> {
  const rows = db.prepare('SELECT rule, id, value FROM entries').iterate() as Iterable<{
    rule: string;
    id: Uint8Array;
    value: Uint8Array;
  }>;
  for (const r of rows) yield [r.rule, idString(r.id), deserialize(r.value) as RunnerEntry];
}

export class CheckpointStore {
  private readonly db: SqliteDatabase;
  private readonly upsert: SqliteStatement;
  private readonly remove: SqliteStatement;
  private readonly timerInsert: SqliteStatement;
  private readonly timerDelete: SqliteStatement;
  private readonly metaSet: SqliteStatement;
  private writing = false;
  private writerThread: Promise<CheckpointWriter> | undefined;
  /** Shared with the writer thread: WRITER_OPEN, WRITER_COMMITTING or WRITER_CLOSED. */
  private readonly closing = new Int32Array(new SharedArrayBuffer(4));
  /** The format of what the file holds (undefined: no checkpoint yet). */
  private format: number | undefined;
  /** Pages written to the write-ahead log since it was last folded in (an estimate). */
  private logPages = 0;

  constructor(readonly path: string) {
    this.db = openSqlite(path);
    this.db.pragma('journal_mode = WAL');
    // No fsync, as the JSON snapshot before it: a process that dies leaves the last
    // commit whole; a power loss may lose the file (the bus is then replayed from the start).
    this.db.pragma('synchronous = OFF');
    // The write-ahead log is folded into the database at open and close, and when it has
    // grown past WAL_LIMIT, not at each commit: that copy would hold the loop.
    this.db.pragma('wal_autocheckpoint = 0');
    // A small page cache spills changed pages to the log as slices run, so the commit
    // writes few.
    this.db.pragma('cache_size = -256');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS entries (
        rule TEXT NOT NULL, id BLOB NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (rule, id)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS timers (
        seq INTEGER PRIMARY KEY, at REAL NOT NULL, rule TEXT NOT NULL, key BLOB NOT NULL,
        tag INTEGER NOT NULL);
    `);
    this.upsert = this.db.prepare(
      'INSERT INTO entries (rule, id, value) VALUES (?, ?, ?) ON CONFLICT (rule, id) DO UPDATE SET value = excluded.value',
    );
    this.remove = this.db.prepare('DELETE FROM entries WHERE rule = ? AND id = ?');
    this.timerInsert = this.db.prepare(
      'INSERT OR REPLACE INTO timers (seq, at, rule, key, tag) VALUES (?, ?, ?, ?, ?)',
    );
    this.timerDelete = this.db.prepare('DELETE FROM timers WHERE seq = ?');
    this.metaSet = this.db.prepare(
      'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    );
    const format = this.db.prepare("SELECT value FROM meta WHERE name = 'format'").get() as
      { value: Uint8Array } | undefined;
    if (format !== undefined) this.format = deserialize(format.value) as number;
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
    const version = deserialize(format) as number;
    if (version !== FORMAT && version !== LEGACY_FORMAT)
      throw new Error(`${this.path}: checkpoint format ${String(version)} is not ${FORMAT}`);
    const { engine, offsets, at } = deserialize(head) as {
      engine: EngineHead;
      offsets: Record<string, number>;
      at: number;
    };
    const db = this.db;
    return {
      format: version,
      head: engine,
      offsets,
      at,
      entries: iterable(
        version === LEGACY_FORMAT ? () => legacyEntries(db) : () => entries(db, engine),
      ),
      timers: iterable(function* () {
        const rows = db
          .prepare('SELECT seq, at, rule, key, tag FROM timers')
          .iterate() as Iterable<{
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
   * Writes a capture with the offsets its state reflects (see the file's comment): the
   * loop only takes and encodes entries, in slices of at most `sliceMs`; the writer
   * thread upserts them and commits. Rejects, leaving the previous checkpoint, when a
   * write fails; the caller then abandons the capture (Engine.abandonCapture).
   */
  async write(
    capture: Capture,
    offsets: Record<string, number>,
    options: WriteOptions = {},
  ): Promise<WriteStats> {
    if (this.writing) throw new Error('a checkpoint is being written already');
    if (this.format === LEGACY_FORMAT && !capture.full) {
      capture.close();
      throw new Error(
        `${this.path}: a store of format ${LEGACY_FORMAT} takes a full checkpoint first`,
      );
    }
    this.writing = true;
    const sliceMs = options.sliceMs ?? 2;
    const step = options.step ?? 64;
    const stats: WriteStats = {
      full: capture.full,
      entries: 0,
      timers: 0,
      bytes: 0,
      maxPauseMs: 0,
      totalMs: 0,
      slices: 0,
    };
    const paused = (ms: number) => {
      stats.slices++;
      stats.totalMs += ms;
      if (ms > stats.maxPauseMs) stats.maxPauseMs = ms;
    };
    try {
      const writer = await this.writer();
      writer.ref();
      try {
        const at = Date.now();
        const offsetsNow = { ...offsets };
        // Batches handed to the writer and not yet written: at most MAX_IN_FLIGHT, each
        // the entries of one slice, so what waits between the threads is bounded.
        const inFlight: Array<Promise<unknown>> = [];
        // Each request's rejection is also the write's (awaited below or with the rest):
        // marked handled here, so one failure does not leave others unhandled.
        const call = (request: WriterRequest) => {
          const p = writer.call(request);
          p.catch(() => {});
          return p;
        };
        inFlight.push(call({ op: 'begin', full: capture.full }));
        let taken = false;
        while (!taken) {
          const began = performance.now();
          const until = began + sliceMs;
          const rows: EntryRow[] = [];
          do {
            taken = capture.step(step);
            for (const row of capture.drain()) rows.push(row);
          } while (!taken && performance.now() < until);
          const batch: WriterRow[] = rows.map(([rule, id, value]) => [rule, idText(id), value]);
          stats.entries += batch.length;
          inFlight.push(call({ op: 'rows', rows: batch }));
          paused(performance.now() - began);
          if (inFlight.length >= MAX_IN_FLIGHT) await inFlight.shift();
          else await new Promise((resolve) => setImmediate(resolve));
        }
        const began = performance.now();
        const timers = capture.timersAdded.map(timerRow);
        const removed = capture.timersRemoved.slice();
        const head = serialize({ engine: capture.head, offsets: offsetsNow, at });
        paused(performance.now() - began);
        stats.timers = timers.length;
        const committed = call({ op: 'commit', timers, removed, head });
        const written = (await Promise.all([...inFlight, committed])) as number[];
        for (const n of written) stats.bytes += n ?? 0;
        this.format = FORMAT;
        return stats;
      } finally {
        writer.unref();
      }
    } catch (err) {
      capture.close();
      throw err;
    } finally {
      this.writing = false;
    }
  }

  /** The writer thread, started at the first write. */
  private writer(): Promise<CheckpointWriter> {
    this.writerThread ??= CheckpointWriter.open(this.path, this.closing);
    return this.writerThread;
  }

  /** write, all at once (at shutdown, and where a caller needs the checkpoint now). */
  writeNow(capture: Capture, offsets: Record<string, number>): WriteStats {
    const work = this.begin(capture, offsets, 1024);
    const began = performance.now();
    try {
      work.slice(Number.POSITIVE_INFINITY);
    } catch (err) {
      work.fail();
      throw err;
    }
    work.paused(performance.now() - began);
    return work.stats;
  }

  private begin(capture: Capture, offsets: Record<string, number>, step: number) {
    if (this.writing) throw new Error('a checkpoint is being written already');
    if (this.format === LEGACY_FORMAT && !capture.full)
      throw new Error(
        `${this.path}: a store of format ${LEGACY_FORMAT} takes a full checkpoint first`,
      );
    this.writing = true;
    const stats: WriteStats = {
      full: capture.full,
      entries: 0,
      timers: 0,
      bytes: 0,
      maxPauseMs: 0,
      totalMs: 0,
      slices: 0,
    };
    const at = Date.now();
    const offsetsNow = { ...offsets };
    let started = false;
    let taken = false;
    let added = 0;
    let removed = 0;
    const writeRows = (rows: EntryRow[]) => {
      for (const [rule, id, value] of rows) {
        const key = idText(id);
        if (value === null) this.remove.run(rule, key);
        else {
          this.upsert.run(rule, key, value);
          stats.bytes += Buffer.byteLength(value);
        }
        stats.bytes += Buffer.byteLength(key);
        stats.entries++;
      }
    };
    return {
      stats,
      /** One slice of the work, until `until` (performance.now()); true once committed. */
      slice: (until: number): boolean => {
        if (!started) {
          this.db.exec('BEGIN IMMEDIATE');
          started = true;
          if (capture.full) this.db.exec('DELETE FROM entries; DELETE FROM timers;');
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
            const [seq, t, rule, key, tag] = timerRow(rows[added]!);
            const blob = idBlob(key);
            this.timerInsert.run(seq, t, rule, blob, tag);
            stats.bytes += 24 + blob.byteLength;
            stats.timers++;
          }
          if (added < rows.length && performance.now() >= until) return false;
        }
        const gone = capture.timersRemoved;
        while (removed < gone.length) {
          const end = Math.min(gone.length, removed + step * 4);
          for (; removed < end; removed++) this.timerDelete.run(gone[removed]!);
          if (removed < gone.length && performance.now() >= until) return false;
        }
        this.metaSet.run('format', serialize(FORMAT));
        this.metaSet.run('head', serialize({ engine: capture.head, offsets: offsetsNow, at }));
        this.db.exec('COMMIT');
        this.format = FORMAT;
        this.writing = false;
        this.logPages += Math.ceil(stats.bytes / 4096);
        if (this.logPages > WAL_LIMIT) {
          this.db.pragma('wal_checkpoint(TRUNCATE)');
          this.logPages = 0;
        }
        return true;
      },
      paused: (ms: number) => {
        stats.slices++;
        stats.totalMs += ms;
        if (ms > stats.maxPauseMs) stats.maxPauseMs = ms;
      },
      fail: () => {
        capture.close();
        if (started) {
          try {
            this.db.exec('ROLLBACK');
          } catch {
            // SQLite rolled it back itself (a failed commit).
          }
        }
        this.writing = false;
      },
    };
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

  /**
   * Closes the store. A checkpoint being written in the writer thread is not committed
   * after this returns (its transaction is rolled back, as if the process had died);
   * one committing now is waited for.
   */
  close(): void {
    if (!this.db.open) return;
    for (;;) {
      const was = Atomics.compareExchange(this.closing, 0, WRITER_OPEN, WRITER_CLOSED);
      if (was !== WRITER_COMMITTING) break;
      Atomics.wait(this.closing, 0, WRITER_COMMITTING, 1_000);
    }
    void this.writerThread?.then(
      (w) => w.terminate(),
      () => {},
    );
    if (!this.writing) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}

/** At most this many batches of entries wait for the writer thread. */
const MAX_IN_FLIGHT = 8;
const WRITER_OPEN = 0;
const WRITER_COMMITTING = 1;
const WRITER_CLOSED = 2;

type WriterRow = [rule: string, id: string, value: string | null];

type WriterRequest =
  | { op: 'begin'; full: boolean }
  | { op: 'rows'; rows: WriterRow[] }
  | { op: 'commit'; timers: TimerRow[]; removed: number[]; head: Uint8Array };

type WriterReply = { n: number; ok: true; bytes: number } | { n: number; ok: false; error: string };

/**
 * The writer thread's handle: requests answered in order, each with the bytes it wrote.
 * Requests pending are bounded by MAX_IN_FLIGHT (rows) plus a begin and a commit.
 */
class CheckpointWriter {
  private readonly pending = new Map<
    number,
    { resolve: (bytes: number) => void; reject: (e: Error) => void }
  >();
  private next = 0;
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker) {}

  static open(path: string, closing: Int32Array): Promise<CheckpointWriter> {
    const self = import.meta.url;
    const data = { checkpointWriter: path, closing };
    // From the sources (tests, benchmarks) the worker is TypeScript: tsx's loader,
    // registered in the worker, reads it (as ingest/sinks/embedded-worker.ts does).
    const worker = self.endsWith('.ts')
      ? new Worker(
          `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(self)}); })`,
          { eval: true, workerData: data },
        )
      : new Worker(new URL(self), { workerData: data });
    const handle = new CheckpointWriter(worker);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: WriterReply | { ready: true } | { failed: string }) => {
        if ('ready' in m) resolve(handle);
        else if ('failed' in m) reject(new Error(m.failed));
        else {
          const p = handle.pending.get(m.n);
          handle.pending.delete(m.n);
          if (m.ok) p?.resolve(m.bytes);
          else p?.reject(new Error(m.error));
        }
      });
      const fail = (err: Error) => {
        handle.failure ??= err;
        reject(err);
        for (const p of handle.pending.values()) p.reject(err);
        handle.pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`the checkpoint writer exited (code ${code})`)));
    });
  }

  call(request: WriterRequest): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const n = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(n, { resolve, reject });
      this.worker.postMessage({ ...request, n });
    });
  }

  ref(): void {
    this.worker.ref();
  }

  unref(): void {
    this.worker.unref();
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** The writer thread: one connection, one transaction per checkpoint. */
function runWriter(path: string, closing: Int32Array, port: NonNullable<typeof parentPort>) {
  const db = openSqlite(path);
  db.pragma('synchronous = OFF');
  db.pragma('wal_autocheckpoint = 0');
  const upsert = db.prepare(
    'INSERT INTO entries (rule, id, value) VALUES (?, ?, ?) ON CONFLICT (rule, id) DO UPDATE SET value = excluded.value',
  );
  const remove = db.prepare('DELETE FROM entries WHERE rule = ? AND id = ?');
  const timerInsert = db.prepare(
    'INSERT OR REPLACE INTO timers (seq, at, rule, key, tag) VALUES (?, ?, ?, ?, ?)',
  );
  const timerDelete = db.prepare('DELETE FROM timers WHERE seq = ?');
  const metaSet = db.prepare(
    'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
  );
  /** The transaction's first error: it is rolled back, and its later requests refused. */
  let failed: string | undefined;
  let open = false;
  let logPages = 0;
  let written = 0;
  const rollback = () => {
    if (!open) return;
    open = false;
    try {
      db.exec('ROLLBACK');
    } catch {
      // SQLite rolled it back itself.
    }
  };
  const handle = (m: WriterRequest): number => {
    if (m.op === 'begin') {
      rollback();
      failed = undefined;
      db.exec('BEGIN IMMEDIATE');
      open = true;
      written = 0;
      if (m.full) db.exec('DELETE FROM entries; DELETE FROM timers;');
      return 0;
    }
    if (failed !== undefined) throw new Error(failed);
    let bytes = 0;
    if (m.op === 'rows') {
      for (const [rule, id, value] of m.rows) {
        if (value === null) remove.run(rule, id);
        else {
          upsert.run(rule, id, value);
          bytes += Buffer.byteLength(value);
        }
        bytes += Buffer.byteLength(id);
      }
      written += bytes;
      return bytes;
    }
    for (const [seq, t, rule, key, tag] of m.timers) {
      const blob = idBlob(key);
      timerInsert.run(seq, t, rule, blob, tag);
      bytes += 24 + blob.byteLength;
    }
    for (const seq of m.removed) timerDelete.run(seq);
    metaSet.run('format', serialize(FORMAT));
    metaSet.run('head', m.head);
    // Not after the store is closed: a close while this is written is a crash.
    if (Atomics.compareExchange(closing, 0, WRITER_OPEN, WRITER_COMMITTING) !== WRITER_OPEN)
      throw new Error('the checkpoint store is closed');
    try {
      db.exec('COMMIT');
      open = false;
    } finally {
      Atomics.store(closing, 0, WRITER_OPEN);
      Atomics.notify(closing, 0);
    }
    logPages += Math.ceil((written + bytes) / 4096);
    if (logPages > WAL_LIMIT) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      logPages = 0;
    }
    return bytes;
  };
  port.on('message', (m: WriterRequest & { n: number }) => {
    try {
      port.postMessage({ n: m.n, ok: true, bytes: handle(m) } satisfies WriterReply);
    } catch (err) {
      failed ??= (err as Error).message;
      rollback();
      port.postMessage({ n: m.n, ok: false, error: (err as Error).message } satisfies WriterReply);
    }
  });
  port.postMessage({ ready: true });
}

const writerData = workerData as { checkpointWriter?: string; closing?: Int32Array } | null;
if (!isMainThread && parentPort && typeof writerData?.checkpointWriter === 'string') {
  try {
    runWriter(writerData.checkpointWriter, writerData.closing!, parentPort);
  } catch (err) {
    parentPort.postMessage({ failed: (err as Error).message });
  }
}
