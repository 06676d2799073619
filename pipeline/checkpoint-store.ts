/**
 * The rules' checkpoint store (docs/architecture.md#checkpoints): the engine's state as
 * entries in SQLite, one row per rule and key, written incrementally from the engine's
 * captures (rules/changes.ts), with the bus offsets the state reflects in the same
 * transaction. A crash, or a failed write, leaves the previous checkpoint.
 *
 * A capture is written in slices on the event loop, and by a writer thread
 * (checkpoint-writer.ts) with a connection of its own: each slice takes entries from the
 * capture, encoded into its EntryBatch (checkpoint-codec.ts: ids and encoded values back
 * to back in one buffer), for at most `sliceMs`, then hands the batch to the writer (its
 * bytes copied into a buffer transferred to the thread) and yields the loop. The loop runs
 * no SQLite statement while a checkpoint is written (WriteStats.loopStatements); it never
 * waits on SQLite either: the writer answers each batch once written, and at most
 * MAX_IN_FLIGHT batches are unanswered, else the next slice waits (asynchronously) for an
 * answer. An incremental capture (bounded by what changed) is one transaction of the
 * writer, committed with the head and the offsets after its last batch. A full one is a
 * transaction a batch into the set of tables not in use, and becomes the checkpoint only
 * when its last transaction names that set in `meta` with the head and the offsets: a
 * crash or a failure before leaves the previous checkpoint, and the rows written are
 * cleared by the next full one. After the switch the old set is cleared.
 *
 * `writeNow` (shutdown) writes on the loop's own connection, at once, with the same
 * statements (checkpoint-writer.ts TableWriter).
 *
 * Encoding: each entry in checkpoint-codec.ts's form (plain data, typed numbers, ±Infinity
 * kept, strings as they are, linear in their size, no native object per entry); the head
 * and the offsets, once per checkpoint, as V8 values (`node:v8`); ids and keys are BLOBs of
 * their UTF-16 code units, so any string a sender picks (NULs, lone surrogates) comes back
 * unchanged.
 */
import { existsSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { decodeValue, EntryBatch, PART_BYTES } from './checkpoint-codec.ts';
import { LogFolder } from './checkpoint-fold.ts';
import {
  FOLD_HERE_FACTOR,
  idString,
  logBytes,
  openStore,
  PARTS_TAG,
  readPartsHead,
  TABLE_SETS,
  TableWriter,
  TIMER_WIDTH,
  WriterThread,
  type Reply,
  type WriterState,
  type WriterStats,
} from './checkpoint-writer.ts';
import type { Capture, EngineHead, TimerRow } from '../rules/changes.ts';
import type { RuleRunner, RunnerEntry } from '../rules/runner.ts';
import type { Timer } from '../rules/timers.ts';
import { openSqlite, type SqliteDatabase, type SqliteStatement } from '../ingest/storage/sqlite.ts';

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
 * An entry's encoded value longer than PART_BYTES is written in parts of that size, each
 * its own statement (checkpoint-writer.ts): its row holds a head (PARTS_TAG, the value's
 * length and its parts' count, varints) and `parts` its bytes by part number, in the same
 * set of tables, written by the same transactions as the rest of the checkpoint, so a
 * crash never leaves half an entry in the checkpoint read back.
 */
export { PART_BYTES };

/**
 * Bytes of write-ahead log past which a commit has it folded into the database, by a
 * worker thread (checkpoint-fold.ts); past FOLD_HERE_FACTOR times that (folds failing or
 * slower than the writes), by the writer itself: the log's bound on disk.
 */
const FOLD_BYTES = 64 * 2 ** 20;

/**
 * Batches handed to the writer thread and not yet answered, at most. Each is one slice's
 * entries (or timers, or removed timers): what the loop encoded in sliceMs, plus entries
 * copied on write between two slices (each entry at most once a checkpoint), so the bytes
 * in flight are bounded by this many slices' worth; past it, the next slice waits for an
 * answer. The buffers that carry them come back with the answer and are reused (at most
 * this many plus one kept, each up to CARRIER_KEEP).
 */
const MAX_IN_FLIGHT = 4;
/** A batch is handed on within a slice once it holds this many bytes. */
const SEND_BYTES = 256 * 1024;
/** A carrier's buffer is kept for reuse up to this size. */
const CARRIER_KEEP = 1 << 20;
/** Timers handed on in one batch, at most; removed timers likewise. */
const TIMER_SEND = 1024;
const REMOVED_SEND = 4096;

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
  /** Transactions committed (a full checkpoint commits one per batch the writer is handed). */
  commits: number;
  /**
   * The most bytes (ids, values, parts, timers' keys) the writer wrote in one go: a batch's
   * rows, or one part of a value longer than PART_BYTES (a part a statement). On the
   * writer thread (write) none of it holds the loop; writeNow writes on the loop.
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
   * Entries taken from the capture between two checks of the slice's time. Default 16
   * (when the loop upserted them too, 64 overran a 2 ms slice by ~5 ms at 1.1 M keys with
   * 1% changed: an upsert into a large table cost up to ~80 us).
   */
  step?: number;
  /**
   * Called after each slice with its start (performance.now()), its length and the part
   * of it a COMMIT took (ms; always 0 now: the writer thread commits): the benchmark's
   * trace of where the loop went.
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

/** Timers taken from a capture, as the writer reads them (TimersIn), kept between checkpoints. */
class TimerBatch {
  nums = new Float64Array(TIMER_WIDTH * TIMER_SEND);
  /** The keys back to back, and a byte past them (never an empty BLOB: see TableWriter). */
  keys = Buffer.allocUnsafe(16 * 1024);
  n = 0;
  end = 0;

  add(t: Timer<RuleRunner>, rule: number): void {
    const need = this.end + 2 * t.key.length + 1;
    if (need > this.keys.length) {
      let size = 2 * this.keys.length;
      while (size < need) size *= 2;
      const keys = Buffer.allocUnsafe(size);
      this.keys.copy(keys, 0, 0, this.end);
      this.keys = keys;
    }
    const r = TIMER_WIDTH * this.n++;
    const nums = this.nums;
    nums[r] = t.seq;
    nums[r + 1] = t.at;
    nums[r + 2] = rule;
    nums[r + 3] = this.end;
    this.end += this.keys.write(t.key, this.end, 'utf16le');
    nums[r + 4] = this.end;
    nums[r + 5] = t.tag;
  }

  clear(): void {
    this.n = 0;
    this.end = 0;
    if (this.keys.length > CARRIER_KEEP) this.keys = Buffer.allocUnsafe(16 * 1024);
  }
}

/** Where a checkpoint's batches go: the writer thread (write) or the loop's own writer (writeNow). */
interface Out {
  /** Whether a batch may be handed on now (the writer's backlog under MAX_IN_FLIGHT). */
  free(): boolean;
  /** Hands the batch's rows on, and empties it. */
  rows(batch: EntryBatch): void;
  timers(batch: TimerBatch): void;
  removed(seqs: number[], from: number, to: number): void;
  finish(head: Uint8Array): void;
}

/** A rule's index among the names a checkpoint has handed on (each name sent once). */
class Names {
  readonly list: string[] = [];
  private readonly index = new Map<string, number>();
  /** Names added since the last `fresh()`. */
  private sent = 0;

  of(rule: string): number {
    let i = this.index.get(rule);
    if (i === undefined) {
      i = this.list.push(rule) - 1;
      this.index.set(rule, i);
    }
    return i;
  }

  fresh(): string[] {
    const added = this.list.slice(this.sent);
    this.sent = this.list.length;
    return added;
  }
}

/** Buffers a batch is copied into and transferred to the writer, handed back with its answer. */
interface Carrier {
  bytes: Uint8Array;
  spans: Float64Array;
  idx: Uint32Array;
}

function grown<T extends Uint8Array | Float64Array | Uint32Array>(
  a: T,
  n: number,
  make: (n: number) => T,
): T {
  if (a.length >= n) return a;
  let size = Math.max(1024, a.length);
  while (size < n) size *= 2;
  return make(size);
}

export class CheckpointStore {
  private readonly db: SqliteDatabase;
  /** The loop's own writer (writeNow), and its statements for read(). */
  private readonly writer: TableWriter;
  /**
   * The writer thread (write), started by the first write (or startWriter), not by the
   * open: a store opened to be read (a restore, a benchmark's) or written only at once
   * (writeNow) starts none, and a process's start-up does not pay for its load (0.1-1 s
   * of a core from the sources); see WriterThread.
   */
  private thread: WriterThread | undefined;
  /** The set of tables the last checkpoint committed is in. */
  private current: 0 | 1 = 0;
  /** The timers one batch takes from the capture (at most 4·step, emptied after). */
  private readonly timerRows: Array<Timer<RuleRunner>> = [];
  private readonly timerBatch = new TimerBatch();
  private writing = false;
  private closed = false;
  /** Statements this thread ran on the connection (counted(): WriteStats.loopStatements). */
  private statements = 0;
  /** The thread's writer, and the loop's, have not seen the other's last checkpoint. */
  private threadStale = false;
  private loopStale = false;
  /** Batches handed to the thread and not answered yet (at most MAX_IN_FLIGHT). */
  private inFlight = 0;
  /** Carriers back from the thread, for reuse (at most MAX_IN_FLIGHT + 1). */
  private readonly carriers: Carrier[] = [];
  private jobs = 0;
  /** The write being run: its answers. */
  private onAnswer: ((m: Extract<Reply, { op: 'answer' }>) => void) | undefined;
  private wake: (() => void) | undefined;
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

  constructor(
    readonly path: string,
    options: { foldBytes?: number } = {},
  ) {
    this.foldBytes = options.foldBytes ?? FOLD_BYTES;
    this.folder = new LogFolder(path, () => this.foldFailures++);
    this.db = counted(openStore(path), () => this.statements++);
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.writer = new TableWriter(
      this.db,
      (commit) => {
        commit();
        return true;
      },
      () => this.committed(logBytes(this.path), true),
    );
    this.current = this.writer.current;
  }

  /**
   * The writer thread, started now if it is not yet: its start (it loads, then opens its
   * connection) goes on beside the loop; a write waits for `ready`.
   */
  private writerThread(): WriterThread {
    if (this.thread !== undefined) return this.thread;
    const thread = new WriterThread(this.path, this.foldBytes);
    this.thread = thread;
    // A thread that ends (or fails) wakes a write waiting for its answers: it then fails.
    thread.worker.on('exit', () => this.wake?.());
    thread.worker.on('error', () => this.wake?.());
    thread.worker.on('message', (m: Reply) => {
      if (m.op !== 'answer') return;
      this.inFlight--;
      const c = m.carrier;
      if (
        c !== undefined &&
        c.bytes.length <= CARRIER_KEEP &&
        this.carriers.length <= MAX_IN_FLIGHT
      )
        this.carriers.push(c);
      if (m.log !== undefined) this.committed(m.log, false);
      this.onAnswer?.(m);
      const wake = this.wake;
      this.wake = undefined;
      wake?.();
    });
    return thread;
  }

  /**
   * Starts the writer thread ahead of the first write (which otherwise starts it);
   * resolves once it has opened its connection, rejects when it could not. The process
   * does not end while this waits. A benchmark starts it before what it measures.
   */
  async startWriter(): Promise<void> {
    if (this.closed || !this.db.open) throw new Error('checkpoint store closed');
    const thread = this.writerThread();
    thread.hold(true);
    try {
      await thread.ready;
    } finally {
      thread.hold(false);
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
    const tables = meta.get('tables');
    if (tables !== undefined) {
      const i = TABLE_SETS.indexOf(deserialize(tables) as (typeof TABLE_SETS)[number]);
      if (i < 0) throw new Error(`${this.path}: no such set of checkpoint tables`);
      this.current = i as 0 | 1;
    }
    const t = this.writer.sets[this.current];
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

  private newStats(full: boolean): WriteStats {
    return {
      full,
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
  }

  /**
   * The loop's side of a checkpoint: one call takes entries (then timers, then removed
   * timers) from the capture until `until` (performance.now()) or until `out` may take no
   * more, and hands them on; true once the head too is handed on.
   */
  private producer(
    capture: Capture<EntryBatch>,
    offsets: Record<string, number>,
    step: number,
    out: Out,
    names: Names,
    stats: WriteStats,
  ): (until: number) => boolean {
    const at = Date.now();
    const offsetsNow = { ...offsets };
    const sink = capture.sink;
    const timers = this.timerBatch;
    timers.clear();
    const rows = this.timerRows;
    let taken = false;
    let removed = 0;
    let finished = false;
    return (until) => {
      while (!taken) {
        if (sink.end >= SEND_BYTES) {
          if (!out.free()) return false;
          out.rows(sink);
        }
        const encoded = sink.encoded;
        taken = capture.step(step);
        const stepBytes = sink.encoded - encoded;
        if (stepBytes > stats.maxStepBytes) stats.maxStepBytes = stepBytes;
        if (!taken && performance.now() >= until) return false;
      }
      // Entries taken, and copied on write since the last slice.
      if (sink.rows > 0) {
        if (!out.free()) return false;
        out.rows(sink);
      }
      while (capture.timersLeft > 0) {
        if (timers.n + step * 4 > TIMER_SEND) {
          if (!out.free()) return false;
          out.timers(timers);
        }
        const n = capture.takeTimers(rows, step * 4);
        for (let i = 0; i < n; i++) timers.add(rows[i]!, names.of(rows[i]!.target.spec.name));
        rows.fill(undefined as unknown as Timer<RuleRunner>, 0, n);
        if (capture.timersLeft > 0 && performance.now() >= until) return false;
      }
      if (timers.n > 0) {
        if (!out.free()) return false;
        out.timers(timers);
      }
      const gone = capture.timersRemoved;
      while (removed < gone.length) {
        if (!out.free()) return false;
        const end = Math.min(gone.length, removed + REMOVED_SEND);
        out.removed(gone, removed, end);
        removed = end;
        if (removed < gone.length && performance.now() >= until) return false;
      }
      if (!finished) {
        if (!out.free()) return false;
        out.finish(serialize({ engine: capture.head, offsets: offsetsNow, at }));
        finished = true;
      }
      return true;
    };
  }

  /** Batches to the writer thread, for job `job` (see Out). */
  private toThread(thread: WriterThread, job: number, names: Names): Out {
    /** The next carrier: one back from the thread, or a new one. */
    const carrier = (): Carrier =>
      this.carriers.pop() ?? {
        bytes: new Uint8Array(64 * 1024),
        spans: new Float64Array(3 * 1024),
        idx: new Uint32Array(1024),
      };
    return {
      free: () => this.inFlight < MAX_IN_FLIGHT,
      rows: (batch) => {
        const n = batch.rows;
        const c = carrier();
        c.bytes = grown(c.bytes, batch.end, (size) => new Uint8Array(size));
        c.spans = grown(c.spans, 3 * n, (size) => new Float64Array(size));
        c.idx = grown(c.idx, n, (size) => new Uint32Array(size));
        c.bytes.set(batch.bytes.subarray(0, batch.end));
        c.spans.set(batch.spans.subarray(0, 3 * n));
        const parted: Array<[number, Uint8Array[], number]> = [];
        for (let i = 0; i < n; i++) {
          c.idx[i] = names.of(batch.rules[i]!);
          const p = batch.parted[i];
          if (p !== undefined) parted.push([i, p.parts, p.size]);
        }
        this.inFlight++;
        thread.post(
          {
            op: 'rows',
            job,
            bytes: c.bytes,
            spans: c.spans,
            idx: c.idx,
            rows: n,
            end: batch.end,
            names: names.fresh(),
            parted,
          },
          [c.bytes.buffer, c.spans.buffer, c.idx.buffer] as ArrayBuffer[],
        );
        batch.clear();
      },
      timers: (batch) => {
        this.inFlight++;
        // Copied by the message (bounded: TIMER_SEND rows and their keys).
        thread.post({
          op: 'timers',
          job,
          nums: batch.nums,
          keys: batch.keys,
          n: batch.n,
          names: names.fresh(),
        });
        batch.clear();
      },
      removed: (seqs, from, to) => {
        this.inFlight++;
        thread.post({ op: 'removed', job, seqs: Float64Array.from(seqs.slice(from, to)) });
      },
      finish: (head) => {
        this.inFlight++;
        thread.post({ op: 'finish', job, format: serialize(FORMAT), tables: tableNames(), head });
      },
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
    if (this.writing) throw new Error('a checkpoint is being written already');
    if (this.closed || !this.db.open) throw new Error('checkpoint store closed');
    this.writing = true;
    const stats = this.newStats(capture.full);
    const before = this.statements;
    const job = ++this.jobs;
    let error: Error | undefined;
    let finished: { stats: WriterStats; current: 0 | 1 } | undefined;
    this.onAnswer = (m) => {
      if (m.job !== job) return;
      if (m.error !== undefined) error ??= new Error(m.error);
      if (m.finished !== undefined) finished = m.finished;
    };
    const answered = () => new Promise<void>((resolve) => (this.wake = resolve));
    const sink = capture.sink;
    let thread: WriterThread | undefined;
    try {
      if (this.thread === undefined) {
        // The first write starts the thread, in a turn of the loop of its own: `new
        // Worker` holds the loop 0.5-2 ms, and the caller's turn took the capture.
        await new Promise((resolve) => setImmediate(resolve));
        if (this.closed) throw new Error('checkpoint store closed');
      }
      thread = this.writerThread();
      thread.hold(true);
      // Started by this write, or earlier: resolved at once once the thread has opened.
      await thread.ready;
      if (this.closed) throw new Error('checkpoint store closed');
      this.inFlight++;
      thread.post({ op: 'begin', job, full: capture.full, reload: this.threadStale });
      this.threadStale = false;
      // The writer has begun (a full checkpoint's set cleared) before the first slice.
      while (this.inFlight > 0 && error === undefined && !this.closed) await answered();
      const names = new Names();
      const out = this.toThread(thread, job, names);
      const produce = this.producer(capture, offsets, options.step ?? 16, out, names, stats);
      let done = false;
      for (;;) {
        if (error !== undefined) throw error;
        if (this.closed) throw new Error('checkpoint store closed');
        if (thread.fatal !== undefined) throw thread.fatal;
        if (done) {
          if (finished !== undefined) break;
          await answered();
          continue;
        }
        // Backpressure: MAX_IN_FLIGHT batches unanswered; the next slice waits for one.
        if (!out.free()) {
          await answered();
          continue;
        }
        // Between two transactions (a full checkpoint's), a fold running is waited for:
        // the next transaction then starts the log over, which stays near foldBytes.
        if (capture.full && this.folder.busy) {
          await this.folder.running();
          continue;
        }
        options.beforeSlice?.();
        const began = performance.now();
        done = produce(began + sliceMs);
        // What the slice took goes to the writer now, while the loop runs other work.
        if (!done && sink.rows > 0 && out.free()) out.rows(sink);
        const ms = performance.now() - began;
        stats.slices++;
        stats.totalMs += ms;
        if (ms > stats.maxPauseMs) stats.maxPauseMs = ms;
        options.onSlice?.(began, ms, 0);
        if (!done) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      capture.close();
      sink.clear();
      if (
        thread !== undefined &&
        !this.closed &&
        error === undefined &&
        thread.fatal === undefined
      ) {
        this.inFlight++;
        thread.post({ op: 'abort', job });
      }
      this.onAnswer = undefined;
      thread?.hold(false);
      this.writing = false;
      throw err;
    }
    const w = finished.stats;
    stats.entries = w.entries;
    stats.timers = w.timers;
    stats.bytes = w.bytes;
    stats.commits = w.commits;
    stats.maxBytesUnchecked = w.maxBytesUnchecked;
    stats.maxEntryBytes = w.maxEntryBytes;
    this.current = finished.current;
    this.loopStale = true;
    stats.maxTimersCopied = capture.maxTimersCopied;
    capture.close();
    stats.loopStatements = this.statements - before;
    this.onAnswer = undefined;
    thread.hold(false);
    this.writing = false;
    return stats;
  }

  /** write, all at once, on this thread (at shutdown, and where a caller needs the checkpoint now). */
  writeNow(capture: Capture<EntryBatch>, offsets: Record<string, number>): WriteStats {
    if (this.writing) throw new Error('a checkpoint is being written already');
    this.writing = true;
    const stats = this.newStats(capture.full);
    const before = this.statements;
    const began = performance.now();
    const writer = this.writer;
    const sink = capture.sink;
    let finished: WriterStats | undefined;
    const names = new Names();
    const out: Out = {
      free: () => true,
      rows: (batch) => {
        writer.rows({
          bytes: batch.bytes,
          spans: batch.spans,
          rule: (i) => batch.rules[i]!,
          rows: batch.rows,
          end: batch.end,
          parted: batch.parted,
        });
        batch.clear();
      },
      timers: (batch) => {
        writer.timers({ nums: batch.nums, keys: batch.keys, names: names.list, n: batch.n });
        batch.clear();
      },
      removed: (seqs, from, to) => writer.removed(seqs.slice(from, to)),
      finish: (head) => {
        finished = writer.finish(serialize(FORMAT), (set) => tableNames()[set], head);
      },
    };
    try {
      if (this.loopStale) writer.reload();
      this.loopStale = false;
      writer.begin(capture.full, false);
      const produce = this.producer(capture, offsets, 1024, out, names, stats);
      while (!produce(Number.POSITIVE_INFINITY));
    } catch (err) {
      writer.fail();
      capture.close();
      sink.clear();
      this.writing = false;
      throw err;
    }
    const w = finished!;
    Object.assign(stats, {
      entries: w.entries,
      timers: w.timers,
      bytes: w.bytes,
      commits: w.commits,
      maxBytesUnchecked: w.maxBytesUnchecked,
      maxEntryBytes: w.maxEntryBytes,
    });
    this.current = writer.current;
    this.threadStale = true;
    stats.maxTimersCopied = capture.maxTimersCopied;
    capture.close();
    const ms = performance.now() - began;
    stats.slices = 1;
    stats.totalMs = ms;
    stats.maxPauseMs = ms;
    stats.loopStatements = this.statements - before;
    this.writing = false;
    return stats;
  }

  /**
   * After a commit, the log `log` bytes: folded by the fold worker once it has grown; past
   * its bound, by the writer that committed (the writer thread folds its own, `here`: the
   * loop's writer, writeNow's).
   */
  private committed(log: number, here: boolean): void {
    if (log > this.foldBytes * FOLD_HERE_FACTOR) {
      if (!here) return;
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      this.foldedAt = 0;
    } else if (log > this.foldBytes && log > this.foldedAt && !this.folder.busy) {
      void this.folder.fold()?.then((ok) => {
        if (ok) this.foldedAt = logBytes(this.path);
      });
    }
  }

  /** The writer thread's state, 'none' before it is started (tests). */
  get writerState(): WriterState | 'none' {
    return this.thread?.state ?? 'none';
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

  /** Resolves once no fold of the log is running (tests, benchmarks); starts none. */
  async folded(): Promise<void> {
    await this.folder.running();
  }

  close(): void {
    if (!this.db.open) return;
    this.closed = true;
    // No commit of the writer thread lands after this (a store opened again reads what
    // this one leaves).
    this.thread?.close();
    this.wake?.();
    this.folder.close();
    if (!this.writing) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}

/** The `meta` value naming each set of tables. */
function tableNames(): [Uint8Array, Uint8Array] {
  return [serialize(TABLE_SETS[0]), serialize(TABLE_SETS[1])];
}
