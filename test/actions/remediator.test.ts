import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type GroupHealth,
  type GuardConfig,
  openActionStore,
  ProcessAdapter,
  Remediator,
} from '../../actions/index.ts';
import type { Alert } from '../../rules/index.ts';

const REPLICA = join(import.meta.dirname, 'fixtures', 'replica.js');
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
  calls: Array<{ op: string; target: string; params?: unknown }> = [];
  health: GroupHealth = { group: 'web', size: 4, healthy: 4 };
  decline: AdapterDeclined | undefined;
  fail: Error | undefined;
  /** While set, actions wait on it: a slow orchestrator. */
  gate: Promise<void> | undefined;
  constructor(readonly name: string) {}
  private async act(op: string, target: string, params?: unknown): Promise<ActionResult> {
    if (this.gate) await this.gate;
    if (this.decline) return Promise.reject(this.decline);
    if (this.fail) return Promise.reject(this.fail);
    this.calls.push({ op, target, params });
    return Promise.resolve({ detail: { op, target } });
  }
  killAndReplace(target: string) {
    return this.act('kill-and-replace', target);
  }
  scale(target: string, params: unknown) {
    return this.act('scale', target, params);
  }
  notify(n: { title: string }) {
    return this.act('notify', n.title);
  }
  async describe(): Promise<GroupHealth> {
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

const opened: ProcessAdapter[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.close()));
});

describe('remediation end to end with real processes', () => {
  it('an alert kills and replaces a real replica: new pid, new port answering HTTP, journaled', async () => {
    const fleet = new ProcessAdapter('fleet', {
      web: {
        command: process.execPath,
        args: [REPLICA],
        replicas: 2,
        healthPath: '/healthz',
        graceMs: 2_000,
      },
    });
    opened.push(fleet);
    await fleet.start();
    await waitHealthy(fleet, 'web', 2);
    const victim = fleet.replicas('web')[0]!;
    const store = openActionStore(dbPath());
    const remediator = new Remediator({
      store,
      adapters: new Map([['fleet', fleet as Adapter]]),
      guards: { minHealthy: 1 },
    });
    const [decision] = await remediator.handle(alert({ key: { 'host.name': victim.id } }));
    expect(decision).toMatchObject({
      decision: 'executed',
      target: victim.id,
      adapter: 'fleet',
      operation: 'kill-and-replace',
    });
    const started = (decision!.result as { started: { id: string; pid: number; port: number } })
      .started;
    expect(started.pid).not.toBe(victim.pid);
    expect(started.port).not.toBe(victim.port);
    expect(fleet.replicas('web').map((r) => r.id)).not.toContain(victim.id);
    await waitHealthy(fleet, 'web', 2);
    const res = await fetch(`http://127.0.0.1:${started.port}/`);
    expect(((await res.json()) as { id: string }).id).toBe(started.id);
    expect(() => process.kill(victim.pid!, 0)).toThrow(); // the old process is gone
    expect(store.list()[0]).toMatchObject({ decision: 'executed', alertId: decision!.alertId });
  });

  it('the min-healthy floor reads real health over HTTP: a healthy replica is kept, a sick one replaced', async () => {
    const fleet = new ProcessAdapter('fleet', {
      web: { command: process.execPath, args: [REPLICA], replicas: 2, healthPath: '/healthz' },
      sick: {
        command: process.execPath,
        args: [REPLICA],
        replicas: 1,
        healthPath: '/healthz',
        env: { UNHEALTHY: '1' },
      },
    });
    opened.push(fleet);
    await fleet.start();
    await waitHealthy(fleet, 'web', 2);
    const remediator = new Remediator({
      store: openActionStore(dbPath()),
      adapters: new Map([['fleet', fleet as Adapter]]),
      guards: { minHealthy: 2 },
    });
    const [kept] = await remediator.handle(
      alert({ key: { 'host.name': fleet.replicas('web')[0]!.id } }),
    );
    expect(kept).toMatchObject({ decision: 'suppressed', guard: 'min-healthy' });
    expect(kept!.reason).toMatch(/has 2 healthy of 2; acting would leave 1/);
    const [replaced] = await remediator.handle(
      alert({ key: { 'host.name': fleet.replicas('sick')[0]!.id } }),
    );
    expect(replaced!.decision).toBe('executed');
  });

  it('scales a service within its bounds and restarts a replica that crashes', async () => {
    const fleet = new ProcessAdapter('fleet', {
      web: { command: process.execPath, args: [REPLICA], replicas: 1, max: 3 },
    });
    opened.push(fleet);
    await fleet.start();
    const result = await fleet.scale('web', { by: 5 });
    expect(result.detail).toMatchObject({ from: 1, to: 3, requested: 6, clamped: true });
    expect(fleet.replicas('web')).toHaveLength(3);
    await fleet.scale('web', { to: 1 });
    expect(fleet.replicas('web')).toHaveLength(1);
    const crashing = new ProcessAdapter('crashy', {
      api: {
        command: process.execPath,
        args: [REPLICA],
        replicas: 1,
        env: { CRASH_AFTER_MS: '100' },
      },
    });
    opened.push(crashing);
    const loops: unknown[] = [];
    crashing.on('crash-loop', (e) => loops.push(e));
    await crashing.start();
    const first = crashing.replicas()[0]!.id;
    await new Promise((r) => setTimeout(r, 2_500));
    expect(crashing.replicas()[0]?.id ?? 'restarting').not.toBe(first);
    expect(loops.length).toBeGreaterThan(0);
  });

  it('SIGKILLs a replica that ignores SIGTERM after the grace period', async () => {
    const fleet = new ProcessAdapter('fleet', {
      web: {
        command: process.execPath,
        args: [REPLICA],
        replicas: 1,
        graceMs: 300,
        env: { IGNORE_SIGTERM: '1' },
      },
    });
    opened.push(fleet);
    await fleet.start();
    await new Promise((r) => setTimeout(r, 200));
    const old = fleet.replicas()[0]!;
    const t = Date.now();
    await fleet.killAndReplace(old.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(250);
    expect(() => process.kill(old.pid!, 0)).toThrow();
  });
});

describe('guard rails', () => {
  it('dry-run decides and journals but does not act', async () => {
    const { remediator, fleet, store } = setup({ dryRun: true });
    const [d] = await remediator.handle(alert());
    expect(d!.decision).toBe('dry-run');
    expect(fleet.calls).toEqual([]);
    expect(store.list()[0]!.decision).toBe('dry-run');
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

async function waitHealthy(fleet: ProcessAdapter, service: string, n: number): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < 10_000) {
    if ((await fleet.describe(service)).healthy >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${service} did not become healthy`);
}
