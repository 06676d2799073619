/**
 * The embedded index in a worker thread, with its own SQLite connections: indexing (the
 * FTS5 tokenizer, the B-trees, each event's id and JSON) no longer takes the event loop
 * that ingest and the rules share. The index is the same EmbeddedIndex (embedded.ts);
 * this file is both sides: `openIndexWorker` on the main thread, the loop below in the
 * worker. A batch is acknowledged to the bus only once the worker has committed it, so
 * a slow index shows as the indexer group's lag, and the bus answers ingest with 429
 * and Retry-After once that lag reaches its limit (ingest/bus/embedded/index.ts).
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { BusBatch } from '../bus/types.ts';
import type { SearchParams, SearchResult } from '../index/search.ts';
import { EmbeddedIndex, type EmbeddedIndexOptions } from './embedded.ts';

type Request =
  | { id: number; op: 'index'; batch: BusBatch }
  | { id: number; op: 'search'; params: SearchParams }
  | { id: number; op: 'bytes' | 'names' | 'close' };

type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string }
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
    return this.call({ op: 'index', batch });
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
  // Requests are handled one at a time, in order: each finishes before the next starts.
  port.on('message', (r: Request) => {
    void (async () => {
      try {
        if (!index) throw new Error('the index did not open');
        let result: unknown;
        if (r.op === 'index') await index.indexBatch(r.batch);
        else if (r.op === 'search') result = await index.search(r.params);
        else if (r.op === 'bytes') result = index.bytes();
        else if (r.op === 'names') result = index.partitionNames();
        else index.close();
        post({ id: r.id, ok: true, result });
      } catch (err) {
        post({ id: r.id, ok: false, error: (err as Error).message });
      }
    })();
  });
}
