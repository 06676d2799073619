import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Adapter,
  createAdapters,
  createRemediator,
  openSqliteStore,
} from '../../actions/index.ts';
import {
  actionProblems,
  type Alert,
  type AnyRule,
  Engine,
  type StateChange,
} from '../../rules/index.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * send_resolved: a firing's resolution, as the engine emits it, is notified through a
 * real webhook adapter to a real HTTP receiver, journaled, and naming the alert it closes.
 */
let hook: WebhookReceiver;
let adapters: Map<string, Adapter>;

beforeAll(async () => {
  hook = await startWebhookReceiver();
  adapters = await createAdapters({
    pager: {
      type: 'webhook',
      url: hook.url,
    },
  });
});

afterAll(async () => {
  await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
  await hook.close();
});

const T0 = Date.parse('2024-06-01T10:00:00Z');

/** An alert and its resolution, from the engine: an any rule on web-1, resolved 30 s later. */
function incident(sendResolved: boolean | undefined): { alert: Alert; change: StateChange } {
  const rule: AnyRule = {
    name: 'web-errors',
    type: 'any',
    query_key: ['host.name'],
    realert: 30_000,
    labels: { team: 'frontend' },
    enabled: true,
    actions: [
      {
        adapter: 'pager',
        operation: 'notify',
        group: false,
        ...(sendResolved !== undefined && { send_resolved: sendResolved }),
      },
    ],
  };
  const alerts: Alert[] = [];
  const changes: StateChange[] = [];
  const engine = new Engine([rule], {
    allowedLatenessMs: 0,
    onAlert: (a) => alerts.push(a),
    onState: (c) => changes.push(c),
  });
  engine.process({ '@timestamp': T0, 'host.name': 'web-1' });
  engine.process({ '@timestamp': T0 + 60_000, message: 'time goes on' });
  return { alert: alerts[0]!, change: changes.find((c) => c.state === 'resolved')! };
}

function remediator() {
  const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-resolved-')), 'a.db'));
  return { store, remediator: createRemediator({ store, adapters, clock: () => T0 + 60_000 }) };
}

describe('send_resolved', () => {
  it('notifies the resolution through the webhook, naming the alert it closes, journaled', async () => {
    const { alert, change } = incident(true);
    expect(change.alert).toBe(alert.id);
    const r = remediator();
    hook.pages.length = 0;
    expect((await r.remediator.handle(alert))[0]).toMatchObject({ decision: 'executed' });
    const [d] = await r.remediator.resolved(change);
    expect(d).toMatchObject({
      id: `${change.id}#0`,
      alertId: alert.id,
      operation: 'notify',
      decision: 'executed',
      reason: `resolved: closes alert ${alert.id}`,
    });
    expect(hook.pages).toHaveLength(2);
    expect(hook.pages[1]).toMatchObject({
      title: 'RESOLVED web-errors (web-errors)',
      severity: 'info',
      alert: { id: change.id, state: 'resolved', alert: alert.id },
    });
    expect(String(hook.pages[1]!.text)).toContain(`alert ${alert.id} firing since ${alert.at}`);
    expect(r.store.list({ limit: 10 }).map((e) => [e.id, e.decision])).toEqual(
      expect.arrayContaining([[`${change.id}#0`, 'executed']]),
    );
    // A replay of the resolution (a restart re-reading the bus) hook.pages no one twice.
    const [again] = await r.remediator.resolved(change);
    expect(again).toMatchObject({ decision: 'suppressed', guard: 'idempotency' });
    expect(hook.pages).toHaveLength(2);
  });
  it('is off by default: no notification, nothing journaled', async () => {
    const { change } = incident(undefined);
    const r = remediator();
    hook.pages.length = 0;
    expect(await r.remediator.resolved(change)).toEqual([]);
    expect(hook.pages).toHaveLength(0);
    expect(r.store.list({ limit: 10 })).toEqual([]);
  });
});

describe('send_resolved in a rule file', () => {
  it('is for notify actions, and a boolean', () => {
    expect(
      actionProblems({
        adapter: 'fleet',
        operation: 'scale',
        params: { by: 1 },
        send_resolved: true,
      }),
    ).toEqual([
      expect.objectContaining({
        path: ['send_resolved'],
        message: 'send_resolved applies to notify actions only',
      }),
    ]);
    expect(actionProblems({ adapter: 'pager', operation: 'notify', send_resolved: 'yes' })).toEqual(
      [expect.objectContaining({ message: 'send_resolved is true or false (the default)' })],
    );
    expect(actionProblems({ adapter: 'pager', operation: 'notify', send_resolved: true })).toEqual(
      [],
    );
  });
});

describe('an alert that resolved while its action waited', () => {
  it('is skipped and journaled as resolved; a later firing of the key acts again', async () => {
    const { alert, change } = incident(false);
    const r = remediator();
    hook.pages.length = 0;
    // The action waits in the remediator's own steps (plan, claim, guards: each awaited);
    // the resolution arrives meanwhile, as it does live when the store or an adapter is slow.
    const handling = r.remediator.handle(alert);
    await r.remediator.resolved(change);
    const [d] = await handling;
    expect(d).toMatchObject({
      id: `${alert.id}#0`,
      decision: 'suppressed',
      guard: 'resolved',
      reason: `skipped: resolved: its firing resolved at ${change.at} before the action ran`,
    });
    expect(hook.pages).toHaveLength(0);
    expect(r.store.list({ limit: 10 })[0]).toMatchObject({ id: d!.id, guard: 'resolved' });
    // The same key firing again after the resolution is a new firing: it hook.pages.
    const later = { ...alert, id: 'later', at: new Date(T0 + 120_000).toISOString() };
    expect((await r.remediator.handle(later))[0]).toMatchObject({ decision: 'executed' });
    expect(hook.pages).toHaveLength(1);
  });
  it('without a resolution the same alert hook.pages (the skip above is the resolution)', async () => {
    const { alert } = incident(false);
    const r = remediator();
    hook.pages.length = 0;
    expect((await r.remediator.handle(alert))[0]).toMatchObject({ decision: 'executed' });
    expect(hook.pages).toHaveLength(1);
  });
});

describe('a grouped notification whose alerts resolved while the group waited', () => {
  /** Two hosts firing on one grouped notify action, and their resolutions, from the engine. */
  function twoHosts() {
    const rule: AnyRule = {
      name: 'web-errors',
      type: 'any',
      query_key: ['host.name'],
      realert: 30_000,
      labels: {},
      enabled: true,
      actions: [{ adapter: 'pager', operation: 'notify', group_wait: '30s' }],
    };
    const alerts: Alert[] = [];
    const changes: StateChange[] = [];
    const engine = new Engine([rule], {
      allowedLatenessMs: 0,
      onAlert: (a) => alerts.push(a),
      onState: (c) => changes.push(c),
    });
    engine.process({ '@timestamp': T0, 'host.name': 'web-1' });
    engine.process({ '@timestamp': T0, 'host.name': 'web-2' });
    engine.process({ '@timestamp': T0 + 60_000, message: 'time goes on' });
    const resolution = (host: string) =>
      changes.find((c) => c.state === 'resolved' && c.key['host.name'] === host)!;
    return { alerts, resolution };
  }
  /** A remediator whose group timers run when told. */
  function grouping() {
    const due: Array<() => void> = [];
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-resolved-')), 'a.db'));
    const remediator = createRemediator({
      store,
      adapters,
      clock: () => T0 + 60_000,
      groupTimers: { setTimeout: (fn) => due.push(fn), clearTimeout: () => {} },
    });
    const fire = async () => {
      due.splice(0).forEach((fn) => fn());
      await remediator.settled();
    };
    return { store, remediator, fire };
  }

  it('hook.pages only the alerts still firing', async () => {
    const { alerts, resolution } = twoHosts();
    const r = grouping();
    hook.pages.length = 0;
    for (const a of alerts)
      expect((await r.remediator.handle(a))[0]).toMatchObject({ guard: 'group' });
    await r.remediator.resolved(resolution('web-1'));
    await r.fire();
    expect(hook.pages).toHaveLength(1);
    expect(hook.pages[0]!.title).toBe('[web-errors] 1 alert (web-2)');
    expect(String(hook.pages[0]!.text)).not.toContain('web-1');
    expect(r.store.list({ limit: 10 })[0]).toMatchObject({
      id: `${alerts[0]!.id}#0/group`,
      decision: 'executed',
      result: { alerts: 1 },
    });
  });

  it('with every alert resolved: no page, the notification journaled as resolved', async () => {
    const { alerts, resolution } = twoHosts();
    const r = grouping();
    hook.pages.length = 0;
    for (const a of alerts) await r.remediator.handle(a);
    await r.remediator.resolved(resolution('web-1'));
    await r.remediator.resolved(resolution('web-2'));
    await r.fire();
    expect(hook.pages).toHaveLength(0);
    expect(r.store.list({ limit: 10 })[0]).toMatchObject({
      id: `${alerts[0]!.id}#0/group`,
      decision: 'suppressed',
      guard: 'resolved',
      reason: 'skipped: resolved: the firing of each of its 2 alerts resolved before it went out',
    });
  });
});
