/**
 * Folds the checkpoint store's write-ahead log into its database in a worker thread, with
 * a connection of its own (docs/architecture.md#checkpoints): a fold copies every page
 * the log holds, hundreds of milliseconds at a million keys, which on the main thread
 * held the event loop. The fold is PASSIVE: it never waits for the writer, which goes on
 * appending to the log meanwhile; once the log is folded whole, the writer's next
 * transaction starts it over. This file is both sides: `LogFolder` on the main thread,
 * the loop below in the worker.
 *
 * A log folded whole is then read back by the worker, from its beginning, before the fold
 * is answered: the writer's next transactions write over that file from its beginning,
 * and a frame (24 bytes and a page) is not aligned with the file's 4 KiB pages, so each
 * page it writes that is no longer in the page cache (the kernel drops clean pages it
 * finds cold) is first read from the disk, in the COMMIT, on the event loop: 5-6 ms in
 * one slice at 1.1 M keys (bench/README.md "Snapshots"). Read back in the worker, those
 * pages are in the cache when the writer reaches them.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { openSqlite } from '../ingest/storage/sqlite.ts';
import { lowerThisThread } from './thread-priority.ts';

type Request = { op: 'fold' } | { op: 'close' };
type Reply = { ok: true; read: number } | { ok: false; error: string };

/** The buffer a folded log is read back through, a chunk at a time (the worker's only). */
const READ_CHUNK = 1 << 20;

export class LogFolder {
  private worker: Worker | undefined;
  /** At most one fold at a time: a request while one runs gets that one. */
  private folding: Promise<boolean> | undefined;
  private closed = false;
  /** Bytes of folded logs the worker has read back (see the file's comment). */
  readBack = 0;

  constructor(
    private readonly path: string,
    private readonly onError: (err: Error) => void,
  ) {}

  private start(): Worker {
    const self = import.meta.url;
    const data = { checkpointFold: this.path };
    // As ingest/sinks/embedded-worker.ts: from the sources, tsx's loader reads the worker.
    const worker = self.endsWith('.ts')
      ? new Worker(
          `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(self)}); })`,
          { eval: true, workerData: data },
        )
      : new Worker(new URL(self), { workerData: data });
    worker.unref();
    worker.on('error', (err) => this.onError(err));
    return worker;
  }

  /** Whether a fold is running. */
  get busy(): boolean {
    return this.folding !== undefined;
  }

  /** Resolves once no fold is running (at once when none is); starts none. */
  async running(): Promise<void> {
    await this.folding;
  }

  /**
   * Starts a fold unless one is running; resolves when it ends, true when it folded (an
   * error is reported, not thrown). The first one starts the worker thread in a turn of
   * the event loop of its own (setImmediate), not in the caller's: `new Worker` holds the
   * loop 0.5-2 ms, which inside a checkpoint's slice (the commit that asks for the fold)
   * took that slice past its budget (4.0-4.3 ms of CPU at 1.1 M keys, bench/README.md).
   */
  fold(): Promise<boolean> | undefined {
    if (this.closed) return undefined;
    if (this.folding) return this.folding;
    const worker = this.worker;
    this.folding = (
      worker !== undefined
        ? this.post(worker)
        : new Promise<boolean>((resolve) =>
            setImmediate(() => {
              if (this.closed) resolve(false);
              else resolve(this.post((this.worker ??= this.start())));
            }),
          )
    ).finally(() => {
      this.folding = undefined;
    });
    return this.folding;
  }

  /** Asks `worker` for one fold; resolves when it answers (false if it ends first). */
  private post(worker: Worker): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (m: Reply) => {
        worker.off('exit', gone);
        if (!m.ok) this.onError(new Error(m.error));
        else this.readBack += m.read;
        resolve(m.ok);
      };
      const gone = () => {
        worker.off('message', done);
        this.worker = undefined;
        resolve(false);
      };
      worker.once('message', done);
      worker.once('exit', gone);
      worker.postMessage({ op: 'fold' } satisfies Request);
    });
  }

  /** Asks the worker to close its connection and end (it ends after a fold running now). */
  close(): void {
    this.closed = true;
    this.worker?.postMessage({ op: 'close' } satisfies Request);
    this.worker = undefined;
  }
}

const fold = isMainThread
  ? undefined
  : (workerData as { checkpointFold?: unknown } | null)?.checkpointFold;
if (typeof fold === 'string') {
  const path = fold;
  lowerThisThread();
  const db = openSqlite(path);
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  /**
   * Reads the log file whole (its pages into the page cache), a chunk at a time; the bytes
   * read. Bounded by the file, which the store keeps under 8 times its fold size.
   */
  const readBack = (): number => {
    const fd = openSync(`${path}-wal`, 'r');
    try {
      let at = 0;
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, at);
        if (n === 0) return at;
        at += n;
      }
    } finally {
      closeSync(fd);
    }
  };
  parentPort!.on('message', (m: Request) => {
    if (m.op === 'close') {
      db.close();
      parentPort!.close();
      return;
    }
    try {
      const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{
        log: number;
        checkpointed: number;
      }>;
      // Folded whole: the next transaction starts the log over from the file's beginning.
      const read = r !== undefined && r.log > 0 && r.checkpointed === r.log ? readBack() : 0;
      parentPort!.postMessage({ ok: true, read } satisfies Reply);
    } catch (err) {
      parentPort!.postMessage({ ok: false, error: String(err) } satisfies Reply);
    }
  });
}
