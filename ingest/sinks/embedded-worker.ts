/**
 * The embedded index in a worker thread, with its own SQLite connections: indexing (the
 * FTS5 tokenizer, the B-trees, each event's id and JSON) no longer takes the event loop
 * that ingest and the rules share. The index is the same EmbeddedIndex (embedded.ts);
 * this file is both sides: `openIndexWorker` on the main thread, the loop below in the
 * worker. A batch is acknowledged to the bus only once the worker has committed it, so
 * a slow index shows as the indexer group's lag, and the bus answers ingest with 429
 * and Retry-After once that lag reaches its limit (ingest/bus/embedded/index.ts).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { BusBatch } from '../bus/types.ts';
import type { SearchParams, SearchResult } from '../index/search.ts';
import { EmbeddedIndex, type EmbeddedIndexOptions } from './embedded.ts';

type Request =
  | { id: number; op: 'index'; batch: BusBatch }
  | { id: number; op: 'search'; params: SearchParams }
  | { id: number; op: 'bytes' | 'names' | 'close' };

/**
 * The worker thread's time so far, in seconds: `active` its event loop's (taking
 * requests in, structured clones included), `batch` inside index batches, and of that
 * `cpu` on a CPU and `wait` runnable but waiting for one (the kernel's per-thread
 * schedstat; both 0 where there is none). Sent with each batch's answer.
 */
export interface WorkerUsage {
  active: number;
  batch: number;
  cpu: number;
  wait: number;
}

type Reply =
  | { id: number; ok: true; result: unknown; usage?: WorkerUsage }
  | { id: number; ok: false; error: string; usage?: WorkerUsage }
  | { event: 'ready' }
  | { event: 'failed'; error: string }
  | { event: 'expired'; events: number }
  | { event: 'dropped'; partition: string; reason: 'age' | 'size' | 'count' }
  | { event: 'error'; error: string };

/** What crosses to the worker: the options without their callbacks and clock. */
type WorkerOptions = Omit<EmbeddedIndexOptions, 'onExpired' | 'onDropped' | 'onError' | 'clock'>;

/** The main thread's handle: the EmbeddedIndex's interface, each call a message. */
export class IndexWorker {
  /** Calls awaiting the worker: bounded by the callers (one batch at a time, searches). */
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private ids = 0;
  private failure: Error | undefined;
  private used: WorkerUsage = { active: 0, batch: 0, cpu: 0, wait: 0 };
  /**
   * The batch the indexer group read ahead and the worker was asked to start on
   * (stage()), until the consumer hands it over: one at a time, a later one replaces it.
   */
  private staged: { messages: BusBatch['messages']; done: Promise<void> } | undefined;

  private constructor(private readonly worker: Worker) {}

  static async open(dir: string, options: EmbeddedIndexOptions = {}): Promise<IndexWorker> {
    const { onExpired, onDropped, onError, clock: _clock, ...plain } = options;
    const self = import.meta.url;
    const data = { dir, options: plain satisfies WorkerOptions };
    // From the sources (tests, benchmarks) the worker is TypeScript: tsx's loader, registered
    // in the worker, reads it (Node.js 20 takes no --import in a worker's execArgv).
    const worker = self.endsWith('.ts')
      ? new Worker(
          `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(self)}); })`,
          { eval: true, workerData: data },
        )
      : new Worker(new URL(self), { workerData: data });
    const handle = new IndexWorker(worker);
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m: Reply) => {
        if ('id' in m) {
          const p = handle.pending.get(m.id);
          handle.pending.delete(m.id);
          if (m.usage) handle.used = m.usage;
          if (m.ok) p?.resolve(m.result);
          else p?.reject(new Error(m.error));
        } else if (m.event === 'ready') resolve();
        else if (m.event === 'failed') reject(new Error(m.error));
        else if (m.event === 'expired') onExpired?.(m.events);
        else if (m.event === 'dropped') onDropped?.(m.partition, m.reason);
        else onError?.(new Error(m.error));
      });
      const fail = (err: Error) => {
        handle.failure ??= err;
        reject(err);
        for (const p of handle.pending.values()) p.reject(err);
        handle.pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`the index worker exited (code ${code})`)));
    });
    return handle;
  }

  private call<T>(
    request: Request extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never,
  ): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.ids++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  /** Resolves once the worker has committed the batch. */
  indexBatch(batch: BusBatch): Promise<void> {
    const staged = this.staged;
    if (staged?.messages === batch.messages) {
      this.staged = undefined;
      return staged.done;
    }
    return this.call({ op: 'index', batch });
  }

  /**
   * Starts indexing a batch the consumer read ahead (ConsumeOptions.readAhead), queued in
   * the worker behind the batch it has: the worker goes on to it without waiting for
   * this thread to take the answer, commit and send the next. indexBatch() of the same
   * messages then answers with this batch's outcome (a failure counts as the handler's
   * first attempt; the next is indexed again). A batch staged and never handed (the
   * consumer stopped, or read it again) was indexed but not committed: the bus delivers
   * it again, and rows keyed by bus position make that a no-op.
   */
  stage(batch: BusBatch): void {
    const done = this.call<void>({ op: 'index', batch });
    // Its failure is reported to the handler that claims it, if one does.
    done.catch(() => undefined);
    this.staged = { messages: batch.messages, done };
  }

  /** The worker thread's time as of its last batch's answer (WorkerUsage). */
  usage(): WorkerUsage {
    return this.used;
  }

  search(params: SearchParams): Promise<SearchResult> {
    return this.call({ op: 'search', params });
  }

  bytes(): Promise<number> {
    return this.call({ op: 'bytes' });
  }

  partitionNames(): Promise<string[]> {
    return this.call({ op: 'names' });
  }

  async close(): Promise<void> {
    if (this.failure) return;
    await this.call({ op: 'close' });
    this.failure = new Error('the index is closed');
    await this.worker.terminate();
  }
}

export function openIndexWorker(
  dir: string,
  options: EmbeddedIndexOptions = {},
): Promise<IndexWorker> {
  return IndexWorker.open(dir, options);
}

/**
 * This thread's nanoseconds on a CPU and runnable waiting for one, from Linux's
 * /proc/thread-self/schedstat (read on the calling thread: a synchronous read runs on
 * it); [0, 0] where the file is missing.
 */
let schedstatMissing = false;
function schedstat(): [number, number] {
  if (schedstatMissing) return [0, 0];
  try {
    const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ');
    return [Number(cpu) || 0, Number(wait) || 0];
  } catch {
    schedstatMissing = true;
    return [0, 0];
  }
}

if (!isMainThread && parentPort && (workerData as { dir?: unknown } | null)?.dir !== undefined) {
  const port = parentPort;
  const { dir, options } = workerData as { dir: string; options: WorkerOptions };
  const post = (m: Reply) => port.postMessage(m);
  let index: EmbeddedIndex | undefined;
  try {
    index = new EmbeddedIndex(dir, {
      ...options,
      onExpired: (events) => post({ event: 'expired', events }),
      onDropped: (partition, reason) => post({ event: 'dropped', partition, reason }),
      onError: (err) => post({ event: 'error', error: err.message }),
    });
    post({ event: 'ready' });
  } catch (err) {
    post({ event: 'failed', error: (err as Error).message });
  }
  const used: WorkerUsage = { active: 0, batch: 0, cpu: 0, wait: 0 };
  // Requests are handled one at a time, in order: each finishes before the next starts.
  port.on('message', (r: Request) => {
    void (async () => {
      try {
        if (!index) throw new Error('the index did not open');
        let result: unknown;
        if (r.op === 'index') {
          const began = performance.now();
          const [cpu, wait] = schedstat();
          try {
            await index.indexBatch(r.batch);
          } finally {
            const [cpuEnd, waitEnd] = schedstat();
            used.batch += (performance.now() - began) / 1000;
            used.cpu += (cpuEnd - cpu) / 1e9;
            used.wait += (waitEnd - wait) / 1e9;
            used.active = performance.eventLoopUtilization().active / 1000;
          }
          post({ id: r.id, ok: true, result, usage: { ...used } });
          return;
        } else if (r.op === 'search') result = await index.search(r.params);
        else if (r.op === 'bytes') result = index.bytes();
        else if (r.op === 'names') result = index.partitionNames();
        else index.close();
        post({ id: r.id, ok: true, result });
      } catch (err) {
        post({
          id: r.id,
          ok: false,
          error: (err as Error).message,
          ...(r.op === 'index' && { usage: { ...used } }),
        });
      }
    })();
  });
}
