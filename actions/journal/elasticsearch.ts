import { createHash, randomUUID } from 'node:crypto';
import { Client, errors } from '@elastic/elasticsearch';
import { dailyIndex, indexTemplate } from '../../ingest/indexer/index.ts';
import type { Alert } from '../../rules/index.ts';
import type { Attempt, LedgerCounts, LedgerQuery, Silence, Suppression } from '../guards/index.ts';
import { validateMatchers } from '../guards/index.ts';
import type { Decision, DecisionKind, ListOptions, RemediationStore } from './types.ts';

/**
 * The distributed store, for workers that share an Elasticsearch cluster. The journal
 * goes to the `drover-actions` index family (daily indices, or a data stream where the
 * server has them; mapping from ingest/indexer/templates.ts), where Kibana reads it.
 * Claims, the attempt ledger, the kill switch, silences, notices and inhibitions live
 * in one state index, `<prefix>-remediation-state`.
 *
 * Idempotency is as strict as with SQLite: a claim is a document created with
 * `op_type: create`, which exactly one writer wins. Reservations are not: the ledger is
 * read (refreshed) and then appended, so two workers deciding in the same instant may
 * both take the last unit of a budget. Writes wait for a refresh, so a decision is
 * visible to the next one.
 */
export interface ElasticsearchStoreOptions {
  /** The server, e.g. http://localhost:9200 (or pass a client). */
  node?: string;
  client?: Client;
  /** Index name prefix, default `drover`. */
  prefix?: string;
}

type StateDoc = Record<string, unknown> & { kind: string };

const STATE_MAPPING = {
  dynamic: false,
  properties: {
    kind: { type: 'keyword' },
    at: { type: 'long' },
    until: { type: 'long' },
    rule: { type: 'keyword' },
    key_id: { type: 'keyword' },
    adapter: { type: 'keyword' },
    target: { type: 'keyword' },
    operation: { type: 'keyword' },
    group: { type: 'keyword' },
    shadow: { type: 'boolean' },
    claim_id: { type: 'keyword' },
    service: { type: 'keyword' },
  },
};

export class ElasticsearchStore implements RemediationStore {
  private readonly client: Client;
  private readonly ownsClient: boolean;
  readonly prefix: string;
  private dataStreams = false;

  constructor(options: ElasticsearchStoreOptions) {
    if (!options.client && !options.node)
      throw new Error('the Elasticsearch store needs a node URL or a client');
    this.client = options.client ?? new Client({ node: options.node!, requestTimeout: 30_000 });
    this.ownsClient = !options.client;
    this.prefix = options.prefix ?? 'drover';
  }

  get stateIndex(): string {
    return `${this.prefix}-remediation-state`;
  }

  get journalPattern(): string {
    return `${this.prefix}-actions*`;
  }

  /** Installs the journal's index template and creates the state index. Idempotent. */
  async init(): Promise<this> {
    try {
      await this.client.transport.request({ method: 'GET', path: '/_data_stream' });
      this.dataStreams = true;
    } catch {
      this.dataStreams = false; // a minimal server answers 405
    }
    await this.client.indices.putIndexTemplate({
      name: `${this.prefix}-actions`,
      ...(indexTemplate(this.prefix, 'actions', { dataStream: this.dataStreams }) as object),
    });
    try {
      await this.client.indices.create({
        index: this.stateIndex,
        settings: { number_of_shards: 1, number_of_replicas: 0 },
        mappings: STATE_MAPPING as never,
      });
    } catch (err) {
      if (!(
        err instanceof errors.ResponseError &&
        err.body?.error?.type === 'resource_already_exists_exception'
      ))
        throw err;
    }
    return this;
  }

  private journalIndex(at: number): string {
    return this.dataStreams ? `${this.prefix}-actions` : dailyIndex(this.prefix, 'actions', at);
  }

  /** Creates a state document; false when it exists already. */
  private async create(id: string, doc: StateDoc): Promise<boolean> {
    try {
      await this.client.index({
        index: this.stateIndex,
        id,
        op_type: 'create',
        document: doc,
        refresh: 'wait_for',
      });
      return true;
    } catch (err) {
      if (err instanceof errors.ResponseError && err.statusCode === 409) return false;
      throw err;
    }
  }

  private async getState(
    id: string,
  ): Promise<{ doc: StateDoc; seq: number; term: number } | undefined> {
    try {
      const res = await this.client.get<StateDoc>({ index: this.stateIndex, id });
      return { doc: res._source!, seq: res._seq_no!, term: res._primary_term! };
    } catch (err) {
      if (err instanceof errors.ResponseError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  async claim(id: string, at: number): Promise<boolean> {
    return this.create(`claim:${id}`, { kind: 'claim', claim_id: id, at });
  }

  async interruptedClaims(): Promise<Array<{ id: string; at: number }>> {
    const claims = await this.client.search<StateDoc>({
      index: this.stateIndex,
      size: 10_000,
      query: { term: { kind: 'claim' } },
      sort: [{ at: 'asc' }],
    });
    const ids = claims.hits.hits.map((h) => h._source!.claim_id as string);
    if (ids.length === 0) return [];
    const journaled = await this.client.search<{ id: string }>({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: 0,
      query: { terms: { id: ids } },
      aggs: { ids: { terms: { field: 'id', size: ids.length } } },
    });
    const seen = new Set(
      (journaled.aggregations?.ids as { buckets: Array<{ key: string }> } | undefined)?.buckets.map(
        (b) => b.key,
      ) ?? [],
    );
    return claims.hits.hits
      .map((h) => ({ id: h._source!.claim_id as string, at: h._source!.at as number }))
      .filter((c) => !seen.has(c.id));
  }

  async record(d: Decision): Promise<void> {
    await this.client.index({
      index: this.journalIndex(d.at),
      ...(this.dataStreams && { op_type: 'create' as const }),
      document: toDocument(d),
      refresh: 'wait_for',
    });
  }

  async list(options: ListOptions = {}): Promise<Decision[]> {
    const filter: unknown[] = [];
    if (options.since !== undefined) filter.push({ range: { at: { gte: options.since } } });
    if (options.rule !== undefined) filter.push({ term: { rule: options.rule } });
    const res = await this.client.search<Record<string, unknown>>({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: options.limit ?? 100,
      query: { bool: { filter: filter as never[] } },
      sort: [
        { at: { order: 'desc', unmapped_type: 'long' } },
        { seq: { order: 'desc', unmapped_type: 'long' } },
      ],
    });
    return res.hits.hits.map((h) => fromDocument(h._source!));
  }

  async ledger(q: LedgerQuery): Promise<LedgerCounts> {
    const since = (w: number) => ({ range: { at: { gt: q.now - w } } });
    const term = (field: string, value: unknown) => ({ term: { [field]: value } });
    const aggs: Record<string, unknown> = {
      last: {
        filter: { bool: { filter: [term('adapter', q.adapter), term('target', q.target)] } },
        aggs: { at: { max: { field: 'at' } } },
      },
    };
    q.ruleWindows.forEach((w, i) => {
      aggs[`rule${i}`] = { filter: { bool: { filter: [term('rule', q.rule), since(w)] } } };
    });
    q.globalWindows.forEach((w, i) => {
      aggs[`global${i}`] = { filter: since(w) };
    });
    q.breakerWindows.forEach((w, i) => {
      aggs[`key${i}`] = { filter: { bool: { filter: [term('key_id', q.keyId), since(w)] } } };
    });
    if (q.group !== undefined)
      aggs.group = {
        filter: {
          bool: {
            filter: [
              term('adapter', q.adapter),
              term('group', q.group),
              term('operation', 'kill-and-replace'),
              since(q.blastWindowMs),
            ],
          },
        },
        aggs: { targets: { terms: { field: 'target', size: 10_000 } } },
      };
    const res = await this.client.search({
      index: this.stateIndex,
      size: 0,
      query: { bool: { filter: [term('kind', 'attempt'), term('shadow', q.shadow)] } },
      aggs: aggs as never,
    });
    const a = res.aggregations as Record<string, { doc_count: number } & Record<string, never>>;
    const count = (name: string) => a[name]?.doc_count ?? 0;
    const last = (a.last as unknown as { at: { value: number | null } }).at.value;
    return {
      lastOnTarget: last ?? undefined,
      rule: q.ruleWindows.map((_, i) => count(`rule${i}`)),
      global: q.globalWindows.map((_, i) => count(`global${i}`)),
      key: q.breakerWindows.map((_, i) => count(`key${i}`)),
      groupTargets:
        q.group === undefined
          ? []
          : (
              a.group as unknown as { targets: { buckets: Array<{ key: string }> } }
            ).targets.buckets.map((b) => b.key),
    };
  }

  async reserve(
    attempt: Attempt,
    query: LedgerQuery,
    check: (counts: LedgerCounts) => Suppression | undefined,
  ): Promise<Suppression | undefined> {
    const verdict = check(await this.ledger(query));
    if (verdict) return verdict;
    await this.create(`attempt:${attempt.id}`, {
      kind: 'attempt',
      at: attempt.at,
      rule: attempt.rule,
      key_id: attempt.keyId,
      adapter: attempt.adapter,
      target: attempt.target,
      operation: attempt.operation,
      ...(attempt.group !== undefined && { group: attempt.group }),
      shadow: attempt.shadow,
    });
    return undefined;
  }

  async killSwitch(): Promise<boolean> {
    return (await this.getState('setting:kill_switch'))?.doc.on === true;
  }

  async setKillSwitch(on: boolean): Promise<void> {
    await this.client.index({
      index: this.stateIndex,
      id: 'setting:kill_switch',
      document: { kind: 'setting', on },
      refresh: 'wait_for',
    });
  }

  async addSilence(matchers: Record<string, string>, until: number, comment = ''): Promise<string> {
    validateMatchers(matchers);
    if (!Number.isFinite(until)) throw new Error('a silence needs an expiry time');
    const id = randomUUID();
    await this.create(`silence:${id}`, {
      kind: 'silence',
      silence_id: id,
      matchers,
      until,
      comment,
    });
    return id;
  }

  async silences(now: number): Promise<Silence[]> {
    const res = await this.client.search<StateDoc>({
      index: this.stateIndex,
      size: 10_000,
      query: {
        bool: { filter: [{ term: { kind: 'silence' } }, { range: { until: { gt: now } } }] },
      },
    });
    return res.hits.hits.map((h) => ({
      id: h._source!.silence_id as string,
      matchers: h._source!.matchers as Record<string, string>,
      until: h._source!.until as number,
      comment: (h._source!.comment as string) ?? '',
    }));
  }

  async removeSilence(id: number | string): Promise<boolean> {
    try {
      await this.client.delete({
        index: this.stateIndex,
        id: `silence:${id}`,
        refresh: 'wait_for',
      });
      return true;
    } catch (err) {
      if (err instanceof errors.ResponseError && err.statusCode === 404) return false;
      throw err;
    }
  }

  async noticeOnce(key: string, now: number, until: number): Promise<boolean> {
    const id = `notice:${createHash('sha256').update(key).digest('hex')}`;
    const existing = await this.getState(id);
    if (!existing) return this.create(id, { kind: 'notice', until });
    if ((existing.doc.until as number) > now) return false;
    try {
      // Only the writer that saw this version reopens the notice.
      await this.client.index({
        index: this.stateIndex,
        id,
        document: { kind: 'notice', until },
        if_seq_no: existing.seq,
        if_primary_term: existing.term,
        refresh: 'wait_for',
      });
      return true;
    } catch (err) {
      if (err instanceof errors.ResponseError && err.statusCode === 409) return false;
      throw err;
    }
  }

  async inhibit(service: string, until: number): Promise<void> {
    const id = `inhibit:${service}`;
    const existing = await this.getState(id);
    if (existing && (existing.doc.until as number) >= until) return;
    await this.client.index({
      index: this.stateIndex,
      id,
      document: { kind: 'inhibition', service, until },
      refresh: 'wait_for',
    });
  }

  async inhibitedUntil(service: string): Promise<number | undefined> {
    return (await this.getState(`inhibit:${service}`))?.doc.until as number | undefined;
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

let counter = 0;
/** Orders entries taken in the same millisecond, as the SQLite journal's rowid does. */
function nextSeq(at: number): number {
  counter = (counter + 1) % 1000;
  return at * 1000 + counter;
}

/** The journal entry as an ECS-flavoured document (mapping: ingest/indexer/templates.ts). */
function toDocument(d: Decision): Record<string, unknown> {
  return {
    '@timestamp': new Date(d.at).toISOString(),
    at: d.at,
    seq: nextSeq(d.at),
    id: d.id,
    decision: d.decision,
    ...(d.guard && { guard: d.guard }),
    ...(d.reason && { reason: d.reason }),
    adapter: d.adapter,
    operation: d.operation,
    target: d.target,
    rule: d.rule,
    alert: { id: d.alertId },
    ...(d.error && { error: { message: d.error } }),
    ...(d.durationMs !== undefined && { duration_ms: d.durationMs }),
    ...(d.result && { result: d.result }),
    // Keys, params and alerts vary in shape from rule to rule: kept whole, as JSON, so
    // one rule's fields can never clash with another's in the mapping.
    key_json: JSON.stringify(d.key),
    ...(d.params && { params_json: JSON.stringify(d.params) }),
    ...(d.alert && { alert_json: JSON.stringify(d.alert) }),
  };
}

function fromDocument(s: Record<string, unknown>): Decision {
  const d: Decision = {
    id: s.id as string,
    at: s.at as number,
    alertId: (s.alert as { id: string }).id,
    rule: s.rule as string,
    key: JSON.parse(s.key_json as string) as Record<string, unknown>,
    adapter: s.adapter as string,
    operation: s.operation as string,
    target: s.target as string,
    decision: s.decision as DecisionKind,
  };
  if (s.params_json) d.params = JSON.parse(s.params_json as string) as Record<string, unknown>;
  if (s.guard) d.guard = s.guard as string;
  if (s.reason) d.reason = s.reason as string;
  if (s.result) d.result = s.result as Record<string, unknown>;
  if (s.error) d.error = (s.error as { message: string }).message;
  if (s.duration_ms !== undefined) d.durationMs = s.duration_ms as number;
  if (s.alert_json) d.alert = JSON.parse(s.alert_json as string) as Alert;
  return d;
}

/** Connects, installs the journal template and the state index, and returns the store. */
export function createElasticsearchStore(
  options: ElasticsearchStoreOptions,
): Promise<ElasticsearchStore> {
  return new ElasticsearchStore(options).init();
}
