/**
 * The contract every remediation store keeps (`RemediationStore`), written once and run
 * over each back end: the SQLite store (test/actions/journal/sqlite.test.ts) and the
 * Elasticsearch store (test/actions/journal/elasticsearch.integration.test.ts). A back end's own
 * concerns (cross-process locking, index layout, leases) stay in its own file.
 *
 * `open(name)` gives a store on the data named `name`: the same name is the same data
 * (one SQLite file, one Elasticsearch prefix), as a restart or a second worker sees it.
 */
import { expect, it } from 'vitest';
import { type Decision, listJournal, type RemediationStore } from '../../../actions/index.ts';
import type { Attempt, LedgerCounts, LedgerQuery } from '../../../actions/guards/index.ts';
import type { Alert } from '../../../rules/index.ts';
import { GLOBAL_TASK } from '../../../pipeline/rules-tasks.ts';

export const T = Date.parse('2024-01-01T00:00:00Z');

export const decision = (over: Partial<Decision> = {}): Decision => ({
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

export const query = (over: Partial<LedgerQuery> = {}): LedgerQuery => ({
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

export const attempt = (over: Partial<Attempt> = {}): Attempt => ({
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
export const budgetOfOne = (c: LedgerCounts) =>
  (c.rule[0] ?? 0) >= 1 ? { guard: 'budget' as const, reason: 'used' } : undefined;

/** A call that may throw at once (SQLite) or reject (Elasticsearch), as a promise. */
const settled = <R>(call: () => R) => Promise.resolve().then(call);

export interface StoreUnderTest {
  /** A store on the data named `name`; the same name is the same data. */
  open(name: string): Promise<RemediationStore>;
  /** A name no other test uses. */
  fresh(): string;
  /** Makes writes visible to every reader where the back end is eventually consistent. */
  settle?(store: RemediationStore): Promise<void>;
}

export function storeContract(s: StoreUnderTest) {
  const settle = async (store: RemediationStore) => {
    await s.settle?.(store);
  };

  it('journal: a decision round-trips whole; list is newest first, filtered by since, rule, alert and limit', async () => {
    const store = await s.open(s.fresh());
    expect(await store.list()).toEqual([]);
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
    const first = decision({
      params: { by: 2 },
      alert,
      guards: [
        { guard: 'kill-switch', passed: true, inputs: { configured: false, runtime: false } },
        { guard: 'cooldown', passed: true, inputs: { cooldownMs: 60_000, remainingMs: 0 } },
      ],
    });
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
    const failed = decision({
      id: 'a3#0',
      alertId: 'a3',
      rule: 'api-latency',
      at: T + 2_000,
      decision: 'failed',
      error: 'no running replica',
      result: undefined,
    });
    await store.record(failed);
    // Two decisions in the same millisecond: the later one first.
    await store.record(decision({ id: 'a4#0', alertId: 'a4', at: T + 2_000, rule: 'x' }));
    await store.record(decision({ id: 'a4#1', alertId: 'a4', at: T + 2_000, rule: 'x' }));

    const all = await store.list();
    expect(all.map((d) => d.id)).toEqual(['a4#1', 'a4#0', 'a3#0', 'a2#0', 'a1#0']);
    expect(all.at(-1)).toEqual(first);
    expect(all[2]).toEqual(failed);
    expect((await store.list({ since: T + 1_000, rule: 'web-errors' })).map((d) => d.id)).toEqual([
      'a2#0',
    ]);
    expect((await store.list({ since: T + 2_000 })).map((d) => d.id)).toEqual([
      'a4#1',
      'a4#0',
      'a3#0',
    ]);
    expect((await store.list({ rule: 'web-errors', limit: 1 })).map((d) => d.id)).toEqual(['a2#0']);
    expect((await listJournal(store, { limit: 2 })).map((d) => d.id)).toEqual(['a4#1', 'a4#0']);
    expect((await store.list({ alertId: 'a4' })).map((d) => d.id)).toEqual(['a4#1', 'a4#0']);
    expect(await store.list({ alertId: 'a1' })).toEqual([first]);
  });

  it('claims: a key is claimed once, by one worker, even when two race for it', async () => {
    const p = s.fresh();
    const one = await s.open(p);
    const two = await s.open(p);
    expect(await one.claim('a1#0', T)).toBe(true);
    expect(await one.claim('a1#0', T)).toBe(false); // a replay
    expect(await two.claim('a1#0', T)).toBe(false); // another worker
    for (let i = 0; i < 10; i++) {
      const id = `race-${i}#0`;
      const results = await Promise.all([
        settled(() => one.claim(id, T)),
        settled(() => two.claim(id, T)),
        settled(() => one.claim(id, T)),
        settled(() => two.claim(id, T)),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
    }
  });

  it('fences claims by rules task generation: a stale worker is turned away, a replay too', async () => {
    const p = s.fresh();
    const old = await s.open(p);
    const next = await s.open(p);
    // Task 2 in generation 4 (the worker that held it), then generation 5 (the new owner).
    expect(await old.claim('f1#0', T, { task: 2, generation: 4 })).toBe(true);
    expect(await next.claim('f2#0', T, { task: 2, generation: 5 })).toBe(true);
    // The old owner's later alert for task 2: refused, from either connection.
    expect(await old.claim('f3#0', T, { task: 2, generation: 4 })).toBe(false);
    expect(await next.claim('f3#0', T, { task: 2, generation: 4 })).toBe(false);
    // The new owner goes on; its replay of a claimed alert is still refused by id.
    expect(await next.claim('f3#0', T, { task: 2, generation: 5 })).toBe(true);
    expect(await next.claim('f2#0', T, { task: 2, generation: 5 })).toBe(false);
    // Another task has its own generation; claims without a fence are not fenced.
    expect(await old.claim('f4#0', T, { task: 3, generation: 4 })).toBe(true);
    expect(await old.claim('f5#0', T)).toBe(true);
    // Racing generations: whatever the order, once 7 is recorded 6 is refused.
    const results = await Promise.all([
      settled(() => old.claim('f6#0', T, { task: 9, generation: 6 })),
      settled(() => next.claim('f7#0', T, { task: 9, generation: 7 })),
    ]);
    expect(results[1]).toBe(true);
    expect(await old.claim('f8#0', T, { task: 9, generation: 6 })).toBe(false);
  });

  it('fences the global rules task apart from partition task 0: its generations are another group', async () => {
    const store = await s.open(s.fresh());
    // Partition task 0 in the rules group's generation 5, then the global task (-1) in
    // its own group's generation 1: not a stale claim for task 0.
    expect(await store.claim('g1#0', T, { task: 0, generation: 5 })).toBe(true);
    expect(await store.claim('g2#0', T, { task: GLOBAL_TASK, generation: 1 })).toBe(true);
    expect(await store.claim('g3#0', T, { task: GLOBAL_TASK, generation: 2 })).toBe(true);
    // Each is fenced on its own generations.
    expect(await store.claim('g4#0', T, { task: GLOBAL_TASK, generation: 1 })).toBe(false);
    expect(await store.claim('g5#0', T, { task: 0, generation: 5 })).toBe(true);
    expect(await store.claim('g6#0', T, { task: 0, generation: 4 })).toBe(false);
  });

  it('reports claims that never got a journal entry (a crash mid-action)', async () => {
    const store = await s.open(s.fresh());
    await store.claim('a9#0', 1);
    await store.claim('a8#0', 2);
    await store.record(decision({ id: 'a8#0' }));
    expect(await store.interruptedClaims()).toEqual([{ id: 'a9#0', at: 1 }]);
  });

  it('reserve: the check sees the ledger, a failing check appends nothing, windows slide, dry-run counts apart', async () => {
    const store = await s.open(s.fresh());
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
    // One millisecond inside the window it still does.
    expect(await store.ledger(query({ now: T + 59_999 }))).toMatchObject({ rule: [1] });
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
    const store = await s.open(s.fresh());
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

  it('verification: a pending one survives a restart and is ended once, by one worker', async () => {
    const p = s.fresh();
    const before = await s.open(p);
    const pending = {
      outcome: 'pending' as const,
      withinMs: 120_000,
      since: '2024-01-01T00:00:00.000Z',
      deadline: T + 240_000,
      rollbackTo: 3,
      onIneffective: { adapter: 'pager', operation: 'notify' as const, when: { all: [] } },
    };
    await before.record(decision({ verification: pending }));
    await before.record(decision({ id: 'a2#0', alertId: 'a2', at: T + 1 }));
    await before.record(
      decision({
        id: 'a3#0',
        alertId: 'a3',
        at: T + 2,
        verification: { ...pending, since: '2024-01-01T00:00:01.000Z' },
      }),
    );
    await before.close();

    const one = await s.open(p);
    const two = await s.open(p);
    expect(await one.pendingVerifications(100)).toEqual([
      decision({ verification: pending }),
      decision({
        id: 'a3#0',
        alertId: 'a3',
        at: T + 2,
        verification: { ...pending, since: '2024-01-01T00:00:01.000Z' },
      }),
    ]);
    expect((await one.pendingVerifications(1)).map((d) => d.id)).toEqual(['a1#0']);
    const effective = {
      ...pending,
      outcome: 'effective' as const,
      decidedAt: T + 30_000,
      by: 'resolution' as const,
      resolvedAt: '2024-01-01T00:00:30.000Z',
    };
    const results = await Promise.all([
      settled(() => one.settleVerification('a1#0', effective)),
      settled(() => two.settleVerification('a1#0', { ...effective, outcome: 'ineffective' })),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
    // An entry without a pending verification, or no entry at all, is not ended.
    expect(await one.settleVerification('a2#0', effective)).toBe(false);
    expect(await one.settleVerification('nope#0', effective)).toBe(false);
    await settle(one);
    expect((await two.pendingVerifications(100)).map((d) => d.id)).toEqual(['a3#0']);
    const listed = (await two.list()).find((d) => d.id === 'a1#0')!;
    expect(listed.verification?.outcome).toBe(results[0] ? 'effective' : 'ineffective');
    expect(listed.verification).toMatchObject({ decidedAt: T + 30_000, rollbackTo: 3 });
  });

  it('grouped: alerts waiting in a group, newest within the limit, oldest first; journaled ids', async () => {
    const p = s.fresh();
    const before = await s.open(p);
    const alert: Alert = {
      id: 'a1',
      rule: 'web-errors',
      type: 'frequency',
      key: { 'host.name': 'web-1' },
      at: '2024-01-01T00:00:00.000Z',
      figures: { count: 3 },
      labels: {},
      actions: [],
    };
    const joined = (n: number) =>
      decision({
        id: `a${n}#0`,
        alertId: `a${n}`,
        at: T + n,
        operation: 'notify',
        decision: 'suppressed',
        guard: 'group',
        reason: 'grouped: goes out in notification a1#0/group with the other alerts of its group',
        // The fourth as journaled before the id had its own field.
        ...(n < 4 && { notification: 'a1#0/group' }),
        result: undefined,
        durationMs: undefined,
        alert: { ...alert, id: `a${n}` },
      });
    for (const n of [1, 2, 3, 4]) await before.record(joined(n));
    // Not group entries: another guard, and a group guard on another decision.
    await before.record(
      decision({ id: 'a5#0', at: T + 5, decision: 'suppressed', guard: 'cooldown' }),
    );
    await before.record(decision({ id: 'a6#0', at: T + 6, guard: 'group' }));
    await before.record(decision({ id: 'a1#0/group', at: T + 7, operation: 'notify' }));
    await before.close();

    const store = await s.open(p);
    expect(await store.grouped(T, 100)).toEqual([1, 2, 3, 4].map(joined));
    expect((await store.grouped(T + 2, 100)).map((d) => d.id)).toEqual(['a2#0', 'a3#0', 'a4#0']);
    expect((await store.grouped(T, 2)).map((d) => d.id)).toEqual(['a3#0', 'a4#0']);
    expect(await store.grouped(T + 8, 100)).toEqual([]);
    expect(await store.journaled(['a1#0/group', 'a4#0/group', 'a2#0', 'nope'])).toEqual(
      new Set(['a1#0/group', 'a2#0']),
    );
    expect(await store.journaled([])).toEqual(new Set());
    await expect(
      settled(() => store.journaled(Array.from({ length: 1_001 }, (_, i) => `x${i}`))),
    ).rejects.toThrow(/at most 1000/);
  });

  it('ledger: an ineffective verdict counts for the circuit breaker only', async () => {
    const store = await s.open(s.fresh());
    await store.reserve(attempt(), query(), () => undefined);
    await store.reserve(
      attempt({ id: 'a1#0/ineffective', operation: 'ineffective', at: T + 5 }),
      query(),
      () => undefined,
    );
    await settle(store);
    expect(await store.ledger(query({ now: T + 10, stormWindows: [60_000] }))).toEqual({
      lastOnTarget: T,
      rule: [1],
      global: [1],
      key: [2],
      storm: [{ otherKeys: 0, thisKey: true }],
      groupTargets: [],
    });
  });

  it('storm counts: distinct other keys of the rule in the window, any operation', async () => {
    const store = await s.open(s.fresh());
    const add = (id: string, keyId: string, at: number, operation = 'kill-and-replace') =>
      store.reserve(attempt({ id, keyId, at, operation, target: id }), query(), () => undefined);
    await add('1', 'k', T - 10);
    await add('2', 'a', T - 10);
    await add('3', 'a', T - 9, 'notify');
    await add('4', 'b', T - 8, 'notify');
    await add('5', 'c', T - 60_000); // outside the window
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
    const store = await s.open(s.fresh());
    const day = 86_400_000;
    for (let i = 0; i < 20; i++) {
      const at = T - (19 - i) * day; // one a day, the newest at T
      const id = `a${i}#0`;
      await store.claim(id, at);
      await store.record(decision({ id, alertId: `a${i}`, at }));
      await store.reserve(attempt({ id, at, rule: 'r' }), query(), () => undefined);
    }
    // 15 days: the 4 older go; then at most 10 entries: 6 more, 4 a slice.
    expect(await store.prune({ now: T, maxAgeMs: 15 * day + 1, maxEntries: 10, slice: 4 })).toEqual(
      { entries: 10 },
    );
    const left = await store.list({ limit: 100 });
    expect(left.map((d) => d.id)).toEqual(Array.from({ length: 10 }, (_, i) => `a${19 - i}#0`));
    expect(await store.interruptedClaims()).toEqual([]); // no claim outlives its entry
    expect(await store.claim('a7#0', T)).toBe(true); // its claim went with its entry
    expect(await store.claim('a12#0', T)).toBe(false);
    await settle(store);
    // Attempts by age only: the count does not shorten a budget's window.
    expect((await store.ledger(query({ rule: 'r', ruleWindows: [100 * day] }))).rule).toEqual([16]);
    expect(await store.prune({ now: T, maxAgeMs: 15 * day + 1, maxEntries: 10 })).toEqual({
      entries: 0,
    });
  }, 120_000);

  it('reserve: three workers racing for a budget of one spend it once', async () => {
    const p = s.fresh();
    const workers = [await s.open(p), await s.open(p), await s.open(p)];
    for (let round = 0; round < 3; round++) {
      const rule = `race-${round}`;
      const verdicts = await Promise.all(
        workers.map((w, i) =>
          settled(() =>
            w.reserve(attempt({ id: `${rule}-${i}#0`, rule }), query({ rule }), budgetOfOne),
          ),
        ),
      );
      expect(verdicts.filter((v) => v === undefined)).toHaveLength(1);
      expect((await workers[0]!.ledger(query({ rule }))).rule).toEqual([1]);
    }
  });

  it('kill switch: off by default, shared by every worker', async () => {
    const p = s.fresh();
    const one = await s.open(p);
    const two = await s.open(p);
    expect(await one.killSwitch()).toBe(false);
    await one.setKillSwitch(true);
    expect(await two.killSwitch()).toBe(true);
    await two.setKillSwitch(false);
    expect(await one.killSwitch()).toBe(false);
  });

  it('silences: added, listed in order while in force, expired, removed once; bad ones refused', async () => {
    const p = s.fresh();
    const store = await s.open(p);
    const a = await store.addSilence({ rule: 'web-errors' }, T + 60_000, 'deploy');
    const b = await store.addSilence({ 'key.host.name': 'web-.*' }, T + 120_000);
    expect(await (await s.open(p)).silences(T)).toEqual([
      { id: a, matchers: { rule: 'web-errors' }, until: T + 60_000, comment: 'deploy' },
      { id: b, matchers: { 'key.host.name': 'web-.*' }, until: T + 120_000, comment: '' },
    ]);
    expect((await store.silences(T + 60_000)).map((x) => x.id)).toEqual([b]);
    expect(await store.silences(T + 120_000)).toEqual([]);
    expect(await store.removeSilence(b)).toBe(true);
    expect(await store.removeSilence(b)).toBe(false);
    expect(await store.removeSilence('no-such-silence')).toBe(false);
    expect((await store.silences(T)).map((x) => x.id)).toEqual([a]);
    await expect(settled(() => store.addSilence({}, T))).rejects.toThrow(/at least one matcher/);
    await expect(settled(() => store.addSilence({ hostname: 'x' }, T))).rejects.toThrow(
      /use rule, type/,
    );
    await expect(settled(() => store.addSilence({ rule: 'x' }, Number.NaN))).rejects.toThrow(
      /expiry/,
    );
    expect((await store.silences(0)).map((x) => x.id)).toEqual([a]);
  });

  it('silences: expire_on_resolve is kept, and absent from the others', async () => {
    const store = await s.open(s.fresh());
    const ends = await store.addSilence({ rule: 'a' }, T + 60_000, '', { expireOnResolve: true });
    const plain = await store.addSilence({ rule: 'b' }, T + 60_000);
    await settle(store);
    const listed = await store.silences(T);
    expect(listed.find((x) => String(x.id) === String(ends))?.expireOnResolve).toBe(true);
    expect(listed.find((x) => String(x.id) === String(plain))).not.toHaveProperty(
      'expireOnResolve',
    );
  });

  it('inhibitors: one per firing, the longer cap kept, gone when released or past their cap', async () => {
    const store = await s.open(s.fresh());
    expect(await store.inhibitors('checkout', T)).toEqual([]);
    await store.inhibitFiring('checkout', 'f1', 'alert-1', T + 60_000);
    await store.inhibitFiring('checkout', 'f1', 'alert-1', T + 30_000);
    await store.inhibitFiring('checkout', 'f2', 'alert-2', T + 10_000);
    await store.inhibitFiring('payments', 'f3', 'alert-3', T + 60_000);
    await settle(store);
    expect(await store.inhibitors('checkout', T)).toEqual([
      { alert: 'alert-1', until: T + 60_000 },
      { alert: 'alert-2', until: T + 10_000 },
    ]);
    expect(await store.inhibitors('checkout', T + 10_000)).toEqual([
      { alert: 'alert-1', until: T + 60_000 },
    ]);
    await store.releaseFiring('checkout', 'f1');
    await store.releaseFiring('checkout', 'never-there');
    await settle(store);
    expect(await store.inhibitors('checkout', T + 10_000)).toEqual([]);
    expect(await store.inhibitors('payments', T)).toHaveLength(1);
    // Past its cap, an inhibitor whose firing never resolved goes with retention.
    await store.prune({ now: T + 60_000, maxAgeMs: 86_400_000, maxEntries: 1000 });
    await settle(store);
    expect(await store.inhibitors('payments', T)).toEqual([]);
  });

  it('noticeOnce: once per window, reopened after it, once among racing workers', async () => {
    const p = s.fresh();
    const one = await s.open(p);
    const two = await s.open(p);
    expect(await one.noticeOnce('breaker', T, T + 60_000)).toBe(true);
    expect(await two.noticeOnce('breaker', T + 1_000, T + 61_000)).toBe(false);
    expect(await two.noticeOnce('breaker', T + 60_000, T + 120_000)).toBe(true); // reopened
    expect(await one.noticeOnce('breaker', T + 60_001, T + 120_001)).toBe(false);
    for (const key of ['fresh', 'breaker']) {
      const results = await Promise.all([
        settled(() => one.noticeOnce(key, T + 200_000, T + 300_000)),
        settled(() => two.noticeOnce(key, T + 200_000, T + 300_000)),
        settled(() => one.noticeOnce(key, T + 200_000, T + 300_000)),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
    }
  });

  it('inhibitions: the latest expiry stands, also when workers inhibit at once', async () => {
    const p = s.fresh();
    const one = await s.open(p);
    const two = await s.open(p);
    expect(await one.inhibitedUntil('web')).toBeUndefined();
    await one.inhibit('web', T + 300_000);
    expect(await two.inhibitedUntil('web')).toBe(T + 300_000);
    await two.inhibit('web', T + 1_000); // an earlier expiry never shortens it
    expect(await one.inhibitedUntil('web')).toBe(T + 300_000);
    await two.inhibit('web', T + 400_000);
    expect(await one.inhibitedUntil('web')).toBe(T + 400_000);
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        settled(() => (i % 2 ? one : two).inhibit('api', T + i * 1_000)),
      ),
    );
    expect(await one.inhibitedUntil('api')).toBe(T + 7_000);
  });

  it('keeps the journal, claims, ledger, kill switch, silences, notices and inhibitions across a restart', async () => {
    const p = s.fresh();
    const before = await s.open(p);
    expect(await before.claim('a1#0', T)).toBe(true);
    expect(await before.claim('a2#0', T)).toBe(true); // never journaled: a crash
    await before.record(decision({ params: { by: 2 } }));
    await before.reserve(attempt({ group: 'web' }), query(), () => undefined);
    await before.setKillSwitch(true);
    const silence = await before.addSilence({ rule: 'web-errors' }, T + 60_000, 'deploy');
    expect(await before.noticeOnce('breaker', T, T + 60_000)).toBe(true);
    await before.inhibit('web', T + 300_000);
    await before.close();

    const after = await s.open(p);
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
    expect(await after.silences(T + 60_000)).toEqual([]);
    expect(await after.noticeOnce('breaker', T + 1_000, T + 60_000)).toBe(false);
    expect(await after.inhibitedUntil('web')).toBe(T + 300_000);
    expect(await after.removeSilence(silence)).toBe(true);
    expect(await after.removeSilence(silence)).toBe(false);
  });
}
