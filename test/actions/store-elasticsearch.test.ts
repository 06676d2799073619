import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type Adapter,
  createRemediator,
  type Decision,
  ElasticsearchStore,
  type ElasticsearchStoreOptions,
  ExecAdapter,
  listJournal,
} from '../../actions/index.ts';
import type { Attempt, LedgerCounts, LedgerQuery } from '../../actions/guards/index.ts';
import type { Alert } from '../../rules/index.ts';

const url = inject('elasticsearchUrl');
const reason = inject('serverSkipReasons').elasticsearch;
const T = Date.parse('2024-01-01T00:00:00Z');

const decision = (over: Partial<Decision> = {}): Decision => ({
  id: 'a1#0',
  at: T,
  alertId: 'a1',
  rule: 'web-errors',
  key: { 'host.name': 'web-1' },
  adapter: 'fleet',
  operation: 'kill-and-replace',
  target: 'web-1',
  decision: 'executed',
  result: { killed: { pid: 12 } },
  durationMs: 840,
  ...over,
});

const query = (over: Partial<LedgerQuery> = {}): LedgerQuery => ({
  now: T,
  shadow: false,
  rule: 'web-errors',
  keyId: 'k',
  adapter: 'fleet',
  target: 'web-1',
  ruleWindows: [60_000],
  globalWindows: [60_000],
  breakerWindows: [600_000],
  blastWindowMs: 600_000,
  ...over,
});

const attempt = (over: Partial<Attempt> = {}): Attempt => ({
  id: 'a1#0',
  at: T,
  rule: 'web-errors',
  keyId: 'k',
  adapter: 'fleet',
  target: 'web-1',
  operation: 'kill-and-replace',
  shadow: false,
  ...over,
});

/** A rule budget of one: the check the remediator passes to reserve(). */
const budgetOfOne = (c: LedgerCounts) =>
  (c.rule[0] ?? 0) >= 1 ? { guard: 'budget' as const, reason: 'used' } : undefined;

describe.skipIf(!url)(
  `Elasticsearch remediation store against a real server${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    // One prefix per file, one sub-prefix per test: runs and tests never share state.
    const prefix = `t${randomUUID().slice(0, 8)}`;
    let n = 0;
    const fresh = () => `${prefix}-${++n}`;
    const opened: ElasticsearchStore[] = [];
    let es: Client;

    /** A worker's store: its own client, as a separate process would have. */
    async function open(p: string, options: Partial<ElasticsearchStoreOptions> = {}) {
      const store = await new ElasticsearchStore({ node: url!, prefix: p, ...options }).init();
      opened.push(store);
      return store;
    }

    beforeAll(() => {
      es = new Client({ node: url! });
    });
    afterAll(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      await es?.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es?.indices.deleteIndexTemplate({ name: `${prefix}-*` }).catch(() => {});
      await es?.close();
    });

    it('detects a server without data streams: the journal goes to daily indices with the ECS mapping', async () => {
      const p = fresh();
      const store = await open(p);
      const { index_templates } = await es.indices.getIndexTemplate({ name: `${p}-actions` });
      expect(index_templates[0]!.index_template.index_patterns).toEqual([`${p}-actions-*`]);
      expect(index_templates[0]!.index_template.data_stream).toBeUndefined();
      await store.record(decision());
      const index = `${p}-actions-2024.01.01`;
      const mapping = await es.indices.getMapping({ index });
      const props = mapping[index]!.mappings.properties as Record<string, { type?: string }>;
      expect(props.rule!.type).toBe('keyword');
      expect(props.decision!.type).toBe('keyword');
      expect(props['@timestamp']!.type).toBe('date');
      expect(props.at!.type).toBe('long');
      expect((await es.indices.exists({ index: `${p}-remediation-state` })) as boolean).toBe(true);
      // init() is idempotent: a second worker (or a restart) installs the same again.
      await open(p);
    });

    it('refuses to start without a server, rather than guessing its features', async () => {
      const store = new ElasticsearchStore({ node: 'http://127.0.0.1:9', prefix: fresh() });
      await expect(store.init()).rejects.toThrow();
      await store.close();
      expect(() => new ElasticsearchStore({})).toThrow(/node URL or a client/);
    });

    it('journal: a decision round-trips whole; list is newest first, filtered by since, rule and limit', async () => {
      const store = await open(fresh());
      expect(await store.list()).toEqual([]); // no journal index yet
      const alert: Alert = {
        id: 'a1',
        rule: 'web-errors',
        type: 'frequency',
        key: { 'host.name': 'web-1' },
        at: '2024-01-01T00:00:00.000Z',
        figures: { count: 3 },
        labels: { team: 'platform' },
        actions: [],
      };
      const first = decision({ params: { by: 2 }, alert });
      await store.record(first);
      await store.record(
        decision({
          id: 'a2#0',
          alertId: 'a2',
          at: T + 1_000,
          decision: 'suppressed',
          guard: 'cooldown',
          reason: 'web-1 was acted on 1s ago (cooldown 300s)',
          result: undefined,
          durationMs: undefined,
        }),
      );
      await store.record(
        decision({
          id: 'a3#0',
          alertId: 'a3',
          rule: 'api-latency',
          at: T + 2_000,
          decision: 'failed',
          error: 'no running replica',
          result: undefined,
        }),
      );
      // Two decisions in the same millisecond: the later one first, as with SQLite.
      await store.record(decision({ id: 'a4#0', alertId: 'a4', at: T + 2_000, rule: 'x' }));
      await store.record(decision({ id: 'a4#1', alertId: 'a4', at: T + 2_000, rule: 'x' }));

      const all = await store.list();
      expect(all.map((d) => d.id)).toEqual(['a4#1', 'a4#0', 'a3#0', 'a2#0', 'a1#0']);
      expect(all.at(-1)).toEqual(first);
      expect(all[2]).toEqual(
        decision({
          id: 'a3#0',
          alertId: 'a3',
          rule: 'api-latency',
          at: T + 2_000,
          decision: 'failed',
          error: 'no running replica',
          result: undefined,
        }),
      );
      expect((await store.list({ since: T + 1_000, rule: 'web-errors' })).map((d) => d.id)).toEqual(
        ['a2#0'],
      );
      expect((await store.list({ since: T + 2_000 })).map((d) => d.id)).toEqual([
        'a4#1',
        'a4#0',
        'a3#0',
      ]);
      expect((await store.list({ rule: 'web-errors', limit: 1 })).map((d) => d.id)).toEqual([
        'a2#0',
      ]);
      expect((await listJournal(store, { limit: 2 })).map((d) => d.id)).toEqual(['a4#1', 'a4#0']);
    });

    it('claims: a key is claimed once, by one worker, even when two race for it', async () => {
      const p = fresh();
      const one = await open(p);
      const two = await open(p);
      expect(await one.claim('a1#0', T)).toBe(true);
      expect(await one.claim('a1#0', T)).toBe(false); // a replay
      expect(await two.claim('a1#0', T)).toBe(false); // another worker
      for (let i = 0; i < 10; i++) {
        const id = `race-${i}#0`;
        const results = await Promise.all([
          one.claim(id, T),
          two.claim(id, T),
          one.claim(id, T),
          two.claim(id, T),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
      }
    });

    it('reports claims that never got a journal entry (a crash mid-action), page by page', async () => {
      const p = fresh();
      const store = await open(p, { pageSize: 3 });
      for (let i = 0; i < 10; i++) await store.claim(`a${i}#0`, i);
      for (const i of [0, 2, 3, 4, 5, 9]) await store.record(decision({ id: `a${i}#0`, at: i }));
      expect(await store.interruptedClaims()).toEqual([
        { id: 'a1#0', at: 1 },
        { id: 'a6#0', at: 6 },
        { id: 'a7#0', at: 7 },
        { id: 'a8#0', at: 8 },
      ]);
      // Retention deleting old journal indices does not turn journaled claims into
      // interrupted ones.
      await es.indices.delete({ index: `${p}-actions-*` });
      expect((await store.interruptedClaims()).map((c) => c.id)).toEqual([
        'a1#0',
        'a6#0',
        'a7#0',
        'a8#0',
      ]);
    });

    it('reserve: the check sees the ledger, a failing check appends nothing, windows slide, dry-run counts apart', async () => {
      const store = await open(fresh());
      expect(await store.ledger(query({ group: 'web' }))).toEqual({
        lastOnTarget: undefined,
        rule: [0],
        global: [0],
        key: [0],
        groupTargets: [],
      });
      expect(await store.reserve(attempt({ group: 'web' }), query(), budgetOfOne)).toBeUndefined();
      expect(
        await store.reserve(attempt({ id: 'a2#0', target: 'web-2' }), query(), budgetOfOne),
      ).toEqual({ guard: 'budget', reason: 'used' });
      expect(await store.ledger(query({ now: T + 1_000, group: 'web' }))).toEqual({
        lastOnTarget: T,
        rule: [1],
        global: [1],
        key: [1],
        groupTargets: ['web-1'],
      });
      // Exactly one window later the attempt no longer counts; the cooldown's last
      // action on the target stays.
      expect(await store.ledger(query({ now: T + 60_000 }))).toMatchObject({
        lastOnTarget: T,
        rule: [0],
        global: [0],
        key: [1],
      });
      // Dry-run attempts are a ledger of their own.
      await store.reserve(attempt({ id: 's#0', shadow: true }), query(), () => undefined);
      expect(await store.ledger(query({ shadow: true }))).toMatchObject({
        lastOnTarget: T,
        rule: [1],
      });
      expect((await store.ledger(query())).rule).toEqual([1]);
      // Another rule, another adapter's target: counted globally only.
      await store.reserve(
        attempt({ id: 'b#0', rule: 'other', adapter: 'asg', keyId: 'k2', at: T + 10 }),
        query(),
        () => undefined,
      );
      expect(await store.ledger(query({ now: T + 20 }))).toMatchObject({
        lastOnTarget: T,
        rule: [1],
        global: [2],
        key: [1],
      });
    });

    it('reserve: notifications and remediations are counted apart', async () => {
      const store = await open(fresh());
      await store.reserve(attempt(), query(), () => undefined);
      await store.reserve(
        attempt({ id: 'n#0', operation: 'notify', at: T + 5 }),
        query({ notify: true }),
        () => undefined,
      );
      const now = T + 10;
      expect(await store.ledger(query({ now }))).toMatchObject({
        lastOnTarget: T,
        rule: [1],
        global: [1],
        key: [1],
      });
      expect(await store.ledger(query({ now, notify: true }))).toMatchObject({
        lastOnTarget: T + 5,
        rule: [1],
        global: [1],
        key: [1],
      });
    });

    it('storm counts: distinct other keys of the rule in the window, any operation', async () => {
      const store = await open(fresh());
      const add = (id: string, keyId: string, at: number, operation = 'kill-and-replace') =>
        store.reserve(attempt({ id, keyId, at, operation, target: id }), query(), () => undefined);
      await add('1', 'k', T - 10);
      await add('2', 'a', T - 10);
      await add('3', 'a', T - 9, 'notify');
      await add('4', 'b', T - 8, 'notify');
      await add('5', 'c', T - 60_000);
      expect((await store.ledger(query({ stormWindows: [60_000] }))).storm).toEqual([
        { otherKeys: 2, thisKey: true },
      ]);
      expect(
        (await store.ledger(query({ keyId: 'z', stormWindows: [60_000, 120_000] }))).storm,
      ).toEqual([
        { otherKeys: 3, thisKey: false },
        { otherKeys: 4, thisKey: false },
      ]);
    });

    it('retention: by age, then by count in slices; claims go with their entries, attempts by age', async () => {
      const store = await open(fresh());
      const day = 86_400_000;
      for (let i = 0; i < 20; i++) {
        const at = T - (19 - i) * day; // one a day, the newest at T: daily indices
        const id = `a${i}#0`;
        await store.claim(id, at);
        await store.record(decision({ id, alertId: `a${i}`, at }));
        await store.reserve(attempt({ id, at, rule: 'r' }), query(), () => undefined);
      }
      // 15 days: the 4 older go; then at most 10 entries: 6 more, 4 a slice.
      expect(
        await store.prune({ now: T, maxAgeMs: 15 * day + 1, maxEntries: 10, slice: 4 }),
      ).toEqual({ entries: 10 });
      const left = await store.list({ limit: 100 });
      expect(left.map((d) => d.id)).toEqual(Array.from({ length: 10 }, (_, i) => `a${19 - i}#0`));
      expect(await store.interruptedClaims()).toEqual([]);
      expect(await store.claim('a7#0', T)).toBe(true); // its claim went with its entry
      expect(await store.claim('a12#0', T)).toBe(false);
      await es.indices.refresh({ index: store.stateIndex });
      expect((await store.ledger(query({ rule: 'r', ruleWindows: [100 * day] }))).rule).toEqual([
        16,
      ]);
      expect(await store.prune({ now: T, maxAgeMs: 15 * day + 1, maxEntries: 10 })).toEqual({
        entries: 0,
      });
    }, 120_000);

    it('reserve: three workers racing for a budget of one spend it once', async () => {
      const p = fresh();
      const workers = [await open(p), await open(p), await open(p)];
      for (let round = 0; round < 3; round++) {
        const rule = `race-${round}`;
        const verdicts = await Promise.all(
          workers.map((w, i) =>
            w.reserve(attempt({ id: `${rule}-${i}#0`, rule }), query({ rule }), budgetOfOne),
          ),
        );
        expect(verdicts.filter((v) => v === undefined)).toHaveLength(1);
        expect((await workers[0]!.ledger(query({ rule }))).rule).toEqual([1]);
      }
    });

    it('reserve: a lease left by a worker that died is taken over once it expires', async () => {
      const p = fresh();
      const store = await open(p, { lockLeaseMs: 1_000 });
      // What a worker killed between taking the lease and releasing it leaves behind.
      await es.index({
        index: `${p}-remediation-state`,
        id: 'lock:reserve',
        document: { kind: 'lock', owner: 'dead', until: Date.now() + 1_000 },
      });
      const began = Date.now();
      expect(await store.reserve(attempt(), query(), budgetOfOne)).toBeUndefined();
      expect(Date.now() - began).toBeGreaterThanOrEqual(900);
      expect((await store.ledger(query())).rule).toEqual([1]);
      // ...and a live lease held too long fails the reservation instead of acting.
      await es.index({
        index: `${p}-remediation-state`,
        id: 'lock:reserve',
        document: { kind: 'lock', owner: 'busy', until: Date.now() + 60_000 },
      });
      const impatient = await open(p, { lockWaitMs: 300 });
      await expect(
        impatient.reserve(attempt({ id: 'a2#0' }), query(), () => undefined),
      ).rejects.toThrow(/reservation lock .* held by another worker/);
      expect((await store.ledger(query())).rule).toEqual([1]);
    });

    it('kill switch: off by default, shared by every worker', async () => {
      const p = fresh();
      const one = await open(p);
      const two = await open(p);
      expect(await one.killSwitch()).toBe(false);
      await one.setKillSwitch(true);
      expect(await two.killSwitch()).toBe(true);
      await two.setKillSwitch(false);
      expect(await one.killSwitch()).toBe(false);
    });

    it('silences: added, listed in order while in force, expired, removed once; bad ones refused', async () => {
      const p = fresh();
      const store = await open(p);
      const a = await store.addSilence({ rule: 'web-errors' }, T + 60_000, 'deploy');
      const b = await store.addSilence({ 'key.host.name': 'web-.*' }, T + 120_000);
      expect(await (await open(p)).silences(T)).toEqual([
        { id: a, matchers: { rule: 'web-errors' }, until: T + 60_000, comment: 'deploy' },
        { id: b, matchers: { 'key.host.name': 'web-.*' }, until: T + 120_000, comment: '' },
      ]);
      expect((await store.silences(T + 60_000)).map((s) => s.id)).toEqual([b]);
      expect(await store.silences(T + 120_000)).toEqual([]);
      expect(await store.removeSilence(b)).toBe(true);
      expect(await store.removeSilence(b)).toBe(false);
      expect(await store.removeSilence('no-such-silence')).toBe(false);
      expect((await store.silences(T)).map((s) => s.id)).toEqual([a]);
      await expect(store.addSilence({}, T)).rejects.toThrow(/at least one matcher/);
      await expect(store.addSilence({ hostname: 'x' }, T)).rejects.toThrow(/use rule, type/);
      await expect(store.addSilence({ rule: 'x' }, Number.NaN)).rejects.toThrow(/expiry/);
    });

    it('noticeOnce: once per window, reopened after it, once among racing workers', async () => {
      const p = fresh();
      const one = await open(p);
      const two = await open(p);
      expect(await one.noticeOnce('breaker', T, T + 60_000)).toBe(true);
      expect(await two.noticeOnce('breaker', T + 1_000, T + 61_000)).toBe(false);
      expect(await two.noticeOnce('breaker', T + 60_000, T + 120_000)).toBe(true); // reopened
      expect(await one.noticeOnce('breaker', T + 60_001, T + 120_001)).toBe(false);
      for (const key of ['fresh', 'breaker']) {
        const results = await Promise.all([
          one.noticeOnce(key, T + 200_000, T + 300_000),
          two.noticeOnce(key, T + 200_000, T + 300_000),
          one.noticeOnce(key, T + 200_000, T + 300_000),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
      }
    });

    it('inhibitions: the latest expiry stands, also when workers inhibit at once', async () => {
      const p = fresh();
      const one = await open(p);
      const two = await open(p);
      expect(await one.inhibitedUntil('web')).toBeUndefined();
      await one.inhibit('web', T + 300_000);
      expect(await two.inhibitedUntil('web')).toBe(T + 300_000);
      await two.inhibit('web', T + 1_000); // an earlier expiry never shortens it
      expect(await one.inhibitedUntil('web')).toBe(T + 300_000);
      await two.inhibit('web', T + 400_000);
      expect(await one.inhibitedUntil('web')).toBe(T + 400_000);
      await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? one : two).inhibit('api', T + i * 1_000)),
      );
      expect(await one.inhibitedUntil('api')).toBe(T + 7_000);
    });

    it('keeps the journal, claims, ledger, kill switch, silences, notices and inhibitions across a restart', async () => {
      const p = fresh();
      const before = await open(p);
      expect(await before.claim('a1#0', T)).toBe(true);
      expect(await before.claim('a2#0', T)).toBe(true); // never journaled: a crash
      await before.record(decision({ params: { by: 2 } }));
      await before.reserve(attempt({ group: 'web' }), query(), () => undefined);
      await before.setKillSwitch(true);
      const silence = await before.addSilence({ rule: 'web-errors' }, T + 60_000, 'deploy');
      expect(await before.noticeOnce('breaker', T, T + 60_000)).toBe(true);
      await before.inhibit('web', T + 300_000);
      await before.close();

      const after = await open(p);
      expect(await after.claim('a1#0', T)).toBe(false);
      expect(await after.interruptedClaims()).toEqual([{ id: 'a2#0', at: T }]);
      expect(await after.list()).toEqual([decision({ params: { by: 2 } })]);
      expect(await after.ledger(query({ now: T + 1_000, group: 'web' }))).toEqual({
        lastOnTarget: T,
        rule: [1],
        global: [1],
        key: [1],
        groupTargets: ['web-1'],
      });
      expect(await after.reserve(attempt({ id: 'a3#0' }), query(), budgetOfOne)).toEqual({
        guard: 'budget',
        reason: 'used',
      });
      expect(await after.killSwitch()).toBe(true);
      expect(await after.silences(T)).toEqual([
        { id: silence, matchers: { rule: 'web-errors' }, until: T + 60_000, comment: 'deploy' },
      ]);
      expect(await after.noticeOnce('breaker', T + 1_000, T + 60_000)).toBe(false);
      expect(await after.inhibitedUntil('web')).toBe(T + 300_000);
      expect(await after.removeSilence(silence)).toBe(true);
    });

    describe('the remediator on the Elasticsearch store, acting through the exec adapter', () => {
      const dir = mkdtempSync(join(tmpdir(), 'drover-es-remediate-'));
      let seq = 0;
      const alert = (host = 'web-1'): Alert => ({
        id: `alert-${++seq}`,
        rule: 'web-replica-silent',
        type: 'expiry',
        key: { 'host.name': host },
        at: '2024-01-01T00:00:00.000Z',
        figures: { count: 3 },
        labels: {},
        actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
      });

      /** A worker: its own store on the shared prefix, an exec adapter that logs what it ran. */
      async function worker(p: string, log: string, now: () => number) {
        const store = await open(p);
        // A real command: appends "<idempotency key> <target>" to the log.
        const fleet = new ExecAdapter('fleet', {
          command: 'sh',
          args: ['-c', 'echo "$DROVER_IDEMPOTENCY_KEY $DROVER_TARGET" >> "$0"', log],
        });
        const remediator = createRemediator({
          store,
          adapters: new Map<string, Adapter>([['fleet', fleet]]),
          guards: { cooldownMs: 60_000 },
          clock: now,
        });
        return { store, remediator };
      }
      const acted = (log: string) =>
        existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];

      it('a replayed alert, or the same alert at two workers at once, acts once', async () => {
        const p = fresh();
        const log = join(dir, `${p}.log`);
        const now = () => T;
        const one = await worker(p, log, now);
        const two = await worker(p, log, now);
        const a = alert();
        const [first, second] = await Promise.all([
          one.remediator.handle(a),
          two.remediator.handle(a),
        ]);
        expect([first[0]!.decision, second[0]!.decision].sort()).toEqual([
          'executed',
          'suppressed',
        ]);
        expect((await one.remediator.handle(a))[0]).toMatchObject({
          decision: 'suppressed',
          guard: 'idempotency',
        });
        expect(acted(log)).toEqual([`${a.id}#0 web-1`]);
        const journal = await one.store.list();
        expect(journal.map((d) => d.decision).sort()).toEqual([
          'executed',
          'suppressed',
          'suppressed',
        ]);
        expect(journal.find((d) => d.decision === 'executed')!.result).toMatchObject({
          command: 'sh',
          exitCode: 0,
        });
        expect(await one.store.interruptedClaims()).toEqual([]);
      });

      it('the cooldown and idempotency hold across a store restart', async () => {
        const p = fresh();
        const log = join(dir, `${p}.log`);
        let clock = T;
        const now = () => clock;
        const before = await worker(p, log, now);
        const a = alert();
        expect((await before.remediator.handle(a))[0]!.decision).toBe('executed');
        await before.store.close();

        clock += 30_000;
        const after = await worker(p, log, now);
        expect((await after.remediator.handle(a))[0]).toMatchObject({ guard: 'idempotency' });
        expect((await after.remediator.handle(alert()))[0]).toMatchObject({
          decision: 'suppressed',
          guard: 'cooldown',
        });
        expect((await after.remediator.handle(alert('web-2')))[0]!.decision).toBe('executed');
        clock += 31_000; // the cooldown has passed
        const later = alert();
        expect((await after.remediator.handle(later))[0]!.decision).toBe('executed');
        expect(acted(log)).toEqual([
          `${a.id}#0 web-1`,
          `alert-${seq - 1}#0 web-2`,
          `${later.id}#0 web-1`,
        ]);
      });
    });
  },
);
