import { createRequire } from 'node:module';
import type { Client, estypes } from '@elastic/elasticsearch';
import type * as Elastic from '@elastic/elasticsearch';
import type { Event } from '../model/event.ts';
import { fromDocument } from './elasticsearch.ts';

/**
 * Reads Drover's events back out of Elasticsearch in event-time order, a page at a
 * time (`drover backtest --source elasticsearch`). Memory is one page whatever the
 * range: the caller takes a page before the next is asked for.
 *
 * The order must be total and stable for the whole read, or a page boundary inside a
 * run of equal timestamps repeats or skips events. Two ways give that:
 *
 * - **point in time** (`_pit`, where the server has it): a frozen view of the indices;
 *   pages sorted by `@timestamp` then `_shard_doc` (unique within the point in time),
 *   each page `search_after` the last one's sort values. Preferred: nothing is held
 *   between pages but the point in time, and it is what Elastic recommends for deep
 *   paging.
 * - **scroll**, where `_pit` is refused (a server without the endpoint answers 4xx):
 *   a scroll is also a frozen view and, sorted by `@timestamp` then `_doc`, gives every
 *   document once in that order. Without a frozen view `search_after` alone is not
 *   exact: Drover's documents have no sortable unique field (the `_id` is not sortable
 *   unless `indices.id_field_data` is enabled), and `_doc` changes as segments merge.
 *
 * Ties (equal `@timestamp`) come in the server's order (shard, then document), not the
 * order the events were sent in; within `allowedLateness` that makes no difference to
 * the rules (docs/time.md). Events the index refused (mapping conflicts, kept in the
 * dead-letter indices) are not events of these indices and are not read.
 */
export interface ScanOptions {
  node: string;
  /** Index name or pattern (comma-separated allowed). */
  index: string;
  /** Inclusive range on `@timestamp`, epoch ms. */
  from?: number;
  to?: number;
  /** Documents per page. Default 1,000. */
  pageSize?: number;
  /** Default `auto`: a point in time where the server has it, else a scroll. */
  method?: 'auto' | 'pit' | 'scroll';
  /** How long the server keeps the view between two pages. Default `2m`. */
  keepAlive?: string;
}

export type ScanMethod = 'pit' | 'scroll';

export class ScanError extends Error {}

export const DEFAULT_SCAN_PAGE_SIZE = 1_000;

const requireLib = createRequire(import.meta.url);

export class ElasticsearchScan {
  readonly client: Client;
  method: ScanMethod | undefined;
  /** Documents in range, known once the first page is read. */
  total: number | undefined;
  private readonly pageSize: number;
  private readonly keepAlive: string;

  constructor(private readonly options: ScanOptions) {
    const { Client: ClientClass } = requireLib('@elastic/elasticsearch') as typeof Elastic;
    // The URL may carry user:password (as `drover serve` takes it); the client sends it
    // as Basic authorization. It is never put in a message here.
    this.client = new ClientClass({ node: options.node, requestTimeout: 60_000, maxRetries: 2 });
    this.pageSize = options.pageSize ?? DEFAULT_SCAN_PAGE_SIZE;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > 10_000)
      throw new ScanError('the page size is an integer from 1 to 10000');
    this.keepAlive = options.keepAlive ?? '2m';
  }

  private query(): estypes.QueryDslQueryContainer {
    const { from, to } = this.options;
    if (from === undefined && to === undefined) return { match_all: {} };
    return {
      range: {
        '@timestamp': {
          // Indexed times are whole milliseconds (the `_source` keeps any fraction): widen
          // to the millisecond, and the caller applies the exact bounds to the events.
          ...(from !== undefined && { gte: Math.floor(from) }),
          ...(to !== undefined && { lte: Math.floor(to) }),
          format: 'epoch_millis',
        },
      },
    };
  }

  /** The index exists (a pattern matches an open index), or a ScanError saying so. */
  private async checkIndex(): Promise<void> {
    let exists: boolean;
    try {
      exists = await this.client.indices.exists({
        index: this.options.index,
        allow_no_indices: false,
        ignore_unavailable: false,
      });
    } catch (err) {
      throw new ScanError(`Elasticsearch did not answer: ${reason(err)}`);
    }
    if (!exists) throw new ScanError(`no index matches "${this.options.index}"`);
  }

  private pit: string | undefined;

  /**
   * Checks the index and chooses the method: a point in time if the server opens one,
   * else a scroll. Errors (no such index, no server) are ScanErrors, before any page.
   */
  async open(): Promise<ScanMethod> {
    await this.checkIndex();
    if (this.options.method !== 'scroll') {
      try {
        const r = await this.client.openPointInTime({
          index: this.options.index,
          keep_alive: this.keepAlive,
        });
        this.pit = r.id;
      } catch (err) {
        if (this.options.method === 'pit')
          throw new ScanError(`the server refused a point in time: ${reason(err)}`);
      }
    }
    return (this.method = this.pit ? 'pit' : 'scroll');
  }

  /** Pages of events, in `@timestamp` order (after open()). */
  async *pages(): AsyncGenerator<Event[]> {
    if (!this.method) await this.open();
    const pit = this.pit;
    try {
      if (pit) yield* this.pitPages(pit);
      else yield* this.scrollPages();
    } finally {
      this.pit = undefined;
      if (pit) await this.client.closePointInTime({ id: pit }).catch(() => {});
    }
  }

  /**
   * The next page is asked for before this one is handed out, so the server works while
   * the rules do: two pages in memory at most.
   */
  private async *pitPages(id: string): AsyncGenerator<Event[]> {
    const page = (after: estypes.SortResults | undefined) =>
      this.client
        .search({
          pit: { id, keep_alive: this.keepAlive },
          size: this.pageSize,
          sort: [{ '@timestamp': { order: 'asc' } }, { _shard_doc: { order: 'asc' } }],
          query: this.query(),
          track_total_hits: after === undefined,
          ...(after && { search_after: after }),
        })
        .catch((err: unknown) => {
          throw new ScanError(`search failed: ${reason(err)}`);
        });
    let r = await page(undefined);
    this.total = totalOf(r.hits.total);
    while (true) {
      const hits = r.hits.hits;
      if (hits.length === 0) return;
      const next = hits.length < this.pageSize ? undefined : page(hits[hits.length - 1]!.sort);
      // A failed prefetch is reported when awaited, not as an unhandled rejection.
      next?.catch(() => {});
      yield hits.map((h) => fromDocument(h._source as Record<string, unknown>));
      if (!next) return;
      r = await next;
    }
  }

  private async *scrollPages(): AsyncGenerator<Event[]> {
    let scrollId: string | undefined;
    try {
      let r = await this.client
        .search({
          index: this.options.index,
          scroll: this.keepAlive,
          size: this.pageSize,
          sort: [{ '@timestamp': { order: 'asc' } }, '_doc'],
          query: this.query(),
          track_total_hits: true,
        })
        .catch((err: unknown) => {
          throw new ScanError(`search failed: ${reason(err)}`);
        });
      this.total = totalOf(r.hits.total);
      while (true) {
        scrollId = r._scroll_id;
        const hits = r.hits.hits;
        if (hits.length === 0) return;
        yield hits.map((h) => fromDocument(h._source as Record<string, unknown>));
        if (!scrollId) throw new ScanError('the server returned no scroll id');
        r = await this.client
          .scroll({ scroll_id: scrollId, scroll: this.keepAlive })
          .catch((err: unknown) => {
            throw new ScanError(`scroll failed: ${reason(err)}`);
          });
      }
    } finally {
      if (scrollId) await this.client.clearScroll({ scroll_id: scrollId }).catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function totalOf(total: number | estypes.SearchTotalHits | undefined): number | undefined {
  return typeof total === 'number' ? total : total?.value;
}

/**
 * What went wrong, without the request: the client's errors may hold the URL (and its
 * userinfo) in their `meta`; only the server's error type and reason, or the connection
 * error's message, are kept. The caller redacts the text as well.
 */
function reason(err: unknown): string {
  const e = err as {
    name?: string;
    message?: string;
    meta?: { statusCode?: number; body?: { error?: { type?: string; reason?: string } } };
  };
  const body = e.meta?.body?.error;
  if (body?.type) return `${e.meta?.statusCode ?? ''} ${body.type}: ${body.reason ?? ''}`.trim();
  return `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
}
