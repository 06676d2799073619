import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Decision,
  formatDecision,
  formatJournal,
  killSwitchCommand,
  listJournal,
  openSqliteStore,
  silenceCommand,
} from '../../actions/index.ts';
import type { LedgerQuery } from '../../actions/guards/index.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'drover-journal-'));
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

describe('SQLite store', () => {
  it('keeps the journal, claims, ledger, kill switch, silences, notices and inhibitions across a restart', () => {
    const path = join(dir(), 'actions.db');
    const before = openSqliteStore(path);
    expect(before.claim('a1#0', T)).toBe(true);
    before.record(decision({ params: { by: 2 }, alert: undefined }));
    before.reserve(
      {
        id: 'a1#0',
        at: T,
        rule: 'web-errors',
        keyId: 'k',
        adapter: 'fleet',
        target: 'web-1',
        operation: 'kill-and-replace',
        group: 'web',
        shadow: false,
      },
      query(),
      () => undefined,
    );
    before.setKillSwitch(true);
    const silence = before.addSilence({ rule: 'web-errors' }, T + 60_000, 'deploy');
    expect(before.noticeOnce('breaker', T, T + 60_000)).toBe(true);
    before.inhibit('web', T + 300_000);
    before.close();

    const after = openSqliteStore(path);
    expect(after.claim('a1#0', T)).toBe(false);
    expect(after.list()).toEqual([decision({ params: { by: 2 } })]);
    expect(after.ledger(query({ now: T + 1_000, group: 'web' }))).toEqual({
      lastOnTarget: T,
      rule: [1],
      global: [1],
      key: [1],
      groupTargets: ['web-1'],
    });
    expect(after.killSwitch()).toBe(true);
    expect(after.silences(T)).toEqual([
      { id: silence, matchers: { rule: 'web-errors' }, until: T + 60_000, comment: 'deploy' },
    ]);
    expect(after.silences(T + 60_000)).toEqual([]);
    expect(after.noticeOnce('breaker', T + 1_000, T + 60_000)).toBe(false);
    expect(after.noticeOnce('breaker', T + 60_000, T + 120_000)).toBe(true); // reopened
    expect(after.inhibitedUntil('web')).toBe(T + 300_000);
    after.inhibit('web', T + 1_000); // an earlier expiry never shortens an inhibition
    expect(after.inhibitedUntil('web')).toBe(T + 300_000);
    expect(after.removeSilence(silence)).toBe(true);
    expect(after.removeSilence(silence)).toBe(false);
    after.close();
  });

  it('windows slide: attempts older than a window no longer count, dry-run counts apart', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    const attempt = (id: string, at: number, shadow = false) =>
      store.reserve(
        {
          id,
          at,
          rule: 'web-errors',
          keyId: 'k',
          adapter: 'fleet',
          target: id,
          operation: 'kill-and-replace',
          shadow,
        },
        query({ now: at }),
        () => undefined,
      );
    attempt('x', T - 60_000); // exactly one window ago: outside
    attempt('y', T - 59_000);
    attempt('z', T - 1_000, true);
    expect(store.ledger(query())).toMatchObject({ rule: [1], global: [1], key: [2] });
    expect(store.ledger(query({ shadow: true }))).toMatchObject({ rule: [1], key: [1] });
    store.close();
  });

  it('notifications and remediations are counted apart', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    const base = {
      rule: 'web-errors',
      keyId: 'k',
      adapter: 'fleet',
      target: 'web-1',
      shadow: false,
    };
    store.reserve(
      { ...base, id: 'r', at: T - 10, operation: 'kill-and-replace' },
      query(),
      () => undefined,
    );
    store.reserve({ ...base, id: 'n', at: T - 5, operation: 'notify' }, query(), () => undefined);
    expect(store.ledger(query())).toMatchObject({
      lastOnTarget: T - 10,
      rule: [1],
      global: [1],
      key: [1],
    });
    expect(store.ledger(query({ notify: true }))).toMatchObject({
      lastOnTarget: T - 5,
      rule: [1],
      global: [1],
      key: [1],
    });
    store.close();
  });

  it('storm counts: distinct other keys of the rule in the window, any operation', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    const at = (id: string, keyId: string, t: number, operation = 'kill-and-replace') =>
      store.reserve(
        {
          id,
          at: t,
          rule: 'web-errors',
          keyId,
          adapter: 'fleet',
          target: id,
          operation,
          shadow: false,
        },
        query(),
        () => undefined,
      );
    at('1', 'k', T - 10);
    at('2', 'a', T - 10);
    at('3', 'a', T - 9, 'notify');
    at('4', 'b', T - 8, 'notify');
    at('5', 'c', T - 60_000); // outside the window
    expect(store.ledger(query({ stormWindows: [60_000] })).storm).toEqual([
      { otherKeys: 2, thisKey: true },
    ]);
    expect(store.ledger(query({ keyId: 'z', stormWindows: [60_000, 120_000] })).storm).toEqual([
      { otherKeys: 3, thisKey: false },
      { otherKeys: 4, thisKey: false },
    ]);
    store.close();
  });

  it('retention: by age, then by count, in slices; claims go with their entries', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    const day = 86_400_000;
    for (let i = 0; i < 50; i++) {
      const at = T - (49 - i) * day; // one a day, the newest at T
      store.claim(`a${i}#0`, at);
      store.record(decision({ id: `a${i}#0`, alertId: `a${i}`, at }));
      store.reserve(
        {
          id: `a${i}#0`,
          at,
          rule: 'r',
          keyId: 'k',
          adapter: 'fleet',
          target: 't',
          operation: 'scale',
          shadow: false,
        },
        query(),
        () => undefined,
      );
    }
    // 30 days: the 19 older than that go; then at most 25 entries: 6 more, 3 a slice.
    expect(store.prune({ now: T, maxAgeMs: 30 * day + 1, maxEntries: 25, slice: 3 })).toEqual({
      entries: 25,
    });
    const left = store.list({ limit: 100 });
    expect(left.map((d) => d.id)).toEqual(Array.from({ length: 25 }, (_, i) => `a${49 - i}#0`));
    expect(store.interruptedClaims()).toEqual([]); // no claim outlives its entry
    expect(store.claim('a10#0', T)).toBe(true); // its claim went with it
    expect(store.claim('a40#0', T)).toBe(false);
    // Attempts by age only: the count does not shorten a budget's window.
    expect(store.ledger(query({ rule: 'r', ruleWindows: [100 * day] })).rule).toEqual([31]);
    expect(store.prune({ now: T, maxAgeMs: 30 * day + 1, maxEntries: 25 })).toEqual({
      entries: 0,
    });
    store.close();
  });

  it('a reservation that fails its check appends nothing', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    const base = {
      at: T,
      rule: 'r',
      keyId: 'k',
      adapter: 'fleet',
      target: 't',
      operation: 'scale',
      shadow: false,
    };
    const budgetOfOne = (c: { rule: number[] }) =>
      (c.rule[0] ?? 0) >= 1 ? { guard: 'budget' as const, reason: 'used' } : undefined;
    expect(store.reserve({ ...base, id: '1' }, query({ rule: 'r' }), budgetOfOne)).toBeUndefined();
    expect(store.reserve({ ...base, id: '2' }, query({ rule: 'r' }), budgetOfOne)).toEqual({
      guard: 'budget',
      reason: 'used',
    });
    expect(store.ledger(query({ rule: 'r' })).rule).toEqual([1]);
    store.close();
  });

  it('reports claims that never got a journal entry (a crash mid-action)', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    store.claim('a9#0', 1);
    store.claim('a8#0', 2);
    store.record(decision({ id: 'a8#0' }));
    expect(store.interruptedClaims()).toEqual([{ id: 'a9#0', at: 1 }]);
    store.close();
  });

  it('rejects a silence without matchers or with an unknown field', () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    expect(() => store.addSilence({}, T)).toThrow(/at least one matcher/);
    expect(() => store.addSilence({ hostname: 'x' }, T)).toThrow(/use rule, type/);
    expect(store.silences(0)).toEqual([]);
    store.close();
  });
});

describe('workers in separate processes on one SQLite file', () => {
  const FIXTURE = join(import.meta.dirname, 'fixtures', 'remediate.ts');

  async function race(
    alertIds: string[],
    guards: Record<string, unknown>,
  ): Promise<{ outcomes: string[]; acted: number }> {
    const d = dir();
    const db = join(d, 'actions.db');
    openSqliteStore(db).close(); // the schema exists before the race
    const log = join(d, 'acted.ndjson');
    const workers = alertIds.map((id) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', FIXTURE, db, log, id, JSON.stringify(guards)],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      let out = '';
      let markReady = () => {};
      const ready = new Promise<void>((r) => (markReady = r));
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.startsWith('ready\n')) markReady();
      });
      const done = new Promise<string[]>((resolve, reject) =>
        child.once('exit', (code) =>
          code === 0
            ? resolve(JSON.parse(out.slice('ready\n'.length)) as string[])
            : reject(new Error(`worker exited with ${code}`)),
        ),
      );
      return { child, ready, done };
    });
    // Every worker has loaded and opened the store: now they decide together.
    await Promise.all(workers.map((w) => w.ready));
    for (const w of workers) w.child.stdin.end('go\n');
    const outcomes = (await Promise.all(workers.map((w) => w.done))).flat();
    const acted = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').length : 0;
    return { outcomes, acted };
  }

  it('the same alert decided by three workers at once acts exactly once', async () => {
    const { outcomes, acted } = await race(['same', 'same', 'same'], { cooldownMs: 0 });
    expect(outcomes.sort()).toEqual(['executed', 'idempotency', 'idempotency']);
    expect(acted).toBe(1);
  }, 60_000);

  it('a budget of one, raced by three workers with different alerts, is spent once', async () => {
    const { outcomes, acted } = await race(['a', 'b', 'c'], {
      cooldownMs: 0,
      globalBudget: { max: 1, windowMs: 3_600_000 },
    });
    expect(outcomes.sort()).toEqual(['budget', 'budget', 'executed']);
    expect(acted).toBe(1);
  }, 60_000);
});

describe('drover actions list and kill-switch', () => {
  it('lists newest first, filtered by time and rule, as text or JSON lines', async () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    store.record(decision({ id: 'a1#0', at: T }));
    store.record(
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
    store.record(
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
    expect((await listJournal(store)).map((d) => d.id)).toEqual(['a3#0', 'a2#0', 'a1#0']);
    expect((await listJournal(store, { since: T + 1_000 })).map((d) => d.id)).toEqual([
      'a3#0',
      'a2#0',
    ]);
    expect((await listJournal(store, { rule: 'web-errors', limit: 1 })).map((d) => d.id)).toEqual([
      'a2#0',
    ]);
    await expect(listJournal(store, { limit: 0 })).rejects.toThrow(/positive integer/);
    const text = formatJournal(await listJournal(store), 'text').split('\n');
    expect(text[0]).toBe(
      '2024-01-01T00:00:02.000Z  failed     api-latency  fleet:kill-and-replace web-1  alert a3 (840 ms)  error: no running replica',
    );
    expect(text[1]).toBe(
      '2024-01-01T00:00:01.000Z  suppressed web-errors  fleet:kill-and-replace web-1  alert a2  [cooldown] web-1 was acted on 1s ago (cooldown 300s)',
    );
    const json = formatJournal(await listJournal(store), 'json')
      .trim()
      .split('\n');
    expect(json.map((l) => (JSON.parse(l) as Decision).id)).toEqual(['a3#0', 'a2#0', 'a1#0']);
    expect(() => formatJournal([], 'yaml' as never)).toThrow(/text or json/);
    expect(
      formatDecision(
        decision({
          decision: 'dry-run',
          reason: 'dry-run: decided, not acted',
          result: undefined,
          durationMs: undefined,
        }),
      ),
    ).toMatch(/dry-run .* alert a1 {2}dry-run: decided, not acted$/);
    store.close();
  });

  it('kill-switch on|off|status, and silences from the command line', async () => {
    const store = openSqliteStore(join(dir(), 'a.db'));
    expect(await killSwitchCommand(store, ['status'])).toEqual({
      on: false,
      message: 'kill switch is off',
    });
    expect((await killSwitchCommand(store, ['on'])).message).toBe(
      'kill switch is on: no action will run',
    );
    expect(store.killSwitch()).toBe(true);
    expect((await killSwitchCommand(store, ['off'])).on).toBe(false);
    await expect(killSwitchCommand(store, ['maybe'])).rejects.toThrow(/on\|off\|status/);
    const s = await silenceCommand(
      store,
      {
        matchers: ['rule=web-errors', 'key.host.name=~web-.*'],
        forMs: 3_600_000,
        comment: 'deploy',
      },
      T,
    );
    expect(s.message).toBe(
      `silence ${s.id} until 2024-01-01T01:00:00.000Z: rule=web-errors key.host.name=~web-.*`,
    );
    expect(store.silences(T)).toHaveLength(1);
    await expect(silenceCommand(store, { matchers: ['rule'], forMs: 1 }, T)).rejects.toThrow(
      /field=value/,
    );
    await expect(silenceCommand(store, { matchers: ['rule=x'] }, T)).rejects.toThrow(/expiry/);
    store.close();
  });
});
