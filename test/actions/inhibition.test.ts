import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Adapter,
  createAdapters,
  createRemediator,
  type GuardConfig,
  openSqliteStore,
} from '../../actions/index.ts';
import { type Alert, type AnyRule, Engine, type StateChange } from '../../rules/index.ts';

/**
 * Inhibition by firing state: a service-wide alert holds back per-instance actions for
 * its service while it fires, however long, and not after it resolves. Alerts and the
 * resolution come from the engine; actions go through a real exec adapter and SQLite.
 */
let adapters: Map<string, Adapter>;
beforeAll(async () => {
  adapters = await createAdapters({
    fleet: { type: 'exec', command: process.execPath, args: ['-e', '0'] },
  });
});
afterAll(async () => {
  await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
});

const T0 = Date.parse('2024-06-01T10:00:00Z');
const MIN = 60_000;
const base = { realert: 0, labels: {}, enabled: true } as const;
/** Service-wide: keyed by service only; resolves a minute after its last event. */
const outage: AnyRule = {
  ...base,
  name: 'checkout-down',
  type: 'any',
  query_key: ['service.name'],
  resolve_after: MIN,
  filter: { all: [{ fact: 'probe', operator: 'equal', value: 'failed' }] },
  actions: [],
};
/** Per instance: replace the host that logs a fatal error. */
const fatal: AnyRule = {
  ...base,
  name: 'host-fatal',
  type: 'any',
  query_key: ['service.name', 'host.name'],
  filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'fatal' }] },
  actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
};

/**
 * checkout's probes fail every 30 s for 20 minutes (one firing), then stop (it resolves a
 * minute later); web-1 logs fatal errors at 10 min (during) and at 30 min (after).
 */
function incident() {
  const alerts: Alert[] = [];
  const changes: StateChange[] = [];
  const engine = new Engine([outage, fatal], {
    allowedLatenessMs: 0,
    onAlert: (a) => alerts.push(a),
    onState: (c) => changes.push(c),
    resolvedOnly: true,
  });
  for (let t = 0; t <= 20 * MIN; t += 30_000)
    engine.process({ '@timestamp': T0 + t, 'service.name': 'checkout', probe: 'failed' });
  const during = { '@timestamp': T0 + 10 * MIN, 'service.name': 'checkout', 'host.name': 'web-1' };
  const events = [
    { ...during, 'log.level': 'fatal' as const },
    { ...during, '@timestamp': T0 + 30 * MIN, 'log.level': 'fatal' as const },
  ];
  return { engine, alerts, changes, events };
}

function setup(guards: GuardConfig = {}) {
  let now = T0;
  const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-inhibit-')), 'a.db'));
  const remediator = createRemediator({
    store,
    adapters,
    clock: () => now,
    guards: { cooldownMs: 0, ...guards },
  });
  return { store, remediator, at: (t: number) => (now = T0 + t) };
}

describe('inhibition by firing state', () => {
  it('holds per-instance actions while the service-wide alert fires, not after it resolves', async () => {
    const { store, remediator, at } = setup();
    const alerts: Alert[] = [];
    const changes: StateChange[] = [];
    const engine = new Engine([outage, fatal], {
      allowedLatenessMs: 0,
      onAlert: (a) => alerts.push(a),
      onState: (c) => changes.push(c),
      resolvedOnly: true,
    });
    const probe = (t: number) =>
      engine.process({ '@timestamp': T0 + t, 'service.name': 'checkout', probe: 'failed' });
    const crash = (t: number) =>
      engine.process({
        '@timestamp': T0 + t,
        'service.name': 'checkout',
        'host.name': 'web-1',
        'log.level': 'fatal',
      });

    probe(0);
    const [down] = alerts.splice(0);
    at(0);
    await remediator.handle(down!);
    // Ten minutes into a firing that goes on (probes every 30 s): longer than the old
    // 5-minute period, still inhibited.
    for (let t = 30_000; t <= 10 * MIN; t += 30_000) probe(t);
    crash(10 * MIN);
    const during = alerts.splice(0).find((a) => a.rule === 'host-fatal')!;
    at(10 * MIN);
    const [held] = await remediator.handle(during);
    expect(held).toMatchObject({ decision: 'suppressed', guard: 'inhibited' });
    expect(held!.reason).toBe(`the service-wide alert ${down!.id} for checkout is firing`);
    const inhibited = held!.guards!.find((g) => g.guard === 'inhibited')!;
    expect(inhibited).toMatchObject({
      passed: false,
      inputs: { service: 'checkout', inhibitingAlert: down!.id },
    });

    // The probes stop; a minute later the firing resolves, and the inhibition ends.
    probe(10 * MIN + 30_000);
    engine.process({ '@timestamp': T0 + 15 * MIN, message: 'time goes on' });
    const resolution = changes.find((c) => c.rule === 'checkout-down' && c.state === 'resolved')!;
    expect(resolution.alert).toBe(down!.id);
    at(15 * MIN);
    await remediator.resolved(resolution);
    expect(store.inhibitors('checkout', T0 + 15 * MIN)).toEqual([]);
    crash(16 * MIN);
    const after = alerts.splice(0).find((a) => a.rule === 'host-fatal')!;
    at(16 * MIN);
    const [acted] = await remediator.handle(after);
    expect(acted).toMatchObject({ decision: 'executed', target: 'web-1' });
    store.close();
  });

  it('inhibit: DURATION keeps the older rule: fired within the period', async () => {
    const { store, remediator, at } = setup({ inhibitMs: 5 * MIN });
    const { engine, alerts, events } = incident();
    const down = alerts.find((a) => a.rule === 'checkout-down')!;
    await remediator.handle(down);
    for (const e of events) engine.process(e);
    const [during] = alerts.filter((a) => a.rule === 'host-fatal');
    at(2 * MIN);
    expect((await remediator.handle(during!))[0]).toMatchObject({ guard: 'inhibited' });
    // Still firing, but the period has passed: it acts.
    at(10 * MIN);
    const again = { ...during!, id: `${during!.id}-again` };
    expect((await remediator.handle(again))[0]).toMatchObject({ decision: 'executed' });
    store.close();
  });

  it('a firing whose resolution never comes inhibits at most inhibitMaxMs (24 h)', async () => {
    const { store, remediator } = setup();
    const { alerts } = incident();
    const down = alerts.find((a) => a.rule === 'checkout-down')!;
    await remediator.handle(down);
    expect(store.inhibitors('checkout', T0 + 23 * 60 * MIN)).toHaveLength(1);
    expect(store.inhibitors('checkout', T0 + 24 * 60 * MIN)).toEqual([]);
    store.close();
  });
});
