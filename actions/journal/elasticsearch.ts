import { createHash, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Client } from '@elastic/elasticsearch';
import type * as Elastic from '@elastic/elasticsearch';
import { dailyIndex, indexTemplate } from '../../ingest/index/templates.ts';
import type { Alert } from '../../rules/index.ts';
import type {
  Attempt,
  Inhibitor,
  LedgerCounts,
  LedgerQuery,
  Silence,
  Suppression,
} from '../guards/index.ts';
import { INEFFECTIVE_OPERATION, validateMatchers } from '../guards/index.ts';
import type { PruneResult, Verification } from './types.ts';
import type { ClaimFence, Decision, DecisionKind, ListOptions, RemediationStore } from './types.ts';
import { MAX_JOURNALED_IDS } from './types.ts';

/**
 * The distributed store, for workers that share an Elasticsearch cluster. The journal
 * goes to the `drover-actions` index family (daily indices, or a data stream where the
 * server has them; mapping from ingest/index/templates.ts), where Kibana reads it.
 * Claims, the attempt ledger, the kill switch, silences, notices and inhibitions live
 * in one state index, `<prefix>-remediation-state`.
 *
 * Idempotency is as strict as with SQLite: a claim is a document created with
 * `op_type: create`, which exactly one writer wins. Reservations are serialized across
 * workers by a lease (`lock:reserve`, also created with `op_type: create`): the ledger
 * is read and the attempt appended (and refreshed) while the lease is held, so two
 * workers cannot both take the last unit of a budget. A worker that dies holding the
 * lease blocks the others for at most `lockLeaseMs`, after which its lease is taken
 * over. Everything a later search must see is refreshed before the write returns.
 *
 * A claim is marked journaled when its decision is recorded, so a claim reported as
 * interrupted means a crash between claiming and journaling — not a journal index that
 * retention has since deleted.
 */
export interface ElasticsearchStoreOptions {
  /** The server, e.g. http://localhost:9200 (or pass a client). */
  node?: string;
  client?: Client;
  /** Index name prefix, default `drover`. */
  prefix?: string;
  /** How long a reservation lease lasts before another worker may take it over (30 s). */
  lockLeaseMs?: number;
  /** How long reserve() waits for the lease before failing (30 s). */
  lockWaitMs?: number;
  /** Claims checked per request by interruptedClaims() (1000). */
  pageSize?: number;
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
    journaled: { type: 'boolean' },
    silence_id: { type: 'keyword' },
    service: { type: 'keyword' },
  },
};

const RESERVE_LOCK = 'lock:reserve';

const isStatus = (err: unknown, ...codes: number[]) =>
  err instanceof elastic().errors.ResponseError && codes.includes(err.statusCode ?? 0);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The client library is loaded when an Elasticsearch store or indexer is first made, not
// when Drover starts (most configurations use the embedded back ends).
const requireLib = createRequire(import.meta.url);
let elasticLib: typeof Elastic | undefined;
function elastic(): typeof Elastic {
  return (elasticLib ??= requireLib('@elastic/elasticsearch') as typeof Elastic);
}

export class ElasticsearchStore implements RemediationStore {
  private readonly client: Client;
  private readonly ownsClient: boolean;
  readonly prefix: string;
  private dataStreams = false;
  private readonly lockLeaseMs: number;
  private readonly lockWaitMs: number;
  private readonly pageSize: number;

  constructor(options: ElasticsearchStoreOptions) {
    if (!options.client && !options.node)
      throw new Error('the Elasticsearch store needs a node URL or a client');
    this.client =
      options.client ?? new (elastic().Client)({ node: options.node!, requestTimeout: 30_000 });
    this.ownsClient = !options.client;
    this.prefix = options.prefix ?? 'drover';
    this.lockLeaseMs = options.lockLeaseMs ?? 30_000;
    this.lockWaitMs = options.lockWaitMs ?? 30_000;
    this.pageSize = options.pageSize ?? 1_000;
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
    } catch (err) {
      // A server without data streams has no such endpoint (400, 404 or 405); anything
      // else (no server at all) is an error, not a missing feature.
      if (!isStatus(err, 400, 404, 405)) throw err;
      this.dataStreams = false;
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
        err instanceof elastic().errors.ResponseError &&
        (err.body as { error?: { type?: unknown } } | undefined)?.error?.type ===
          'resource_already_exists_exception'
      ))
        throw err;
      // A state index from an earlier version gains the fields added since.
      await this.client.indices.putMapping({
        index: this.stateIndex,
        properties: STATE_MAPPING.properties as never,
      });
    }
    return this;
  }

  private journalIndex(at: number): string {
    return this.dataStreams ? `${this.prefix}-actions` : dailyIndex(this.prefix, 'actions', at);
  }

  /**
   * Creates a state document; undefined when it exists already. `searchable` when a later
   * search must find it (a get by id always does).
   */
  private async create(
    id: string,
    doc: StateDoc,
    searchable = false,
  ): Promise<{ seq: number; term: number } | undefined> {
    try {
      const res = await this.client.index({
        index: this.stateIndex,
        id,
        op_type: 'create',
        document: doc,
        refresh: searchable,
      });
      return { seq: res._seq_no!, term: res._primary_term! };
    } catch (err) {
      if (isStatus(err, 409)) return undefined;
      throw err;
    }
  }

  /** Replaces a state document only if it is still the version read; undefined if not. */
  private async replace(
    id: string,
    doc: StateDoc,
    version: { seq: number; term: number },
  ): Promise<{ seq: number; term: number } | undefined> {
    try {
      const res = await this.client.index({
        index: this.stateIndex,
        id,
        document: doc,
        if_seq_no: version.seq,
        if_primary_term: version.term,
      });
      return { seq: res._seq_no!, term: res._primary_term! };
    } catch (err) {
      if (isStatus(err, 409)) return undefined;
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
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  async claim(id: string, at: number, fence?: ClaimFence): Promise<boolean> {
    if (fence && !(await this.seeGeneration(fence))) return false;
    return (await this.create(`claim:${id}`, { kind: 'claim', claim_id: id, at })) !== undefined;
  }

  /**
   * Records the fence's generation as its task's latest (a `task:<n>` state document,
   * replaced only at the version read); false when a newer one is on record. Not one
   * step with the claim that follows: a newer generation recorded between the two lets
   * that one stale claim through (the window is one request).
   */
  private async seeGeneration(fence: ClaimFence): Promise<boolean> {
    const id = `task:${fence.task}`;
    for (;;) {
      const current = await this.getState(id);
      const seen = current ? Number(current.doc.generation) : undefined;
      if (seen !== undefined && seen > fence.generation) return false;
      if (seen === fence.generation) return true;
      const doc = { kind: 'task', generation: fence.generation };
      const written = current ? await this.replace(id, doc, current) : await this.create(id, doc);
      if (written) return true;
      // Another worker wrote in between: read again.
    }
  }

  async interruptedClaims(): Promise<Array<{ id: string; at: number }>> {
    await this.client.indices.refresh({ index: this.stateIndex });
    const interrupted: Array<{ id: string; at: number }> = [];
    let after: unknown[] | undefined;
    // Every claim not marked journaled, a page at a time, checked against the journal
    // (claims from before the mark existed, or a crash between journaling and marking).
    for (;;) {
      const page = await this.client.search<StateDoc>({
        index: this.stateIndex,
        size: this.pageSize,
        query: {
          bool: {
            filter: [{ term: { kind: 'claim' } }],
            must_not: [{ term: { journaled: true } }],
          },
        },
        sort: [{ at: 'asc' }, { claim_id: 'asc' }],
        ...(after && { search_after: after as never }),
      });
      const hits = page.hits.hits;
      if (hits.length === 0) break;
      const claims = hits.map((h) => ({
        id: h._source!.claim_id as string,
        at: h._source!.at as number,
      }));
      const journaled = await this.client.search({
        index: this.journalPattern,
        ignore_unavailable: true,
        allow_no_indices: true,
        size: 0,
        query: { terms: { id: claims.map((c) => c.id) } },
        aggs: { ids: { terms: { field: 'id', size: claims.length } } },
      });
      const seen = new Set(
        (
          journaled.aggregations?.ids as { buckets: Array<{ key: string }> } | undefined
        )?.buckets.map((b) => b.key) ?? [],
      );
      interrupted.push(...claims.filter((c) => !seen.has(c.id)));
      if (hits.length < this.pageSize) break;
      after = hits.at(-1)!.sort;
    }
    return interrupted;
  }

  async record(d: Decision): Promise<void> {
    await this.client.index({
      index: this.journalIndex(d.at),
      ...(this.dataStreams && { op_type: 'create' as const }),
      document: toDocument(d),
      refresh: 'wait_for',
    });
    // The claim's decision is on record (not every decision has a claim).
    try {
      await this.client.update({
        index: this.stateIndex,
        id: `claim:${d.id}`,
        doc: { journaled: true },
        retry_on_conflict: 3,
      });
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  async list(options: ListOptions = {}): Promise<Decision[]> {
    const filter: unknown[] = [];
    if (options.since !== undefined) filter.push({ range: { at: { gte: options.since } } });
    if (options.rule !== undefined) filter.push({ term: { rule: options.rule } });
    if (options.alertId !== undefined) filter.push({ term: { 'alert.id': options.alertId } });
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

  async grouped(since: number, limit: number): Promise<Decision[]> {
    const res = await this.client.search<Record<string, unknown>>({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: Math.min(limit, 10_000),
      query: {
        bool: {
          filter: [
            { term: { guard: 'group' } },
            { term: { decision: 'suppressed' } },
            { range: { at: { gte: since } } },
          ],
        },
      },
      sort: [
        { at: { order: 'desc', unmapped_type: 'long' } },
        { seq: { order: 'desc', unmapped_type: 'long' } },
      ],
    });
    return res.hits.hits.map((h) => fromDocument(h._source!)).reverse();
  }

  async journaled(ids: string[]): Promise<Set<string>> {
    if (ids.length > MAX_JOURNALED_IDS)
      throw new Error(`journaled() answers for at most ${MAX_JOURNALED_IDS} ids at once`);
    if (ids.length === 0) return new Set();
    const res = await this.client.search<{ id: string }>({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: 0,
      query: { bool: { filter: [{ terms: { id: ids } }] } },
      aggs: { ids: { terms: { field: 'id', size: ids.length } } },
    });
    const buckets = (res.aggregations?.ids as { buckets?: Array<{ key: string }> } | undefined)
      ?.buckets;
    return new Set((buckets ?? []).map((b) => b.key));
  }

  async pendingVerifications(limit: number): Promise<Decision[]> {
    const res = await this.client.search<Record<string, unknown>>({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: Math.min(limit, 10_000),
      query: { bool: { filter: [{ term: { 'verification.outcome': 'pending' } }] } },
      sort: [
        { at: { order: 'asc', unmapped_type: 'long' } },
        { seq: { order: 'asc', unmapped_type: 'long' } },
      ],
    });
    return res.hits.hits.map((h) => fromDocument(h._source!));
  }

  /**
   * Compare and set on the entry's document (in its daily or backing index): only the
   * writer that saw it pending ends it; a second one gets a version conflict.
   */
  async settleVerification(id: string, verification: Verification): Promise<boolean> {
    const res = await this.client.search({
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: 10,
      seq_no_primary_term: true,
      query: {
        bool: {
          filter: [{ term: { id } }, { term: { 'verification.outcome': 'pending' } }],
        },
      },
      _source: false,
    });
    let settled = false;
    for (const h of res.hits.hits) {
      try {
        await this.client.update({
          index: h._index,
          id: h._id!,
          if_seq_no: h._seq_no!,
          if_primary_term: h._primary_term!,
          doc: verificationFields(verification),
          refresh: 'wait_for',
        });
        settled = true;
      } catch (err) {
        if (!isStatus(err, 404, 409)) throw err;
      }
    }
    return settled;
  }

  async ledger(q: LedgerQuery): Promise<LedgerCounts> {
    const since = (w: number) => ({ range: { at: { gt: q.now - w } } });
    const term = (field: string, value: unknown) => ({ term: { [field]: value } });
    // Notifications and remediations are counted apart (the storm cap counts both).
    const notify = term('operation', 'notify');
    // Ineffective verdicts (INEFFECTIVE_OPERATION) count for the breaker (key) only.
    const ineffective = term('operation', INEFFECTIVE_OPERATION);
    const ofClass = (...filter: unknown[]) => ({
      bool: q.notify
        ? { filter: [...filter, notify] }
        : { filter, must_not: [notify, ineffective] },
    });
    const ofKey = (...filter: unknown[]) => ({
      bool: q.notify ? { filter: [...filter, notify] } : { filter, must_not: [notify] },
    });
    const aggs: Record<string, unknown> = {
      last: {
        filter: ofClass(term('adapter', q.adapter), term('target', q.target)),
        aggs: { at: { max: { field: 'at' } } },
      },
    };
    q.ruleWindows.forEach((w, i) => {
      aggs[`rule${i}`] = { filter: ofClass(term('rule', q.rule), since(w)) };
    });
    q.globalWindows.forEach((w, i) => {
      aggs[`global${i}`] = { filter: ofClass(since(w)) };
    });
    q.breakerWindows.forEach((w, i) => {
      aggs[`key${i}`] = { filter: ofKey(term('key_id', q.keyId), since(w)) };
    });
    // Bounded by the storm cap itself: at most its max distinct keys per rule and window,
    // well under the precision threshold, below which the count is exact in practice.
    (q.stormWindows ?? []).forEach((w, i) => {
      aggs[`stormOthers${i}`] = {
        filter: {
          bool: {
            filter: [term('rule', q.rule), since(w)],
            must_not: [term('key_id', q.keyId), ineffective],
          },
        },
        aggs: { keys: { cardinality: { field: 'key_id', precision_threshold: 10_000 } } },
      };
      aggs[`stormThis${i}`] = {
        filter: {
          bool: {
            filter: [term('rule', q.rule), term('key_id', q.keyId), since(w)],
            must_not: [ineffective],
          },
        },
      };
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
      query: {
        bool: { filter: [term('kind', 'attempt'), term('shadow', q.shadow)] },
      },
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
      ...(q.stormWindows && {
        storm: q.stormWindows.map((_, i) => ({
          otherKeys: (a[`stormOthers${i}`] as unknown as { keys: { value: number } }).keys.value,
          thisKey: count(`stormThis${i}`) > 0,
        })),
      }),
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
    return this.withReserveLock(async () => {
      const verdict = check(await this.ledger(query));
      if (verdict) return verdict;
      await this.create(
        `attempt:${attempt.id}`,
        {
          kind: 'attempt',
          at: attempt.at,
          rule: attempt.rule,
          key_id: attempt.keyId,
          adapter: attempt.adapter,
          target: attempt.target,
          operation: attempt.operation,
          ...(attempt.group !== undefined && { group: attempt.group }),
          shadow: attempt.shadow,
        },
        true, // the next reservation's ledger must count it
      );
      return undefined;
    });
  }

  /**
   * Runs `fn` holding the reservation lease: one worker at a time checks the ledger and
   * appends to it. A lease past its expiry (its holder died) is taken over.
   */
  private async withReserveLock<T>(fn: () => Promise<T>): Promise<T> {
    const owner = randomUUID();
    const deadline = Date.now() + this.lockWaitMs;
    const lease = () => ({ kind: 'lock', owner, until: Date.now() + this.lockLeaseMs });
    let held: { seq: number; term: number } | undefined;
    for (let round = 0; !held; round++) {
      held = await this.create(RESERVE_LOCK, lease());
      if (held) break;
      const current = await this.getState(RESERVE_LOCK);
      if (!current) continue; // released meanwhile
      if ((current.doc.until as number) <= Date.now()) {
        held = await this.replace(RESERVE_LOCK, lease(), current);
        if (held) break;
        continue;
      }
      if (Date.now() >= deadline)
        throw new Error(
          `waited ${this.lockWaitMs} ms for the reservation lock of ${this.stateIndex}, held by another worker`,
        );
      await sleep(Math.min(5 * 2 ** round, 100) * (0.5 + Math.random()));
    }
    try {
      return await fn();
    } finally {
      // Only our own lease: if it expired and was taken over, it is not ours to delete.
      await this.client
        .delete({
          index: this.stateIndex,
          id: RESERVE_LOCK,
          if_seq_no: held.seq,
          if_primary_term: held.term,
        })
        .catch((err: unknown) => {
          if (!isStatus(err, 404, 409)) throw err;
        });
    }
  }

  async killSwitch(): Promise<boolean> {
    return (await this.getState('setting:kill_switch'))?.doc.on === true;
  }

  async setKillSwitch(on: boolean): Promise<void> {
    await this.client.index({
      index: this.stateIndex,
      id: 'setting:kill_switch',
      document: { kind: 'setting', on },
    });
  }

  async addSilence(
    matchers: Record<string, string>,
    until: number,
    comment = '',
    options: { expireOnResolve?: boolean } = {},
  ): Promise<string> {
    validateMatchers(matchers);
    if (!Number.isFinite(until)) throw new Error('a silence needs an expiry time');
    const id = randomUUID();
    await this.create(
      `silence:${id}`,
      {
        kind: 'silence',
        silence_id: id,
        at: Date.now(),
        matchers,
        until,
        comment,
        ...(options.expireOnResolve && { expire_on_resolve: true }),
      },
      true,
    );
    return id;
  }

  async silences(now: number): Promise<Silence[]> {
    const res = await this.client.search<StateDoc>({
      index: this.stateIndex,
      size: 10_000,
      query: {
        bool: { filter: [{ term: { kind: 'silence' } }, { range: { until: { gt: now } } }] },
      },
      // In the order they were added, as with SQLite.
      sort: [
        { at: { order: 'asc', unmapped_type: 'long' } },
        { silence_id: { order: 'asc', unmapped_type: 'keyword' } },
      ],
    });
    return res.hits.hits.map((h) => ({
      id: h._source!.silence_id as string,
      matchers: h._source!.matchers as Record<string, string>,
      until: h._source!.until as number,
      comment: (h._source!.comment as string) ?? '',
      ...(h._source!.expire_on_resolve === true && { expireOnResolve: true }),
    }));
  }

  async removeSilence(id: number | string): Promise<boolean> {
    try {
      await this.client.delete({
        index: this.stateIndex,
        id: `silence:${id}`,
        refresh: true,
      });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      throw err;
    }
  }

  async noticeOnce(key: string, now: number, until: number): Promise<boolean> {
    const id = `notice:${createHash('sha256').update(key).digest('hex')}`;
    const existing = await this.getState(id);
    if (!existing) return (await this.create(id, { kind: 'notice', until })) !== undefined;
    if ((existing.doc.until as number) > now) return false;
    // Only the writer that saw this version reopens the notice.
    return (await this.replace(id, { kind: 'notice', until }, existing)) !== undefined;
  }

  async inhibit(service: string, until: number): Promise<void> {
    const id = `inhibit:${service}`;
    const doc = { kind: 'inhibition', service, until };
    // Compare and set: of two workers inhibiting at once, the later expiry stands.
    for (;;) {
      const existing = await this.getState(id);
      if (!existing) {
        if (await this.create(id, doc)) return;
        continue;
      }
      if ((existing.doc.until as number) >= until) return;
      if (await this.replace(id, doc, existing)) return;
    }
  }

  private inhibitorId(service: string, firing: string): string {
    return `inhibitor:${createHash('sha256').update(`${service}\u0000${firing}`).digest('hex')}`;
  }

  async inhibitFiring(
    service: string,
    firing: string,
    alert: string,
    until: number,
  ): Promise<void> {
    const id = this.inhibitorId(service, firing);
    const existing = await this.getState(id);
    const doc = {
      kind: 'inhibitor',
      service,
      alert_id: alert,
      until: Math.max(until, (existing?.doc.until as number | undefined) ?? 0),
    };
    await this.client.index({ index: this.stateIndex, id, document: doc, refresh: true });
  }

  async releaseFiring(service: string, firing: string): Promise<void> {
    await this.client
      .delete({ index: this.stateIndex, id: this.inhibitorId(service, firing), refresh: true })
      .catch((err: unknown) => {
        if (!isStatus(err, 404)) throw err;
      });
  }

  async inhibitors(service: string, now: number): Promise<Inhibitor[]> {
    const res = await this.client.search<StateDoc>({
      index: this.stateIndex,
      size: 100,
      query: {
        bool: {
          filter: [
            { term: { kind: 'inhibitor' } },
            { term: { service } },
            { range: { until: { gt: now } } },
          ],
        },
      },
      sort: [{ until: { order: 'desc' } }],
    });
    return res.hits.hits.map((h) => ({
      alert: h._source!.alert_id as string,
      until: h._source!.until as number,
    }));
  }

  async inhibitedUntil(service: string): Promise<number | undefined> {
    return (await this.getState(`inhibit:${service}`))?.doc.until as number | undefined;
  }

  /**
   * Retention: the journal's entries older than `maxAgeMs`, then the oldest beyond
   * `maxEntries`, found a slice at a time (oldest first by `seq`) and deleted by id with
   * _bulk, so no request handles more than a slice and no server module beyond the
   * core is needed (delete_by_query lives in the reindex module, which a slim server may
   * lack). Works alike on daily indices and on a data stream's backing indices.
   */
  async prune(options: {
    now: number;
    maxAgeMs: number;
    maxEntries: number;
    slice?: number;
  }): Promise<PruneResult> {
    const slice = Math.min(options.slice ?? 10_000, 10_000);
    const cutoff = options.now - options.maxAgeMs;
    const journal = {
      index: this.journalPattern,
      ignore_unavailable: true,
      allow_no_indices: true,
    };
    /** Deletes up to `size` hits of the query, oldest first; how many it deleted. */
    const removeSlice = async (index: string, query: unknown, size: number, sort: string) => {
      const res = await this.client.search({
        index,
        ignore_unavailable: true,
        allow_no_indices: true,
        size,
        query: query as never,
        sort: [{ [sort]: { order: 'asc', unmapped_type: 'long' } }],
        _source: false,
      });
      const hits = res.hits.hits;
      if (hits.length === 0) return 0;
      const bulk = await this.client.bulk({
        refresh: true,
        operations: hits.map((h) => ({ delete: { _index: h._index, _id: h._id! } })),
      });
      return bulk.items.filter((it) => it.delete?.status === 200).length;
    };
    let entries = 0;
    for (;;) {
      const n = await removeSlice(
        this.journalPattern,
        { range: { at: { lt: cutoff } } },
        slice,
        'seq',
      );
      entries += n;
      if (n === 0) break;
    }
    for (;;) {
      const excess = (await this.client.count(journal)).count - options.maxEntries;
      if (excess <= 0) break;
      const n = await removeSlice(
        this.journalPattern,
        { match_all: {} },
        Math.min(excess, slice),
        'seq',
      );
      entries += n;
      if (n === 0) break;
    }
    // Claims go with their entries (older than the oldest kept); attempts by age only.
    const oldest = await this.client.search<{ at: number }>({
      ...journal,
      size: 1,
      sort: [{ at: { order: 'asc', unmapped_type: 'long' } }],
      _source: ['at'],
    });
    const claimsBefore = oldest.hits.hits[0]?._source?.at ?? cutoff;
    const stale = {
      bool: {
        should: [
          { bool: { filter: [{ term: { kind: 'attempt' } }, { range: { at: { lt: cutoff } } }] } },
          {
            bool: {
              filter: [{ term: { kind: 'claim' } }, { range: { at: { lt: claimsBefore } } }],
            },
          },
          // Inhibitors whose firing never resolved, once their cap passed.
          {
            bool: {
              filter: [{ term: { kind: 'inhibitor' } }, { range: { until: { lte: options.now } } }],
            },
          },
        ],
        minimum_should_match: 1,
      },
    };
    while ((await removeSlice(this.stateIndex, stale, slice, 'at')) > 0);
    return { entries };
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

/** The journal entry as an ECS-flavoured document (mapping: ingest/index/templates.ts). */
function toDocument(d: Decision): Record<string, unknown> {
  return {
    '@timestamp': new Date(d.at).toISOString(),
    at: d.at,
    seq: nextSeq(d.at),
    id: d.id,
    decision: d.decision,
    ...(d.guard && { guard: d.guard }),
    ...(d.reason && { reason: d.reason }),
    ...(d.notification && { notification: d.notification }),
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
    ...(d.verification && verificationFields(d.verification)),
    ...(d.guards && d.guards.length > 0 && { guards_json: JSON.stringify(d.guards) }),
  };
}

/**
 * A verification as document fields: its outcome searchable (pending ones are looked up
 * at start), the rest as JSON (its `on_ineffective` action varies in shape).
 */
function verificationFields(v: Verification): Record<string, unknown> {
  return { verification: { outcome: v.outcome }, verification_json: JSON.stringify(v) };
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
  if (typeof s.notification === 'string') d.notification = s.notification;
  if (s.result) d.result = s.result as Record<string, unknown>;
  if (s.error) d.error = (s.error as { message: string }).message;
  if (s.duration_ms !== undefined) d.durationMs = s.duration_ms as number;
  if (s.alert_json) d.alert = JSON.parse(s.alert_json as string) as Alert;
  if (s.verification_json)
    d.verification = JSON.parse(s.verification_json as string) as Verification;
  if (s.guards_json) d.guards = JSON.parse(s.guards_json as string) as Decision['guards'];
  return d;
}

/** Connects, installs the journal template and the state index, and returns the store. */
export function createElasticsearchStore(
  options: ElasticsearchStoreOptions,
): Promise<ElasticsearchStore> {
  return new ElasticsearchStore(options).init();
}
