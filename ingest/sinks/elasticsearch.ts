import { createRequire } from 'node:module';
import type { Client, estypes } from '@elastic/elasticsearch';
import type * as Elastic from '@elastic/elasticsearch';

type QueryDslQueryContainer = estypes.QueryDslQueryContainer;
import { transient } from '../bus/deliver.ts';
import type { BusBatch } from '../bus/types.ts';
import type { Event } from '../model/event.ts';
import { documentId, type SearchParams, type SearchResult } from '../index/search.ts';
import {
  type AlertDocument,
  dailyIndex,
  type IndexFamily,
  indexTemplate,
} from '../index/templates.ts';

/**
 * Indexes bus batches into Elasticsearch. On start it detects what the server offers
 * (data streams and ILM are x-pack features a minimal server lacks) and installs
 * composable templates accordingly: data streams with a lifecycle policy where it can,
 * daily indices with the same mappings where it cannot.
 *
 * Each batch goes in one bulk request; every item is classified: created or already
 * there (409 on a redelivered batch, since ids are bus positions) is done, 429 and 5xx
 * are retried with backoff, anything else (a mapping conflict) goes to the dead-letter
 * index with the reason. The batch resolves only when every item is indexed or
 * dead-lettered, so the bus commits its offset only then.
 */
export interface ElasticsearchIndexerOptions {
  node: string;
  /** Prefix of every index name. Default `drover`. */
  prefix?: string;
  /** Retries of a throttled or failing item before the batch fails (and is redelivered). */
  retries?: number;
  backoffMs?: number;
  /** Days to keep with ILM, where the server has it. */
  retentionDays?: number;
  onMetrics?: (m: IndexerMetrics) => void;
}

export interface IndexerMetrics {
  indexed: number;
  deadLettered: number;
  retried: number;
  latencyMs: number;
}

export interface Capabilities {
  version: string;
  dataStreams: boolean;
  ilm: boolean;
}

export class IndexingError extends Error {}

// The client library is loaded when an Elasticsearch store or indexer is first made, not
// when Drover starts (most configurations use the embedded back ends).
const requireLib = createRequire(import.meta.url);
let elasticLib: typeof Elastic | undefined;
function elastic(): typeof Elastic {
  return (elasticLib ??= requireLib('@elastic/elasticsearch') as typeof Elastic);
}

export class ElasticsearchIndexer {
  readonly client: Client;
  readonly prefix: string;
  capabilities: Capabilities | undefined;
  private readonly retries: number;
  private readonly backoffMs: number;

  constructor(private readonly options: ElasticsearchIndexerOptions) {
    this.client = new (elastic().Client)({ node: options.node, requestTimeout: 30_000 });
    this.prefix = options.prefix ?? 'drover';
    this.retries = options.retries ?? 5;
    this.backoffMs = options.backoffMs ?? 200;
  }

  async start(): Promise<Capabilities> {
    const info = await this.client.cluster
      .stats({ filter_path: ['nodes.versions'] })
      .catch(() => undefined);
    const version =
      (info as { nodes?: { versions?: string[] } } | undefined)?.nodes?.versions?.[0] ?? 'unknown';
    const capabilities = {
      version,
      dataStreams: await this.supports('GET', '/_data_stream'),
      ilm: await this.supports('GET', '/_ilm/policy'),
    };
    this.capabilities = capabilities;
    const policy = capabilities.ilm ? `${this.prefix}-retention` : undefined;
    if (policy) {
      await this.client.transport.request({
        method: 'PUT',
        path: `/_ilm/policy/${policy}`,
        body: {
          policy: {
            phases: {
              hot: { actions: { rollover: { max_age: '1d', max_primary_shard_size: '50gb' } } },
              delete: { min_age: `${this.options.retentionDays ?? 30}d`, actions: { delete: {} } },
            },
          },
        },
      });
    }
    for (const family of ['events', 'alerts', 'actions', 'deadletter'] as IndexFamily[]) {
      await this.client.indices.putIndexTemplate({
        name: `${this.prefix}-${family}`,
        ...(indexTemplate(this.prefix, family, {
          dataStream: capabilities.dataStreams,
          ilmPolicy: policy,
        }) as object),
      });
    }
    return capabilities;
  }

  /** A server without a feature answers its endpoint with an error (405 on a minimal server). */
  private async supports(method: string, path: string): Promise<boolean> {
    try {
      await this.client.transport.request({ method, path });
      return true;
    } catch {
      return false;
    }
  }

  indexFor(family: IndexFamily, epochMs: number): string {
    return this.capabilities?.dataStreams && family !== 'deadletter'
      ? `${this.prefix}-${family}`
      : dailyIndex(this.prefix, family, epochMs);
  }

  /** The consumer handler: resolves once the batch is safely indexed or dead-lettered. */
  async indexBatch(batch: BusBatch): Promise<void> {
    const started = performance.now();
    let pending = batch.messages.map((m) => ({
      id: documentId(m),
      index: this.indexFor('events', m.event['@timestamp']),
      doc: toDocument(m.event),
    }));
    let retried = 0;
    let deadLettered = 0;
    for (let attempt = 0; pending.length > 0; attempt++) {
      // Retries exhausted on 429s, 5xx or an unreachable server: the server is at fault,
      // not the documents, so the bus redelivers the batch without dead-lettering it.
      if (attempt > this.retries) {
        throw transient(
          new IndexingError(
            `${pending.length} documents still failing after ${this.retries} retries`,
          ),
        );
      }
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1));
      const operations = pending.flatMap((p) => [
        { create: { _index: p.index, _id: p.id } },
        p.doc,
      ]);
      const response = await this.client.bulk({ operations }).catch((err: unknown) => {
        // The whole request failed (unreachable, 429 on the request): retry all of it.
        if (attempt >= this.retries) throw transient(err as Error);
        return undefined;
      });
      if (!response) {
        retried += pending.length;
        continue;
      }
      const again: typeof pending = [];
      const dead: Array<{ p: (typeof pending)[number]; reason: string }> = [];
      response.items.forEach((item, i) => {
        const result = item.create!;
        const status = result.status;
        if (status < 300 || status === 409) return;
        if (status === 429 || status >= 500) again.push(pending[i]!);
        else
          dead.push({
            p: pending[i]!,
            reason: `${result.error?.type ?? status}: ${result.error?.reason ?? 'rejected'}`,
          });
      });
      if (dead.length > 0) {
        await this.deadLetter(
          dead.map(({ p, reason }) => ({ id: p.id, index: p.index, reason, document: p.doc })),
        ).catch((err: unknown) => {
          throw transient(err as Error);
        });
        deadLettered += dead.length;
      }
      retried += again.length;
      pending = again;
    }
    this.options.onMetrics?.({
      indexed: batch.messages.length - deadLettered,
      deadLettered,
      retried,
      latencyMs: performance.now() - started,
    });
  }

  /**
   * Alerts into the alerts index family, where the Kibana alerts dashboard reads them.
   * The alert id is the document id, so an alert replayed after a restart is a no-op.
   * The documents are built where alerts are produced (rules' `alertDocument`).
   */
  async indexAlerts(alerts: AlertDocument[]): Promise<void> {
    if (alerts.length === 0) return;
    const operations = alerts.flatMap((a) => [
      { create: { _index: this.indexFor('alerts', Date.parse(a['@timestamp'])), _id: a.id } },
      a,
    ]);
    const response = await this.client.bulk({ operations });
    const failed = response.items.filter(
      (i) => i.create!.status >= 300 && i.create!.status !== 409,
    );
    if (failed.length > 0)
      throw new IndexingError(
        `could not index ${failed.length} alerts: ${failed[0]!.create!.error?.reason}`,
      );
  }

  private async deadLetter(
    items: Array<{ id: string; index: string; reason: string; document: Record<string, unknown> }>,
  ) {
    const now = Date.now();
    const operations = items.flatMap((d) => [
      { create: { _index: this.indexFor('deadletter', now), _id: d.id } },
      {
        '@timestamp': new Date(now).toISOString(),
        reason: d.reason,
        index: d.index,
        document: JSON.stringify(d.document),
      },
    ]);
    const response = await this.client.bulk({ operations });
    const failed = response.items.filter(
      (i) => i.create!.status >= 300 && i.create!.status !== 409,
    );
    if (failed.length > 0)
      throw new IndexingError(
        `could not dead-letter ${failed.length} documents: ${failed[0]!.create!.error?.reason}`,
      );
  }

  async search(params: SearchParams): Promise<SearchResult> {
    const filter: QueryDslQueryContainer[] = [];
    if (params.from !== undefined || params.to !== undefined) {
      filter.push({
        range: {
          '@timestamp': {
            ...(params.from !== undefined && { gte: params.from }),
            ...(params.to !== undefined && { lte: params.to }),
            format: 'epoch_millis',
          },
        },
      });
    }
    if (params.service) filter.push({ term: { 'service.name': params.service } });
    if (params.level) filter.push({ term: { 'log.level': params.level } });
    const must: QueryDslQueryContainer[] = params.q
      ? [
          {
            simple_query_string: {
              query: params.q,
              fields: ['message', 'error.message', 'error.type', 'error.stack_trace'],
              default_operator: 'and',
            },
          },
        ]
      : [];
    const response = await this.client.search({
      index: `${this.prefix}-events*`,
      size: params.size ?? 50,
      sort: [{ '@timestamp': { order: 'desc' } }],
      track_total_hits: true,
      query: { bool: { must, filter } },
      ignore_unavailable: true,
      allow_no_indices: true,
    });
    const total =
      typeof response.hits.total === 'number'
        ? response.hits.total
        : (response.hits.total?.value ?? 0);
    return {
      total,
      events: response.hits.hits.map((h) => fromDocument(h._source as Record<string, unknown>)),
    };
  }

  async refresh(): Promise<void> {
    await this.client.indices.refresh({ index: `${this.prefix}-*` });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function toDocument(event: Event): Record<string, unknown> {
  return { ...event, '@timestamp': isoTime(event['@timestamp']) };
}

/**
 * ISO 8601 of an event time, keeping a fraction of a millisecond (a numeric `@timestamp`
 * of 1767225600123.7 is `…00.1237Z`): Elasticsearch indexes the millisecond and keeps
 * the string in `_source`, so `fromDocument` gives back the very number normalize gave
 * (its shortest decimal form, digit for digit), and a backtest from the index sees the
 * times a replay of the NDJSON sees.
 */
export function isoTime(t: number): string {
  const iso = new Date(t).toISOString();
  if (Number.isInteger(t)) return iso;
  const s = String(t);
  const dot = s.indexOf('.');
  // Event times are positive and below 10^15 ms, so String() has no exponent.
  if (dot < 0 || s.includes('e')) return iso;
  return `${iso.slice(0, -1)}${s.slice(dot + 1)}Z`;
}

/** Digits after the millisecond in an ISO time written by isoTime. */
const SUB_MS = /\.\d{3}(\d+)Z$/;

export function fromDocument(doc: Record<string, unknown>): Event {
  const at = doc['@timestamp'];
  let t = typeof at === 'number' ? at : Date.parse(String(at));
  if (typeof at === 'string' && Number.isInteger(t)) {
    const sub = SUB_MS.exec(at);
    if (sub) t = Number(`${t}.${sub[1]}`);
  }
  return { ...doc, '@timestamp': t };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
