import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  formatDecision,
  type GroupHealth,
  type GuardConfig,
  type Notification,
  openActionStore,
  Remediator,
} from '../../actions/index.ts';
import { effectiveGuards } from '../../actions/guards/index.ts';
import type { Alert } from '../../rules/index.ts';

const dbPath = () => join(mkdtempSync(join(tmpdir(), 'drover-actions-')), 'actions.db');

let seq = 0;
function alert(overrides: Partial<Alert> = {}): Alert {
  seq++;
  return {
    id: `alert-${seq}`,
    rule: 'web-replica-silent',
    type: 'expiry',
    key: { 'host.name': 'web-1' },
    at: '2024-01-01T00:00:00.000Z',
    figures: { count: 3 },
    sample: { '@timestamp': 0, 'service.name': 'web', 'host.name': 'web-1' },
    labels: { team: 'platform' },
    actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
    ...overrides,
  };
}

/**
 * A stand-in for an orchestrator, implementing Drover's own adapter interface: it
 * records calls and reports a configurable group, so each guard can be shown to stop
 * what it must without spawning processes for every case.
 */
class RecordingAdapter implements Adapter {
  readonly type = 'recording';
  calls: Array<{ op: string; target: string; params?: unknown; ctx?: ActionContext }> = [];
  health: GroupHealth = { group: 'web', size: 4, healthy: 4 };
  decline: AdapterDeclined | undefined;
  fail: Error | undefined;
  /** While set, actions wait on it: a slow orchestrator. */
  gate: Promise<void> | undefined;
  constructor(readonly name: string) {}
  private async act(
    op: string,
    target: string,
    params?: unknown,
    ctx?: ActionContext,
  ): Promise<ActionResult> {
    if (this.gate) await this.gate;
    if (this.decline) return Promise.reject(this.decline);
    if (this.fail) return Promise.reject(this.fail);
    this.calls.push({ op, target, params, ctx });
    return Promise.resolve({ detail: { op, target } });
  }
  killAndReplace(target: string, ctx: ActionContext) {
    return this.act('kill-and-replace', target, undefined, ctx);
  }
  scale(target: string, params: unknown, ctx: ActionContext) {
    return this.act('scale', target, params, ctx);
  }
  notify(n: Notification, ctx: ActionContext) {
    return this.act('notify', n.title, n, ctx);
  }
  describeFails: Error | undefined;
  async describe(): Promise<GroupHealth> {
    if (this.describeFails) throw this.describeFails;
    return this.health;
  }
}

function setup(
  guards: GuardConfig = {},
  extra: Partial<ConstructorParameters<typeof Remediator>[0]> = {},
) {
  let now = Date.parse('2024-01-01T00:00:00Z');
  const store = openActionStore(dbPath());
  const fleet = new RecordingAdapter('fleet');
  const pager = new RecordingAdapter('pager');
  const remediator = new Remediator({
    store,
    adapters: new Map<string, Adapter>([
      ['fleet', fleet],
      ['pager', pager],
    ]),
    guards: { cooldownMs: 0, ...guards },
    clock: () => now,
    ...extra,
  });
  return { remediator, store, fleet, pager, advance: (ms: number) => (now += ms) };
}

describe('guard rails', () => {
  it('dry-run decides and journals but does not act', async () => {
    const { remediator, fleet, store } = setup({ dryRun: true });
    const [d] = await remediator.handle(alert());
    expect(d!.decision).toBe('dry-run');
    expect(fleet.calls).toEqual([]);
    expect(store.list()[0]!.decision).toBe('dry-run');
  });

  it('maxAlertAge: no remediation for an alert judged from history; pages still go', async () => {
    const { remediator, fleet, pager, store, advance } = setup({ maxAlertAgeMs: 15 * 60_000 });
    // The clock is 20 minutes past the alert's event time: a replay of history.
    advance(20 * 60_000);
    const [old] = await remediator.handle(alert());
    expect(old).toMatchObject({ decision: 'suppressed', guard: 'alert-age' });
    expect(old!.reason).toMatch(
      /stale alert: it fired at 2024-01-01T00:00:00.000Z in event time, 20m before now \(guards.maxAlertAge 15m\)/,
    );
    expect(store.list()[0]!.guards).toContainEqual({
      guard: 'alert-age',
      passed: false,
      inputs: { ageMs: 20 * 60_000, maxAgeMs: 15 * 60_000 },
    });
    expect(fleet.calls).toEqual([]);
    // A notification of the same old alert is not a remediation: it goes.
    const page = alert({ actions: [{ adapter: 'pager', operation: 'notify', group: false }] });
    expect((await remediator.handle(page))[0]!.decision).toBe('executed');
    expect(pager.calls).toHaveLength(1);
    // An alert within the limit is acted on.
    const fresh = alert({ at: new Date(Date.parse('2024-01-01T00:06:00Z')).toISOString() });
    expect((await remediator.handle(fresh))[0]!.decision).toBe('executed');
    expect(fleet.calls).toHaveLength(1);
  });

  it('maxAlertAge: 0 is no limit; a rule may only tighten it', () => {
    expect(effectiveGuards({}).maxAlertAgeMs).toBe(0);
    expect(effectiveGuards({ maxAlertAgeMs: 0 }, { maxAlertAgeMs: 300_000 }).maxAlertAgeMs).toBe(
      300_000,
    );
    expect(
      effectiveGuards({ maxAlertAgeMs: 900_000 }, { maxAlertAgeMs: 3_600_000 }).maxAlertAgeMs,
    ).toBe(900_000);
    expect(effectiveGuards({ maxAlertAgeMs: 900_000 }, { maxAlertAgeMs: 0 }).maxAlertAgeMs).toBe(
      900_000,
    );
    expect(() => effectiveGuards({ maxAlertAgeMs: -1 })).toThrow(/maxAlertAge must be/);
  });

  it('per-target cooldown', async () => {
    const { remediator, fleet, advance } = setup({ cooldownMs: 60_000 });
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    advance(30_000);
    const [d] = await remediator.handle(alert());
    expect(d).toMatchObject({ decision: 'suppressed', guard: 'cooldown' });
    expect((await remediator.handle(alert({ key: { 'host.name': 'web-2' } })))[0]!.decision).toBe(
      'executed',
    ); // another target
    advance(31_000);
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    expect(fleet.calls).toHaveLength(3);
  });

  it('per-rule and global budgets', async () => {
    const { remediator } = setup({
      budget: { max: 2, windowMs: 60_000 },
      globalBudget: { max: 3, windowMs: 60_000 },
    });
    const host = (h: string, rule = 'r1') => alert({ rule, key: { 'host.name': h } });
    expect((await remediator.handle(host('a')))[0]!.decision).toBe('executed');
    expect((await remediator.handle(host('b')))[0]!.decision).toBe('executed');
    expect((await remediator.handle(host('c')))[0]).toMatchObject({
      guard: 'budget',
      reason: expect.stringMatching(/rule r1/),
    });
    expect((await remediator.handle(host('d', 'r2')))[0]!.decision).toBe('executed');
    expect((await remediator.handle(host('e', 'r3')))[0]).toMatchObject({
      guard: 'budget',
      reason: expect.stringMatching(/global/),
    });
  });

  it('blast radius: never replace more than a share of the group per window', async () => {
    const { remediator } = setup({ maxBlastRadius: '50%' });
    const results = [];
    for (const h of ['a', 'b', 'c'])
      results.push((await remediator.handle(alert({ key: { 'host.name': h } })))[0]!);
    expect(results.map((d) => d.guard ?? d.decision)).toEqual([
      'executed',
      'executed',
      'blast-radius',
    ]);
  });

  it('min-healthy floor: never below it, but a sick member can always be replaced', async () => {
    const { remediator, fleet } = setup({ minHealthy: '75%' });
    fleet.health = {
      group: 'web',
      size: 4,
      healthy: 3,
      members: [
        { id: 'web-1', healthy: true },
        { id: 'web-2', healthy: false },
      ],
    };
    expect((await remediator.handle(alert()))[0]).toMatchObject({ guard: 'min-healthy' });
    expect((await remediator.handle(alert({ key: { 'host.name': 'web-2' } })))[0]!.decision).toBe(
      'executed',
    );
  });

  it('concurrency cap: actions beyond it are suppressed while others run', async () => {
    const { remediator, fleet } = setup({ concurrency: 1 });
    let release = () => {};
    fleet.gate = new Promise<void>((r) => (release = r));
    const first = remediator.handle(alert({ key: { 'host.name': 'a' } }));
    await new Promise((r) => setTimeout(r, 20));
    const [second] = await remediator.handle(alert({ key: { 'host.name': 'b' } }));
    expect(second).toMatchObject({ guard: 'concurrency' });
    release();
    expect((await first)[0]!.decision).toBe('executed');
  });

  it('circuit breaker: after N remediations of one key it stops and escalates once', async () => {
    const { remediator, fleet, pager, advance } = setup({
      breaker: { max: 2, windowMs: 600_000, notify: 'pager' },
    });
    const outcomes = [];
    for (let i = 0; i < 4; i++) {
      outcomes.push((await remediator.handle(alert()))[0]!);
      advance(10_000);
    }
    expect(outcomes.map((d) => d.guard ?? d.decision)).toEqual([
      'executed',
      'executed',
      'circuit-breaker',
      'circuit-breaker',
    ]);
    expect(fleet.calls).toHaveLength(2);
    expect(pager.calls).toHaveLength(1);
    expect(pager.calls[0]!.target).toMatch(/stopped remediating web-replica-silent/);
  });

  it('inhibition: a service-wide alert suppresses per-instance actions for that service', async () => {
    const { remediator } = setup();
    await remediator.handle(
      alert({ rule: 'web-down', key: { 'service.name': 'web' }, actions: [] }),
    );
    const [d] = await remediator.handle(alert({ key: { 'host.name': 'web-1' } }));
    expect(d).toMatchObject({ guard: 'inhibited' });
    const other = alert({
      key: { 'host.name': 'api-1' },
      sample: { '@timestamp': 0, 'service.name': 'api' },
    });
    expect((await remediator.handle(other))[0]!.decision).toBe('executed');
  });

  it('silences with expiry, maintenance windows and the kill switch', async () => {
    const { remediator, store, advance } = setup({
      maintenance: [{ days: [0, 1, 2, 3, 4, 5, 6], from: '03:00', to: '04:00' }],
    });
    const id = store.addSilence(
      { rule: 'web-replica-silent', 'labels.team': 'platform' },
      Date.parse('2024-01-01T00:10:00Z'),
      'deploying',
    );
    expect((await remediator.handle(alert()))[0]).toMatchObject({
      guard: 'silenced',
      reason: expect.stringMatching(/deploying/),
    });
    advance(11 * 60_000); // the silence expired
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    expect(store.removeSilence(id)).toBe(true);
    advance(3 * 3_600_000); // 03:11 UTC
    expect((await remediator.handle(alert()))[0]).toMatchObject({ guard: 'maintenance' });
    advance(3_600_000);
    store.setKillSwitch(true);
    expect((await remediator.handle(alert()))[0]).toMatchObject({ guard: 'kill-switch' });
    store.setKillSwitch(false);
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
  });

  it('idempotency: a replayed alert, or a second worker on the same store, never acts twice', async () => {
    const path = dbPath();
    const one = setup({}, { store: openActionStore(path) });
    const two = setup({}, { store: openActionStore(path) });
    const a = alert();
    const [first, second] = await Promise.all([one.remediator.handle(a), two.remediator.handle(a)]);
    expect([first[0]!.decision, second[0]!.decision].sort()).toEqual(['executed', 'suppressed']);
    expect(one.fleet.calls.length + two.fleet.calls.length).toBe(1);
    expect((await one.remediator.handle(a))[0]).toMatchObject({ guard: 'idempotency' });
  });

  it('a claim left without a journal entry (a crash mid-action) is reported, not hidden', () => {
    const store = openActionStore(dbPath());
    store.claim('a9#0', 1);
    store.claim('a8#0', 2);
    store.record({
      id: 'a8#0',
      at: 2,
      alertId: 'a8',
      rule: 'r',
      key: {},
      adapter: 'fleet',
      operation: 'scale',
      target: 'web',
      decision: 'executed',
    });
    expect(store.interruptedClaims()).toEqual([{ id: 'a9#0', at: 1 }]);
  });

  it('cooldowns, budgets and idempotency hold across a restart', async () => {
    const path = dbPath();
    const a = alert();
    const before = setup({ cooldownMs: 60_000 }, { store: openActionStore(path) });
    await before.remediator.handle(a);
    before.store.close();
    const after = setup({ cooldownMs: 60_000 }, { store: openActionStore(path) });
    expect((await after.remediator.handle(a))[0]).toMatchObject({ guard: 'idempotency' });
    expect((await after.remediator.handle(alert()))[0]).toMatchObject({ guard: 'cooldown' });
  });

  it('when conditions, templates, action sets and failures are journaled', async () => {
    const { remediator, fleet } = setup(
      {},
      {
        actionSets: {
          replace: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
        },
      },
    );
    const guarded = alert({
      actions: [
        {
          adapter: 'fleet',
          operation: 'scale',
          target: '{{ labels.team }}',
          params: { by: 2 },
          when: { all: [{ fact: 'alert.count', operator: 'greaterThan', value: 10 }] },
        },
      ],
    });
    expect((await remediator.handle(guarded))[0]).toMatchObject({ guard: 'when' });
    expect(
      (await remediator.handle(alert({ figures: { count: 50 }, actions: guarded.actions })))[0],
    ).toMatchObject({ decision: 'executed', target: 'platform' });
    expect((await remediator.handle(alert({ actions: ['replace'] })))[0]).toMatchObject({
      decision: 'executed',
      target: 'web-1',
    });
    expect((await remediator.handle(alert({ actions: ['nope'] })))[0]).toMatchObject({
      decision: 'failed',
      error: expect.stringMatching(/no action set named "nope"/),
    });
    expect(
      (
        await remediator.handle(
          alert({
            actions: [
              { adapter: 'fleet', operation: 'kill-and-replace', target: '{{ container.id }}' },
            ],
          }),
        )
      )[0],
    ).toMatchObject({
      decision: 'failed',
      error: expect.stringMatching(/"container.id" is not set/),
    });
    fleet.fail = new Error('API unreachable');
    expect((await remediator.handle(alert({ key: { 'host.name': 'web-9' } })))[0]).toMatchObject({
      decision: 'failed',
      error: 'API unreachable',
    });
    fleet.fail = undefined;
    fleet.decline = new AdapterDeclined(
      'Cannot evict pod as it would violate the pod disruption budget',
      'pdb',
    );
    expect((await remediator.handle(alert({ key: { 'host.name': 'web-8' } })))[0]).toMatchObject({
      decision: 'suppressed',
      guard: 'adapter',
    });
  });
});

describe('guard rails, further', () => {
  it('dry-run counts its own would-be actions, apart from real ones', async () => {
    const path = dbPath();
    const shadow = setup(
      { dryRun: true, budget: { max: 1, windowMs: 60_000 } },
      { store: openActionStore(path) },
    );
    const host = (h: string) => alert({ key: { 'host.name': h } });
    expect((await shadow.remediator.handle(host('a')))[0]!.decision).toBe('dry-run');
    expect((await shadow.remediator.handle(host('b')))[0]).toMatchObject({ guard: 'budget' });
    expect(shadow.fleet.calls).toEqual([]);
    // The live remediator on the same store has its whole budget.
    const live = setup({ budget: { max: 1, windowMs: 60_000 } }, { store: openActionStore(path) });
    expect((await live.remediator.handle(host('c')))[0]!.decision).toBe('executed');
  });

  it('a rule opts into dry-run and tightens the cooldown; other rules keep the global guards', async () => {
    const { remediator, fleet, advance } = setup(
      { cooldownMs: 10_000 },
      {
        ruleGuards: { 'web-replica-silent': { dryRun: true }, 'api-down': { cooldownMs: 60_000 } },
      },
    );
    expect((await remediator.handle(alert()))[0]!.decision).toBe('dry-run');
    const api = (h: string) => alert({ rule: 'api-down', key: { 'host.name': h } });
    expect((await remediator.handle(api('api-1')))[0]!.decision).toBe('executed');
    advance(30_000);
    expect((await remediator.handle(api('api-1')))[0]).toMatchObject({
      guard: 'cooldown',
      reason: expect.stringMatching(/cooldown 60s/),
    });
    expect(fleet.calls).toHaveLength(1);
  });

  it('the kill switch from configuration and from the API', async () => {
    const configured = setup({ killSwitch: true });
    expect((await configured.remediator.handle(alert()))[0]).toMatchObject({
      guard: 'kill-switch',
      reason: expect.stringMatching(/configuration/),
    });
    const { remediator, fleet } = setup();
    await remediator.setKillSwitch(true);
    expect(await remediator.killSwitch()).toBe(true);
    expect((await remediator.handle(alert()))[0]).toMatchObject({ guard: 'kill-switch' });
    await remediator.setKillSwitch(false);
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    expect(fleet.calls).toHaveLength(1);
  });

  it('min-healthy also holds a scale-down', async () => {
    const { remediator, fleet } = setup({ minHealthy: 3 });
    const scale = (params: Record<string, unknown>) =>
      alert({
        key: { 'service.name': 'web' },
        actions: [{ adapter: 'fleet', operation: 'scale', target: '{{ service.name }}', params }],
      });
    expect((await remediator.handle(scale({ by: -2 })))[0]).toMatchObject({
      guard: 'min-healthy',
      reason: 'web has 4 healthy of 4; acting would leave 2, below the floor of 3',
    });
    expect((await remediator.handle(scale({ to: 3 })))[0]!.decision).toBe('executed');
    expect((await remediator.handle(scale({ by: 2 })))[0]!.decision).toBe('executed');
    expect(fleet.calls.map((c) => c.params)).toEqual([{ to: 3 }, { by: 2 }]);
  });

  it('a describe that fails stops a shrinking action as failed', async () => {
    const { remediator, fleet } = setup({ minHealthy: 1 });
    fleet.describeFails = new Error('API server unreachable');
    expect((await remediator.handle(alert()))[0]).toMatchObject({
      decision: 'failed',
      error: 'describe failed: API server unreachable',
    });
    expect(fleet.calls).toEqual([]);
  });

  it('an adapter that does not answer in time fails the action and is told to abort', async () => {
    const { remediator, fleet } = setup({}, { actionTimeoutMs: 50 });
    fleet.gate = new Promise(() => {});
    const started = Date.now();
    const [d] = await remediator.handle(alert());
    expect(d).toMatchObject({
      decision: 'failed',
      error: 'the adapter did not answer within 50 ms',
    });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('the breaker escalates once per open breaker, and again once it closed and reopened', async () => {
    const { remediator, fleet, pager, advance, store } = setup({
      breaker: { max: 1, windowMs: 60_000, notify: 'pager' },
    });
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    for (let i = 0; i < 3; i++) {
      advance(1_000);
      expect((await remediator.handle(alert()))[0]).toMatchObject({ guard: 'circuit-breaker' });
    }
    expect(pager.calls).toHaveLength(1);
    const note = pager.calls[0]!.params as Notification;
    expect(note).toMatchObject({ severity: 'critical' });
    expect(note.text).toMatch(/1 remediations within 60s did not fix it/);
    expect(pager.calls[0]!.ctx).toMatchObject({ alertId: expect.stringMatching(/^alert-/) });
    advance(60_000); // the window slid: the breaker closed
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    advance(1_000);
    expect((await remediator.handle(alert()))[0]!.guard).toBe('circuit-breaker');
    expect(pager.calls).toHaveLength(2);
    expect(fleet.calls).toHaveLength(2);
    expect(
      store
        .list()
        .filter((d) => d.target === 'escalation')
        .map((d) => d.decision),
    ).toEqual(['executed', 'executed']);
  });

  it('a breaker trip and a storm: each notice sent, journaled and logged once', async () => {
    const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
    const log = (level: string) => (fields: object, msg?: string) =>
      void lines.push({ level, msg: msg ?? '', fields: fields as Record<string, unknown> });
    const { remediator, pager, store, advance } = setup(
      {
        breaker: { max: 1, windowMs: 600_000, notify: 'pager' },
        maxKeysPerRule: { max: 2, windowMs: 600_000, notify: 'pager' },
      },
      { logger: { info: log('info'), warn: log('warn'), error: log('error') } },
    );
    for (const host of ['h1', 'h1', 'h1', 'h2', 'h3', 'h4']) {
      await remediator.handle(alert({ key: { 'host.name': host } }));
      advance(1_000);
    }
    expect(pager.calls.map((c) => c.target)).toEqual([
      expect.stringMatching(/stopped remediating/),
      expect.stringMatching(/a storm/),
    ]);
    const journal = store.list({ limit: 100 });
    expect(journal.filter((d) => /#(breaker|storm)$/.test(d.id))).toHaveLength(2);
    // One log line per journaled decision, notices included, and nothing else.
    expect(lines).toHaveLength(journal.length);
    const notices = lines.filter((l) => /storm|stopped remediating|escalation/.test(l.msg));
    expect(notices.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'notice executed: escalation'],
      ['warn', 'notice executed: storm'],
    ]);
  });

  it('inhibition is durable: another worker on the same store sees it, and it expires', async () => {
    const path = dbPath();
    const one = setup({ inhibitMs: 60_000 }, { store: openActionStore(path) });
    const two = setup({ inhibitMs: 60_000 }, { store: openActionStore(path) });
    await one.remediator.handle(
      alert({ rule: 'web-down', key: { 'service.name': 'web' }, actions: [] }),
    );
    expect((await two.remediator.handle(alert()))[0]).toMatchObject({
      guard: 'inhibited',
      reason: expect.stringMatching(/service-wide alert for web/),
    });
    two.advance(60_000);
    expect((await two.remediator.handle(alert()))[0]!.decision).toBe('executed');
  });

  it('notify has its own cooldown and budgets, apart from remediations; silences hold it too', async () => {
    const { remediator, pager, fleet, store, advance } = setup({
      cooldownMs: 600_000,
      globalBudget: { max: 1, windowMs: 600_000 },
    });
    const page = () =>
      alert({
        actions: [
          // Paged per alert (group: false), so the notify guards hold each alert.
          { adapter: 'pager', operation: 'notify', target: '#{{ labels.team }}', group: false },
        ],
      });
    expect((await remediator.handle(page()))[0]!.decision).toBe('executed');
    expect(pager.calls[0]!.target).toBe('web-replica-silent: expiry (#platform)');
    // The same target within the notify cooldown (default 1 min): held, and journaled.
    expect((await remediator.handle(page()))[0]).toMatchObject({
      decision: 'suppressed',
      guard: 'cooldown',
    });
    // The page spent none of the remediations' global budget of 1, nor they its.
    expect((await remediator.handle(alert()))[0]!.decision).toBe('executed');
    advance(60_000);
    expect((await remediator.handle(page()))[0]!.decision).toBe('executed');
    expect(pager.calls).toHaveLength(2);
    expect(fleet.calls).toHaveLength(1);
    store.addSilence({ 'labels.team': 'platform' }, Date.parse('2024-01-02T00:00:00Z'));
    expect((await remediator.handle(page()))[0]!.guard).toBe('silenced');
  });

  it('300 fatal lines from 300 hosts page once, not 300 times; every one is journaled', async () => {
    const { remediator, pager, store } = setup();
    // Ungrouped, the notify cooldown is what holds them (grouped: 'notification groups').
    const notify = [{ adapter: 'pager', operation: 'notify' as const, group: false }];
    const decisions = [];
    for (let i = 0; i < 300; i++)
      decisions.push(
        ...(await remediator.handle(alert({ key: { 'host.name': `h${i}` }, actions: notify }))),
      );
    expect(pager.calls).toHaveLength(1);
    expect(decisions.filter((d) => d.decision === 'executed')).toHaveLength(1);
    expect(decisions.filter((d) => d.guard === 'cooldown')).toHaveLength(299);
    expect(store.list({ limit: 1_000 })).toHaveLength(300);
  });

  it('notify budgets per rule and across rules, and notify concurrency', async () => {
    const { remediator, pager } = setup({
      notify: { globalBudget: { max: 30, windowMs: 3_600_000 } },
    });
    const perHost = [
      { adapter: 'pager', operation: 'notify' as const, target: '{{ host.name }}', group: false },
    ];
    const page = (i: number, rule = 'web-replica-silent') =>
      alert({ rule, key: { 'host.name': `h${i}` }, actions: perHost });
    const outcomes: string[] = [];
    for (let i = 0; i < 25; i++)
      outcomes.push(...(await remediator.handle(page(i))).map((d) => d.guard ?? d.decision));
    // Default: 20 per rule per hour.
    expect(outcomes.filter((o) => o === 'executed')).toHaveLength(20);
    expect(outcomes.slice(20)).toEqual(Array(5).fill('budget'));
    for (let i = 100; i < 115; i++) await remediator.handle(page(i, 'other-rule'));
    expect(pager.calls).toHaveLength(30); // the global 30 per hour
    const [d] = await remediator.handle(page(99, 'third-rule'));
    expect(d).toMatchObject({ guard: 'budget' });
    expect(d!.reason).toMatch(/global budget of 30 notifications/);

    const slow = setup({ notify: { concurrency: 1 } });
    let open!: () => void;
    slow.pager.gate = new Promise<void>((r) => (open = r));
    const first = slow.remediator.handle(page(1));
    await new Promise((r) => setTimeout(r, 20));
    // A notification in flight takes the only notify slot; a remediation is not held.
    expect((await slow.remediator.handle(page(2)))[0]).toMatchObject({ guard: 'concurrency' });
    expect((await slow.remediator.handle(alert()))[0]!.decision).toBe('executed');
    open();
    expect((await first)[0]!.decision).toBe('executed');
  });

  it('storm cap: a rule acts on at most N distinct keys per window, then tells a person once', async () => {
    const { remediator, fleet, pager, store, advance } = setup({
      maxKeysPerRule: { max: 50, windowMs: 600_000, notify: 'pager' },
    });
    const decisions = [];
    for (let i = 0; i < 60; i++)
      decisions.push(...(await remediator.handle(alert({ key: { 'host.name': `h${i}` } }))));
    expect(fleet.calls).toHaveLength(50);
    const stormed = decisions.filter((d) => d.guard === 'storm');
    expect(stormed).toHaveLength(10);
    expect(stormed[0]!.reason).toMatch(/acted on 50 distinct keys within 600s \(cap 50\)/);
    // One notice about the storm itself, journaled, however many keys it held back.
    expect(pager.calls).toHaveLength(1);
    expect(pager.calls[0]!.target).toMatch(/suspended the actions of web-replica-silent/);
    expect(store.list({ limit: 1_000 }).filter((d) => d.target === 'storm')).toHaveLength(1);
    // A key acted on within the window goes on; a new one waits for the window to pass.
    advance(1_000);
    expect((await remediator.handle(alert({ key: { 'host.name': 'h0' } })))[0]!.decision).toBe(
      'executed',
    );
    advance(600_000);
    expect((await remediator.handle(alert({ key: { 'host.name': 'new' } })))[0]!.decision).toBe(
      'executed',
    );
  });

  it('storm cap on by default (50 keys per 10 min), also for notify, noticed through its adapter', async () => {
    const { remediator, pager } = setup({ notify: { budget: { max: 1_000, windowMs: 60_000 } } });
    const perHost = [
      { adapter: 'pager', operation: 'notify' as const, target: '{{ host.name }}', group: false },
    ];
    const guards: string[] = [];
    for (let i = 0; i < 300; i++)
      guards.push(
        ...(
          await remediator.handle(alert({ key: { 'host.name': `h${i}` }, actions: perHost }))
        ).map((d) => d.guard ?? d.decision),
      );
    expect(guards.filter((g) => g === 'executed')).toHaveLength(50);
    expect(guards.filter((g) => g === 'storm')).toHaveLength(250);
    expect(pager.calls).toHaveLength(51);
    expect(pager.calls[50]!.target).toMatch(/a storm/);
    const notice = pager.calls[50]!.params as { text: string };
    expect(notice.text).toMatch(
      /rule web-replica-silent alerted for more than 50 distinct keys in 10 min/,
    );
  });

  it('a notification built from event values is clipped, whatever the values', async () => {
    const { remediator, pager } = setup();
    await remediator.handle(
      alert({
        key: { 'host.name': `h${'x'.repeat(50_000)}` },
        figures: { term: 'y'.repeat(50_000) },
        // A target from the huge key would be refused (targets hold ≤ 253 characters of an
        // event value); the page's title and text still carry the key and figures.
        actions: [
          { adapter: 'pager', operation: 'notify', target: '{{ alert.rule }}', group: false },
        ],
      }),
    );
    const sent = pager.calls[0]!.params as { title: string; text: string };
    expect(sent.title.length).toBeLessThanOrEqual(300);
    expect(sent.text.length).toBeLessThanOrEqual(4_000);
    expect(sent.text).toMatch(/…$/);
  });

  it('the alert kept with a journal entry is capped in bytes, with a marker', async () => {
    const { remediator, store } = setup({}, { maxAlertBytes: 4_096 });
    const huge = alert({
      sample: { message: 'x'.repeat(100_000), 'host.name': 'web-1' },
      figures: { count: 3 },
    });
    const [d] = await remediator.handle(huge);
    expect(d!.decision).toBe('executed'); // the action itself saw the whole alert
    const [kept] = store.list();
    expect(Buffer.byteLength(JSON.stringify(kept!.alert))).toBeLessThanOrEqual(4_096);
    expect(kept!.alert).toMatchObject({
      id: huge.id,
      rule: huge.rule,
      key: huge.key,
      figures: { count: 3 },
      sample: { truncated: expect.stringMatching(/^sample of 1000\d\d bytes dropped/) },
    });
    // An alert within the cap is kept whole.
    const small = alert();
    await remediator.handle(small);
    expect(store.list()[0]!.alert).toEqual(small);
  });

  it('emits and logs every decision, and passes the alert to the adapter', async () => {
    const logged: Array<{ level: string; obj: Record<string, unknown> }> = [];
    const log = (level: string) => (obj: object) =>
      logged.push({ level, obj: obj as Record<string, unknown> });
    const { remediator, fleet } = setup(
      { cooldownMs: 60_000 },
      { logger: { info: log('info'), warn: log('warn'), error: log('error') } },
    );
    const seen: string[] = [];
    remediator.on('decision', (d: { decision: string }) => seen.push(d.decision));
    const a = alert();
    await remediator.handle(a);
    await remediator.handle(alert());
    await remediator.handle(alert({ actions: ['missing'] }));
    expect(seen).toEqual(['executed', 'suppressed', 'failed']);
    expect(logged.map((l) => `${l.level} ${String(l.obj.guard ?? l.obj.decision)}`)).toEqual([
      'info executed',
      'info cooldown',
      'warn failed',
    ]);
    expect(fleet.calls[0]!.ctx).toMatchObject({
      idempotencyKey: `${a.id}#0`,
      alertId: a.id,
      alert: a,
      rule: a.rule,
    });
  });

  it('refuses a configuration that could only fail later', () => {
    expect(() => setup({ breaker: { max: 2, windowMs: 60_000, notify: 'nobody' } })).toThrow(
      /breaker.notify names "nobody"/,
    );
    expect(() => setup({ maintenance: [{ days: [1], from: '9', to: '10' }] })).toThrow(/HH:MM/);
    expect(() => setup({}, { ruleGuards: { r: { concurrency: 0 } } })).toThrow(/concurrency/);
    expect(() => setup({ maxKeysPerRule: { max: 5, windowMs: 1, notify: 'nobody' } })).toThrow(
      /maxKeysPerRule.notify names "nobody"/,
    );
  });
});

/**
 * Timers the test fires by hand: notification groups wait on wall-clock timers, and
 * these move the remediator's clock and run what fell due, in order.
 */
function manualTimers(advance: (ms: number) => number) {
  let now = advance(0);
  let next = 0;
  const due = new Map<number, { at: number; fn: () => void }>();
  return {
    timers: {
      setTimeout: (fn: () => void, ms: number) => {
        const id = ++next;
        due.set(id, { at: now + ms, fn });
        return id;
      },
      clearTimeout: (id: unknown) => void due.delete(id as number),
    },
    pending: () => due.size,
    /** Moves time by `ms`, firing each timer that falls due at its own instant. */
    run(ms: number) {
      const end = now + ms;
      for (;;) {
        const [id, t] = [...due.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
        if (id === undefined || t!.at > end) break;
        due.delete(id);
        now = advance(t!.at - now);
        t!.fn();
      }
      now = advance(end - now);
    },
  };
}

describe('notification groups', () => {
  const grouped = (extra: Record<string, unknown> = {}) => [
    { adapter: 'pager', operation: 'notify' as const, group_wait: '30s', ...extra },
  ];
  function groupSetup(extra: Partial<ConstructorParameters<typeof Remediator>[0]> = {}) {
    let clock = Date.parse('2024-01-01T00:00:00Z');
    const advance = (ms: number) => (clock += ms);
    const t = manualTimers(advance);
    const s = setup({}, { clock: () => clock, groupTimers: t.timers, ...extra });
    /** Fires due timers, then waits for the notifications they started. */
    const run = async (ms: number) => {
      t.run(ms);
      await s.remediator.settled();
    };
    return { ...s, ...t, run };
  }

  it('300 alerts for 300 hosts within group_wait: one page listing them, 301 journal entries', async () => {
    const { remediator, pager, store, run } = groupSetup();
    const decisions = [];
    for (let i = 0; i < 300; i++)
      decisions.push(
        ...(await remediator.handle(
          alert({ key: { 'host.name': `web-${i + 1}` }, actions: grouped() }),
        )),
      );
    expect(pager.calls).toHaveLength(0); // waiting for group_wait
    expect(decisions.every((d) => d.decision === 'suppressed' && d.guard === 'group')).toBe(true);
    const groupId = `${decisions[0]!.alertId}#0/group`;
    expect(decisions.every((d) => d.reason!.includes(groupId))).toBe(true);
    await run(29_000);
    expect(pager.calls).toHaveLength(0);
    await run(1_000);
    expect(pager.calls).toHaveLength(1);
    const page = pager.calls[0]!.params as Notification;
    expect(page.title).toMatch(
      /^\[web-replica-silent\] 300 alerts \(web-1, web-2, .*web-20 and 280 more\)$/,
    );
    for (let i = 1; i <= 20; i++) expect(page.text).toContain(`web-${i}\n`);
    expect(page.text).not.toContain('web-21');
    expect(page.text).toMatch(/and 280 more/);
    const entries = store.list({ limit: 1_000 });
    expect(entries).toHaveLength(301);
    expect(entries.find((e) => e.id === groupId)).toMatchObject({
      decision: 'executed',
      operation: 'notify',
      result: { alerts: 300 },
    });
    // `drover actions list` shows the count on the notification's line.
    expect(formatDecision(entries.find((e) => e.id === groupId)!)).toMatch(
      /executed +web-replica-silent {2}pager:notify web-replica-silent .* {2}a grouped notification of 300 alerts$/,
    );
  });

  it('a second wave after group_wait goes out at group_interval, not before', async () => {
    const { remediator, pager, run } = groupSetup();
    const actions = grouped({ group_interval: '5m' });
    await remediator.handle(alert({ key: { 'host.name': 'a' }, actions }));
    await run(30_000);
    expect(pager.calls).toHaveLength(1);
    await run(60_000);
    await remediator.handle(alert({ key: { 'host.name': 'b' }, actions }));
    await remediator.handle(alert({ key: { 'host.name': 'c' }, actions }));
    await run(30_000); // group_wait is for new groups only
    expect(pager.calls).toHaveLength(1);
    await run(60_000 * 5 - 90_000 - 1);
    expect(pager.calls).toHaveLength(1);
    await run(1);
    expect(pager.calls).toHaveLength(2);
    expect((pager.calls[1]!.params as Notification).title).toMatch(/2 alerts \(b, c\)$/);
  });

  it('two rules make two groups; group_by key.host.name makes one group per host', async () => {
    const { remediator, pager, run } = groupSetup();
    for (let i = 0; i < 10; i++) {
      await remediator.handle(
        alert({ rule: 'r1', key: { 'host.name': `h${i}` }, actions: grouped() }),
      );
      await remediator.handle(
        alert({ rule: 'r2', key: { 'host.name': `h${i}` }, actions: grouped() }),
      );
    }
    await run(30_000);
    expect(pager.calls.map((c) => c.target).sort()).toEqual([
      '[r1] 10 alerts (h0, h1, h2, h3, h4, h5, h6, h7, h8, h9)',
      '[r2] 10 alerts (h0, h1, h2, h3, h4, h5, h6, h7, h8, h9)',
    ]);
    pager.calls = [];
    const perHost = grouped({ group_by: ['key.host.name'], target: '{{ host.name }}' });
    for (const h of ['x', 'y', 'x', 'x'])
      await remediator.handle(alert({ rule: 'r3', key: { 'host.name': h }, actions: perHost }));
    await run(30_000);
    expect(pager.calls.map((c) => c.target).sort()).toEqual([
      '[r3] 1 alert (y)',
      '[r3] 3 alerts (x, x, x)',
    ]);
  });

  it('grouping is the default: 300 alerts of a plain notify action are one page after 10 s', async () => {
    const { remediator, pager, store, run } = groupSetup();
    const plain = [{ adapter: 'pager', operation: 'notify' as const }];
    const decisions = [];
    for (let i = 0; i < 300; i++)
      decisions.push(
        ...(await remediator.handle(
          alert({ key: { 'host.name': `web-${i + 1}` }, actions: plain }),
        )),
      );
    expect(decisions.every((d) => d.guard === 'group')).toBe(true);
    await run(9_999);
    expect(pager.calls).toHaveLength(0);
    await run(1);
    expect(pager.calls).toHaveLength(1);
    expect(pager.calls[0]!.target).toMatch(
      /^\[web-replica-silent\] 300 alerts \(web-1, .* and \d+ more\)$/,
    );
    expect(store.list({ limit: 1_000 })).toHaveLength(301);
  });

  it('repeat_interval: a group firing for keys already paged waits for it; a new key does not', async () => {
    const { remediator, pager, run } = groupSetup();
    const actions = [
      {
        adapter: 'pager',
        operation: 'notify' as const,
        group_interval: '5m',
        repeat_interval: '1h',
      },
    ];
    const page = (host: string) =>
      remediator.handle(alert({ key: { 'host.name': host }, actions }));
    await page('a');
    await run(10_000); // group_wait (default)
    expect(pager.calls).toHaveLength(1);
    // `a` keeps firing: held at every group_interval tick until an hour after the page.
    for (let i = 0; i < 11; i++) {
      await page('a');
      await run(5 * 60_000);
    }
    expect(pager.calls).toHaveLength(1);
    await page('a');
    await run(5 * 60_000 - 1);
    expect(pager.calls).toHaveLength(1);
    await run(1); // the first tick at or after repeat_interval
    expect(pager.calls).toHaveLength(2);
    expect(pager.calls[1]!.target).toMatch(/12 alerts \(a, a, a, .*\)$/);
    // A key not paged yet goes out at the next group_interval tick, repeats with it.
    await page('a');
    await page('b');
    await run(5 * 60_000);
    expect(pager.calls).toHaveLength(3);
    expect(pager.calls[2]!.target).toMatch(/2 alerts \(a, b\)$/);
    // Quiet for repeat_interval: the group is over, and the next alert opens a new one.
    await run(60 * 60_000);
    expect(remediator.groupCount).toBe(0);
    await page('a');
    await run(10_000);
    expect(pager.calls).toHaveLength(4);
  });

  it('close() keeps a batch of repeats held; group: false pages per alert', async () => {
    const { remediator, pager, run } = groupSetup();
    const actions = [{ adapter: 'pager', operation: 'notify' as const, group_wait: '10s' }];
    await remediator.handle(alert({ key: { 'host.name': 'a' }, actions }));
    await run(10_000);
    await run(2 * 60_000); // past the notify cooldown: only repeat_interval holds it
    await remediator.handle(alert({ key: { 'host.name': 'a' }, actions }));
    await remediator.close();
    expect(pager.calls).toHaveLength(1);
    const [d] = await setup().remediator.handle(
      alert({ actions: [{ adapter: 'pager', operation: 'notify', group: false }] }),
    );
    expect(d!.decision).toBe('executed');
  });

  it('close() sends the groups still waiting', async () => {
    const { remediator, pager, store, pending } = groupSetup();
    await remediator.handle(alert({ key: { 'host.name': 'a' }, actions: grouped() }));
    await remediator.handle(alert({ key: { 'host.name': 'b' }, actions: grouped() }));
    expect(pager.calls).toHaveLength(0);
    await remediator.close();
    expect(pager.calls).toHaveLength(1);
    expect(pager.calls[0]!.target).toMatch(/2 alerts \(a, b\)$/);
    expect(pending()).toBe(0);
    expect(store.list().filter((d) => d.decision === 'executed')).toHaveLength(1);
  });

  it('groups are capped per remediator; beyond, alerts take the cooldown path, counted', async () => {
    const { remediator, pager, store, run } = groupSetup({ maxNotifyGroups: 3 });
    const perHost = grouped({ group_by: ['key.host.name'], target: '{{ host.name }}' });
    const decisions = [];
    for (let i = 0; i < 10; i++)
      decisions.push(
        ...(await remediator.handle(alert({ key: { 'host.name': `h${i}` }, actions: perHost }))),
      );
    expect(decisions.filter((d) => d.guard === 'group')).toHaveLength(3);
    expect(decisions.filter((d) => d.decision === 'executed')).toHaveLength(7);
    expect(remediator.groupOverflow).toBe(7);
    await run(30_000);
    expect(pager.calls).toHaveLength(10);
    expect(store.list({ limit: 100 })).toHaveLength(13);
  });

  it('the grouped page passes the notify guards as one notification', async () => {
    const { remediator, pager, store, run } = groupSetup({
      guards: { cooldownMs: 0, notify: { budget: { max: 1, windowMs: 3_600_000 } } },
    });
    const perHost = grouped({ group_by: ['key.host.name'], target: '{{ host.name }}' });
    for (let i = 0; i < 50; i++)
      await remediator.handle(alert({ key: { 'host.name': `h${i % 2}` }, actions: perHost }));
    await run(30_000);
    // Two groups, one notification allowed by the budget: the other is journaled held.
    expect(pager.calls).toHaveLength(1);
    const held = store
      .list({ limit: 100 })
      .filter((d) => d.id.endsWith('/group') && d.decision === 'suppressed');
    expect(held).toHaveLength(1);
    expect(held[0]).toMatchObject({ guard: 'budget', result: { alerts: 25 } });
  });

  it('group options are checked before anything runs', () => {
    expect(() =>
      setup(
        {},
        {
          actionSets: {
            bad: [{ adapter: 'pager', operation: 'notify', group_by: ['host'] } as never],
          },
        },
      ),
    ).toThrow(/group_by.*rule, labels\.X or key\.FIELD/);
  });
});

describe('notification groups: hostile keys', () => {
  it('long or multi-line keys cannot push the count out of the page or forge its lines', async () => {
    let clock = Date.parse('2024-01-01T00:00:00Z');
    const t = manualTimers((ms) => (clock += ms));
    const { remediator, pager } = setup({}, { clock: () => clock, groupTimers: t.timers });
    const actions = [{ adapter: 'pager', operation: 'notify' as const, group_wait: '30s' }];
    for (let i = 0; i < 300; i++)
      await remediator.handle(
        alert({ key: { 'host.name': `h${i}\nand 0 more\n${'x'.repeat(10_000)}` }, actions }),
      );
    t.run(30_000);
    await remediator.settled();
    const page = pager.calls[0]!.params as Notification;
    expect(page.title.length).toBeLessThanOrEqual(300);
    expect(page.title).toMatch(/^\[web-replica-silent\] 300 alerts \(h0 .* and \d+ more\)$/);
    expect(page.text.split('\n').filter((l) => l.startsWith('and '))).toEqual(['and 280 more']);
    expect(page.text.split('\n').every((l) => l.length <= 64 || l.startsWith('grouped by'))).toBe(
      true,
    );
  });
});
