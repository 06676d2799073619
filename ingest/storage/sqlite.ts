/**
 * The one way Drover's embedded stores (the bus, the index, the action journal) open
 * SQLite: the runtime's own `node:sqlite` where it has one (Node.js 22.13+ and 24), and
 * better-sqlite3 12 on Node.js 20, which has none. better-sqlite3 12 aborts the process
 * on Node.js 24 when a statement is collected after its environment is torn down
 * (`Assertion failed: (env) != nullptr` in `Statement::~Statement`: worker threads,
 * shutdown), and 13, which fixes that, does not run on 20 — so no single version of it
 * serves every supported runtime, while `node:sqlite` needs no native build at all.
 *
 * The interface is the part of better-sqlite3's that the stores use, so both drivers
 * sit behind it unchanged: prepared statements with `run`/`get`/`all`/`iterate` and
 * `pluck`, `exec`, `pragma`, and `transaction(fn)` with its `.immediate` form (nested
 * calls become savepoints, as in better-sqlite3). `DROVER_SQLITE=better-sqlite3` or
 * `=node` picks a driver explicitly (benchmarks compare them side by side).
 */
import { createRequire } from 'node:module';

/**
 * Parameters are what both drivers bind: null, number, bigint, string, Uint8Array (a
 * BLOB), or one object of named values; anything else (undefined, booleans) is refused
 * by either driver with an error.
 */
export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

export interface SqliteStatement {
  run(...params: unknown[]): RunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
  /** From now on, rows are their first column's value. */
  pluck(): SqliteStatement;
}

export type SqliteTransaction<F extends (...args: never[]) => unknown> = F & {
  /** The same, as `BEGIN IMMEDIATE`: the write lock is taken before the first read. */
  immediate: F;
};

export interface SqliteDatabase {
  readonly driver: SqliteDriver;
  readonly open: boolean;
  prepare(sql: string): SqliteStatement;
  exec(sql: string): void;
  /** `PRAGMA <text>`; its rows. */
  pragma(text: string): unknown[];
  transaction<F extends (...args: never[]) => unknown>(fn: F): SqliteTransaction<F>;
  close(): void;
}

export type SqliteDriver = 'node:sqlite' | 'better-sqlite3';

export interface OpenSqliteOptions {
  readonly?: boolean;
}

interface NodeSqlite {
  DatabaseSync: new (
    path: string,
    options?: { readOnly?: boolean },
  ) => {
    prepare(sql: string): NodeStatement;
    exec(sql: string): void;
    close(): void;
  };
}

interface NodeStatement {
  run(...params: unknown[]): RunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

let loaded: NodeSqlite | null | undefined;

function nodeSqlite(): NodeSqlite | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  // Node.js 22 marks node:sqlite experimental and says so on stderr when it first loads;
  // the stores use the part of it that 24 ships as a release candidate, so that one
  // warning is left out (any other warning still goes through).
  // eslint-disable-next-line @typescript-eslint/unbound-method -- put back as is below, and called with process as this
  const emit = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]) {
    if (String(warning).startsWith('SQLite is an experimental feature')) return;
    return (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  };
  try {
    // Absent on Node.js 20, and behind --experimental-sqlite before 22.13.
    loaded = (process.getBuiltinModule?.('node:sqlite') as NodeSqlite | undefined) ?? null;
  } catch {
    loaded = null;
  } finally {
    process.emitWarning = emit;
  }
  return loaded ?? undefined;
}

/** The driver `openSqlite` uses in this process. */
export function sqliteDriver(): SqliteDriver {
  const asked = process.env.DROVER_SQLITE;
  if (asked === 'better-sqlite3') {
    // The abort above reaches users at shutdown and in worker threads: not offered there.
    if (Number(process.versions.node.split('.')[0]) >= 24)
      throw new Error(
        `DROVER_SQLITE=better-sqlite3: better-sqlite3 12 aborts Node.js ${process.version} when it tears down; use node:sqlite (unset DROVER_SQLITE)`,
      );
    return 'better-sqlite3';
  }
  if (asked === 'node') {
    if (!nodeSqlite())
      throw new Error(`DROVER_SQLITE=node: this Node.js (${process.version}) has no node:sqlite`);
    return 'node:sqlite';
  }
  if (asked !== undefined && asked !== '')
    throw new Error(`DROVER_SQLITE must be "node" or "better-sqlite3", not "${asked}"`);
  return nodeSqlite() ? 'node:sqlite' : 'better-sqlite3';
}

export function openSqlite(path: string, options: OpenSqliteOptions = {}): SqliteDatabase {
  return sqliteDriver() === 'node:sqlite' ? openNode(path, options) : openBetter(path, options);
}

function openBetter(path: string, options: OpenSqliteOptions): SqliteDatabase {
  type Better = new (
    path: string,
    options?: { readonly?: boolean },
  ) => Omit<SqliteDatabase, 'driver'> & { name: string };
  let Database: Better;
  try {
    Database = createRequire(import.meta.url)('better-sqlite3') as Better;
  } catch (err) {
    throw new Error(
      `SQLite: this Node.js (${process.version}) has no node:sqlite, and better-sqlite3 could not be loaded (${(err as Error).message}); reinstall with npm ci`,
      { cause: err },
    );
  }
  const db = new Database(path, { readonly: options.readonly ?? false });
  return Object.assign(db, { driver: 'better-sqlite3' as const });
}

function openNode(path: string, options: OpenSqliteOptions): SqliteDatabase {
  const db = new (nodeSqlite()!.DatabaseSync)(path, { readOnly: options.readonly ?? false });
  // better-sqlite3 waits up to 5 s for a lock another connection holds; node:sqlite does
  // not wait at all unless told. The same here, so that processes or threads sharing a
  // file (two rules workers' journal, the index writer thread) wait for each other on
  // either driver, from the first statement (switching a new file to WAL takes a lock).
  db.exec('PRAGMA busy_timeout = 5000');
  let open = true;
  let depth = 0;
  let savepoints = 0;

  const wrap = (statement: NodeStatement): SqliteStatement => {
    let plucked = false;
    const first = (row: unknown) => {
      if (!plucked || row === undefined) return row;
      for (const k in row as object) return (row as Record<string, unknown>)[k];
      return undefined;
    };
    const s: SqliteStatement = {
      run: (...p) => statement.run(...p),
      get: (...p) => first(statement.get(...p)),
      all: (...p) => (plucked ? statement.all(...p).map(first) : statement.all(...p)),
      iterate: (...p) => {
        const it = statement.iterate(...p);
        if (!plucked) return it;
        return (function* () {
          for (const row of it) yield first(row);
        })();
      },
      pluck: () => {
        plucked = true;
        return s;
      },
    };
    return s;
  };

  const transaction = <F extends (...args: never[]) => unknown>(fn: F): SqliteTransaction<F> => {
    const make = (begin: string) =>
      ((...args: never[]) => {
        if (depth > 0) {
          // Nested: a savepoint, so an inner failure undoes only the inner part.
          const name = `drover_sp_${savepoints++}`;
          db.exec(`SAVEPOINT ${name}`);
          depth++;
          try {
            const result = fn(...args);
            db.exec(`RELEASE ${name}`);
            return result;
          } catch (err) {
            db.exec(`ROLLBACK TO ${name}`);
            db.exec(`RELEASE ${name}`);
            throw err;
          } finally {
            depth--;
          }
        }
        db.exec(begin);
        depth++;
        try {
          const result = fn(...args);
          db.exec('COMMIT');
          return result;
        } catch (err) {
          try {
            db.exec('ROLLBACK');
          } catch {
            // SQLite rolled back on its own (e.g. SQLITE_FULL): nothing left to undo.
          }
          throw err;
        } finally {
          depth--;
        }
      }) as F;
    return Object.assign(make('BEGIN'), { immediate: make('BEGIN IMMEDIATE') });
  };

  return {
    driver: 'node:sqlite',
    get open() {
      return open;
    },
    prepare: (sql) => wrap(db.prepare(sql)),
    exec: (sql) => db.exec(sql),
    pragma: (text) => db.prepare(`PRAGMA ${text}`).all(),
    transaction,
    close: () => {
      if (!open) return;
      open = false;
      db.close();
    },
  };
}

/** For diagnostics: which SQLite the embedded stores run on here. */
export function describeSqlite(): string {
  const driver = sqliteDriver();
  return `${driver} on Node.js ${process.version}`;
}

/**
 * SQLite says another connection holds a lock (SQLITE_BUSY, SQLITE_LOCKED, or one of
 * their extended codes), as either driver reports it: better-sqlite3 in `code`,
 * `node:sqlite` in `errcode`. The same statement a moment later may succeed.
 */
export function isSqliteBusy(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown } | null;
  if (typeof e?.code === 'string' && /^SQLITE_(BUSY|LOCKED)(_|$)/.test(e.code)) return true;
  return typeof e?.errcode === 'number' && ((e.errcode & 0xff) === 5 || (e.errcode & 0xff) === 6);
}

/**
 * Switches a file to WAL. Switching a new file takes an exclusive lock, and SQLite answers
 * SQLITE_BUSY at once, without its busy handler, when waiting could deadlock (another
 * connection opening the same file at the same instant): so it is retried here, every
 * 20 ms, for up to 10 s, blocking (stores open synchronously, once, at start).
 */
export function enableWal(db: SqliteDatabase): void {
  const deadline = Date.now() + 10_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if (!isSqliteBusy(err) || Date.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, 20);
    }
  }
}
