import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ActionObject,
  type Adapter,
  createAdapters,
  createRemediator,
  type Decision,
  type GuardConfig,
  openSqliteStore,
  type ProcessAdapter,
} from '../../actions/index.ts';
import type { Alert, StateChange } from '../../rules/index.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * The closed loop (docs/actions.md#verification), with real parts: a fleet of real
 * child processes (the process adapter), a webhook pager to a real HTTP receiver, and
 * the SQLite journal. Wall time is the injected clock; event time is the alerts',
 * resolutions' and watermark's.
 */
const REPLICA = join(import.meta.dirname, 'fixtures', 'replica.js');

let adapters: Map<string, Adapter>;
let fleet: ProcessAdapter;
let hook: WebhookReceiver;

beforeAll(async () => {
  hook = await startWebhookReceiver();
  adapters = await createAdapters({
    fleet: {
      type: 'process',
      healthInterval: 0,
      services: {
        web: {
          command: process.execPath,
          args: [REPLICA],
          replicas: 3,
          min: 1,
          max: 5,
          healthPath: '/healthz',
          readiness: 'health',
          gracePeriod: '2s',
        },
      },
    },
    pager: {
      type: 'webhook',
      url: hook.url,
    },
  });
  fleet = adapters.get('fleet') as ProcessAdapter;
  await fleet.start();
}, 60_000);

afterAll(async () => {
  await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
  await hook.close();
});

const AT = '2024-06-01T10:00:00.000Z';
const T = Date.parse(AT);
let seq = 0;
let now = Date.parse('2024-06-01T10:00:05Z');

function alertFor(key: Record<string, unknown>, action: ActionObject, over: Partial<Alert> = {}) {
  seq++;
  return {
    id: `v${seq}`,
    rule: 'web-broken',
    type: 'frequency',
    key,
    at: AT,
    figures: { count: 3 },
    labels: { team: 'frontend' },
    actions: [action],
    ...over,
  } satisfies Alert;
}

function resolution(alert: Alert, afterMs: number): StateChange {
  return {
    id: `r-${alert.id}-${afterMs}`,
    rule: alert.rule,
    type: alert.type,
    key: alert.key,
    state: 'resolved',
    at: new Date(T + afterMs).toISOString(),
    alert: alert.id,
    firing_since: alert.at,
    labels: alert.labels,
    actions: alert.actions,
  };
}

function remediator(guards: GuardConfig = {}, path?: string) {
  const file = path ?? join(mkdtempSync(join(tmpdir(), 'drover-verify-')), 'actions.db');
  const store = openSqliteStore(file);
  const r = createRemediator({
    store,
    adapters,
    guards: { cooldownMs: 0, ...guards },
    clock: () => now,
  });
  const ended: Decision[] = [];
  r.on('verification', (d: Decision) => ended.push(d));
  return { store, remediator: r, ended, file };
}

const host = () => fleet.replicas('web')[0]!.id;
const replace = (over: Partial<ActionObject> = {}): ActionObject => ({
  adapter: 'fleet',
  operation: 'kill-and-replace',
  target: '{{ host.name }}',
  verify_within: '2m',
  ...over,
});

describe('verification of a remediation', () => {
  it('ends effective when the alert resolves within the window of event time', async () => {
    const r = remediator();
    const alert = alertFor({ 'host.name': host() }, replace());
    const [d] = await r.remediator.handle(alert);
    expect(d).toMatchObject({
      decision: 'executed',
      verification: { outcome: 'pending', withinMs: 120_000, since: AT },
    });
    expect(r.remediator.pendingVerifications).toBe(1);
    // Event time moves, but not past the window: still pending.
    r.remediator.watermark(T + 119_000);
    await r.remediator.resolved(resolution(alert, 90_000));
    await r.remediator.settled();
    const [entry] = r.store.list({ limit: 10 });
    expect(entry!.verification).toMatchObject({
      outcome: 'effective',
      by: 'resolution',
      resolvedAt: new Date(T + 90_000).toISOString(),
      decidedAt: now,
    });
    expect(entry!.verification!.reason).toBe(
      `effective: the alert resolved at ${new Date(T + 90_000).toISOString()}, 90s after it fired (window 2m)`,
    );
    expect(r.ended.map((e) => e.verification!.outcome)).toEqual(['effective']);
    expect(r.store.pendingVerifications(10)).toEqual([]);
    // The window ending later changes nothing: it ended once.
    r.remediator.watermark(T + 600_000);
    await r.remediator.settled();
    expect(r.ended).toHaveLength(1);
  }, 30_000);

  it('ends ineffective when event time passes the window; counts for the breaker; escalates', async () => {
    const r = remediator({ breaker: { max: 2, windowMs: 600_000 } });
    const onIneffective: ActionObject = {
      adapter: 'pager',
      operation: 'notify',
      group: false,
      target: 'ineffective {{ host.name }}',
    };
    const target = host();
    const alert = alertFor({ 'host.name': target }, replace({ on_ineffective: onIneffective }));
    const [d] = await r.remediator.handle(alert);
    expect(d).toMatchObject({ decision: 'executed', verification: { outcome: 'pending' } });
    hook.pages.length = 0;
    // The watermark at the window's end decides nothing yet (W > D decides D) …
    r.remediator.watermark(T + 120_000);
    await r.remediator.settled();
    expect(r.ended).toEqual([]);
    // … one past it does.
    r.remediator.watermark(T + 120_001);
    await r.remediator.settled();
    const entries = r.store.list({ limit: 10 });
    expect(entries.find((e) => e.id === d!.id)!.verification).toMatchObject({
      outcome: 'ineffective',
      by: 'event-time',
      reason: 'ineffective: not resolved within 2m of event time',
    });
    // on_ineffective: a decision of its own, through the notify guards, to the pager.
    expect(entries.find((e) => e.id === `${d!.id}/ineffective`)).toMatchObject({
      decision: 'executed',
      operation: 'notify',
      adapter: 'pager',
      target: `ineffective ${target}`,
    });
    expect(hook.pages).toHaveLength(1);
    // A resolution after the window does not make it effective.
    await r.remediator.resolved(resolution(alert, 200_000));
    await r.remediator.settled();
    expect(r.ended.map((e) => e.verification!.outcome)).toEqual(['ineffective']);
    // One replacement and one ineffective verdict: the breaker (max 2) is open.
    const again = alertFor({ 'host.name': target }, replace(), { at: '2024-06-01T10:03:00.000Z' });
    const [stopped] = await r.remediator.handle(again);
    expect(stopped).toMatchObject({ decision: 'suppressed', guard: 'circuit-breaker' });
    expect(stopped!.reason).toMatch(
      /^2 remediations of this key \(ineffective verdicts included\) within 600s did not fix it/,
    );
  }, 30_000);

  it('without event time, the wall clock ends the window at twice its length', async () => {
    const r = remediator();
    const [d] = await r.remediator.handle(alertFor({ 'host.name': host() }, replace()));
    const deadline = d!.verification!.deadline;
    expect(deadline).toBe(now + 240_000);
    const saved = now;
    try {
      now = deadline - 1;
      r.remediator.checkVerifications();
      await r.remediator.settled();
      expect(r.ended).toEqual([]);
      now = deadline;
      r.remediator.checkVerifications();
      await r.remediator.settled();
    } finally {
      now = saved;
    }
    expect(r.store.list({ limit: 1 })[0]!.verification).toMatchObject({
      outcome: 'ineffective',
      by: 'wall-clock',
    });
  }, 30_000);

  it('rollback: a scale goes back to its previous size once the alert resolves', async () => {
    const r = remediator();
    const before = fleet.replicas('web').length;
    const alert = alertFor(
      { 'service.name': 'web' },
      {
        adapter: 'fleet',
        operation: 'scale',
        target: '{{ service.name }}',
        params: { by: 1 },
        verify_within: '5m',
        rollback: true,
      },
    );
    const [d] = await r.remediator.handle(alert);
    expect(d).toMatchObject({
      decision: 'executed',
      result: { from: before, to: before + 1 },
      verification: { outcome: 'pending', withinMs: 300_000, rollbackTo: before },
    });
    expect(fleet.replicas('web')).toHaveLength(before + 1);
    await r.remediator.resolved(resolution(alert, 60_000));
    await r.remediator.settled();
    const entries = r.store.list({ limit: 10 });
    expect(entries.find((e) => e.id === d!.id)!.verification!.outcome).toBe('effective');
    // Its own decision, through the guard rails (the cooldown and breaker excepted).
    expect(entries.find((e) => e.id === `${d!.id}/rollback`)).toMatchObject({
      decision: 'executed',
      operation: 'scale',
      target: 'web',
      params: { to: before },
      result: { from: before + 1, to: before },
    });
    expect(fleet.replicas('web')).toHaveLength(before);
  }, 60_000);

  it('rollback passes the guard rails: the kill switch holds it, journaled', async () => {
    const r = remediator();
    const before = fleet.replicas('web').length;
    const alert = alertFor(
      { 'service.name': 'web' },
      {
        adapter: 'fleet',
        operation: 'scale',
        params: { by: 1 },
        verify_within: '1m',
        rollback: true,
      },
    );
    const [d] = await r.remediator.handle(alert);
    expect(fleet.replicas('web')).toHaveLength(before + 1);
    await r.remediator.setKillSwitch(true);
    r.remediator.watermark(T + 61_000);
    await r.remediator.settled();
    const entries = r.store.list({ limit: 10 });
    expect(entries.find((e) => e.id === `${d!.id}/rollback`)).toMatchObject({
      decision: 'suppressed',
      guard: 'kill-switch',
    });
    await r.remediator.setKillSwitch(false);
    // Put the fleet back for the other tests.
    await fleet.scale('web', { to: before });
  }, 60_000);

  it('a scale that changed nothing is skipped: nothing to verify, nothing to roll back', async () => {
    const r = remediator();
    const size = fleet.replicas('web').length;
    const [d] = await r.remediator.handle(
      alertFor(
        { 'service.name': 'web' },
        { adapter: 'fleet', operation: 'scale', params: { to: size }, rollback: true },
      ),
    );
    expect(d!.verification).toMatchObject({ outcome: 'skipped', withinMs: 600_000 });
    expect(d!.verification!.reason).toMatch(/^skipped: the scale changed nothing/);
    expect(r.ended.map((e) => e.verification!.outcome)).toEqual(['skipped']);
    expect(r.remediator.pendingVerifications).toBe(0);
  }, 30_000);

  it('is rebuilt from the journal after a restart, and ends once', async () => {
    const first = remediator();
    const alert = alertFor({ 'host.name': host() }, replace({ verify_within: '3m' }));
    const [d] = await first.remediator.handle(alert);
    expect(d!.verification!.outcome).toBe('pending');
    await first.remediator.close();
    first.store.close();

    // A new process on the same journal: nothing in memory carries over.
    const second = remediator({}, first.file);
    expect(second.remediator.pendingVerifications).toBe(0);
    expect(await second.remediator.restoreVerifications()).toBe(1);
    expect(second.remediator.pendingVerifications).toBe(1);
    await second.remediator.resolved(resolution(alert, 170_000));
    await second.remediator.settled();
    expect(second.store.list({ limit: 1 })[0]!.verification).toMatchObject({
      outcome: 'effective',
      resolvedAt: new Date(T + 170_000).toISOString(),
    });
    expect(second.ended).toHaveLength(1);

    // A third start finds nothing pending; the same resolution replayed ends nothing.
    const third = remediator({}, first.file);
    expect(await third.remediator.restoreVerifications()).toBe(0);
    await third.remediator.resolved(resolution(alert, 170_000));
    await third.remediator.settled();
    expect(third.ended).toEqual([]);
  }, 30_000);

  it('notifications and dry-runs are not verified', async () => {
    const r = remediator({ dryRun: true });
    const [dry] = await r.remediator.handle(alertFor({ 'host.name': host() }, replace()));
    expect(dry).toMatchObject({ decision: 'dry-run' });
    expect(dry!.verification).toBeUndefined();
    const n = remediator();
    hook.pages.length = 0;
    const [page] = await n.remediator.handle(
      alertFor({ 'host.name': 'x' }, { adapter: 'pager', operation: 'notify', group: false }),
    );
    expect(page).toMatchObject({ decision: 'executed' });
    expect(page!.verification).toBeUndefined();
    expect(n.remediator.pendingVerifications + r.remediator.pendingVerifications).toBe(0);
  }, 30_000);
});
