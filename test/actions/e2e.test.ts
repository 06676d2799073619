import { createHmac } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Adapter,
  createAdapters,
  createRemediator,
  type Decision,
  type GuardConfig,
  openSqliteStore,
  type ProcessAdapter,
} from '../../actions/index.ts';
import type { Alert } from '../../rules/index.ts';

/**
 * An alert, shaped exactly as the rules engine emits it, flows through policy, the
 * guard rails and the process adapter to a real effect: a real child process replaced.
 * Then each guard rail is shown to stop what it must, the fleet's processes untouched.
 */
const REPLICA = join(import.meta.dirname, 'fixtures', 'replica.js');
const SECRET = 'e2e-secret';

let adapters: Map<string, Adapter>;
let fleet: ProcessAdapter;
let hook: Server;
const pages: Array<{ body: Record<string, unknown>; verified: boolean }> = [];

beforeAll(async () => {
  hook = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const ts = String(req.headers['x-drover-timestamp']);
      const expected = `sha256=${createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex')}`;
      pages.push({
        body: JSON.parse(raw) as Record<string, unknown>,
        verified: req.headers['x-drover-signature'] === expected,
      });
      res.writeHead(202).end('{}');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  adapters = await createAdapters({
    fleet: {
      type: 'process',
      healthInterval: 0,
      services: {
        web: {
          command: process.execPath,
          args: [REPLICA],
          replicas: 3,
          min: 2,
          max: 5,
          healthPath: '/healthz',
          readiness: 'health',
          gracePeriod: '2s',
        },
      },
    },
    pager: {
      type: 'webhook',
      url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`,
      secret: SECRET,
    },
  });
  fleet = adapters.get('fleet') as ProcessAdapter;
  await fleet.start();
}, 60_000);

afterAll(async () => {
  await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
  await new Promise((r) => hook.close(r));
});

let seq = 0;
/** What the rules engine emits for `web-new-stack-trace` (a new_term rule keyed by host). */
function alertFor(host: string, over: Partial<Alert> = {}): Alert {
  seq++;
  return {
    id: `7c1f${seq}`,
    rule: 'web-new-stack-trace',
    type: 'new_term',
    description: 'A stack trace never seen before',
    key: { 'host.name': host },
    at: '2024-06-01T10:00:00.000Z',
    figures: { term: ['TypeError', 'a1b2c3'] },
    sample: {
      '@timestamp': Date.parse('2024-06-01T10:00:00.000Z'),
      message: 'unhandled error',
      'log.level': 'error',
      'service.name': 'web',
      'host.name': host,
      'error.type': 'TypeError',
      'error.fingerprint': 'a1b2c3',
    },
    labels: { team: 'frontend' },
    actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
    ...over,
  };
}

let now = Date.parse('2024-06-01T10:00:00Z');
function remediator(guards: GuardConfig = {}) {
  const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-e2e-')), 'actions.db'));
  return {
    store,
    remediator: createRemediator({
      store,
      adapters,
      guards: { cooldownMs: 0, ...guards },
      clock: () => now,
    }),
  };
}

const pids = () =>
  fleet
    .replicas('web')
    .map((r) => r.pid)
    .sort();
const one = async (r: ReturnType<typeof remediator>, a: Alert): Promise<Decision> =>
  (await r.remediator.handle(a))[0]!;

/** The guard stopped the action and no process was touched. */
async function expectStopped(
  r: ReturnType<typeof remediator>,
  a: Alert,
  guard: string,
): Promise<Decision> {
  const before = pids();
  const d = await one(r, a);
  expect(d).toMatchObject({ decision: 'suppressed', guard });
  expect(pids()).toEqual(before);
  return d;
}

describe('an alert remediated for real', () => {
  it('replaces the sick replica: new pid, new port answering HTTP, journaled', async () => {
    const r = remediator({ minHealthy: 2 });
    const victim = fleet.replicas('web')[0]!;
    const d = await one(r, alertFor(victim.id));
    expect(d).toMatchObject({
      decision: 'executed',
      adapter: 'fleet',
      operation: 'kill-and-replace',
      target: victim.id,
      rule: 'web-new-stack-trace',
    });
    const started = d.result!.started as { id: string; pid: number; port: number };
    expect(started.pid).not.toBe(victim.pid);
    expect(started.port).not.toBe(victim.port);
    const body = (await (await fetch(`http://127.0.0.1:${started.port}/`)).json()) as {
      id: string;
      pid: number;
    };
    expect(body).toMatchObject({ id: started.id, pid: started.pid });
    expect(() => process.kill(victim.pid!, 0)).toThrow();
    expect(fleet.replicas('web')).toHaveLength(3);
    expect(r.store.list()[0]).toMatchObject({ id: d.id, decision: 'executed', alert: d.alert });
  });

  it('idempotency: replaying the same alert does not replace again', async () => {
    const r = remediator();
    const a = alertFor(fleet.replicas('web')[0]!.id);
    expect((await one(r, a)).decision).toBe('executed');
    await expectStopped(r, a, 'idempotency');
  });

  it('dry-run: decided and journaled, nothing killed', async () => {
    const r = remediator({ dryRun: true });
    const before = pids();
    expect((await one(r, alertFor(fleet.replicas('web')[0]!.id))).decision).toBe('dry-run');
    expect(pids()).toEqual(before);
  });

  it('cooldown and budget hold a second action', async () => {
    const scale = (by: number) =>
      alertFor('x', {
        key: { 'service.name': 'web' },
        actions: [{ adapter: 'fleet', operation: 'scale', params: { by } }],
      });
    const cooled = remediator({ cooldownMs: 60_000 });
    expect((await one(cooled, scale(1))).result).toMatchObject({ from: 3, to: 4 });
    await expectStopped(cooled, scale(-1), 'cooldown');
    const budgeted = remediator({ budget: { max: 1, windowMs: 60_000 } });
    expect((await one(budgeted, scale(-1))).result).toMatchObject({ from: 4, to: 3 });
    // Another service-wide action (a per-instance one would be inhibited by the scale).
    await expectStopped(budgeted, scale(1), 'budget');
  });

  it('concurrency cap: a second replacement while one runs is held', async () => {
    const r = remediator({ concurrency: 1 });
    const [a, b] = fleet.replicas('web');
    const [first, second] = await Promise.all([
      one(r, alertFor(a!.id)),
      // Decided a moment later, while the first replacement is under way.
      new Promise((res) => setTimeout(res, 20)).then(() => one(r, alertFor(b!.id))),
    ]);
    expect(first.decision).toBe('executed');
    expect(second).toMatchObject({ decision: 'suppressed', guard: 'concurrency' });
    expect(fleet.replicas('web').map((x) => x.id)).toContain(b!.id);
  });

  it('min-healthy reads real health: a healthy replica is kept, a sick one replaced', async () => {
    const r = remediator({ minHealthy: 3 });
    const [healthy, sick] = fleet.replicas('web');
    await fetch(`http://127.0.0.1:${sick!.port}/sick`, { method: 'POST' });
    const d = await expectStopped(r, alertFor(healthy!.id), 'min-healthy');
    expect(d.reason).toBe('web has 2 healthy of 3; acting would leave 1, below the floor of 3');
    expect((await one(r, alertFor(sick!.id))).decision).toBe('executed');
  });

  it('blast radius: no more than a third of the group per window', async () => {
    const r = remediator({ maxBlastRadius: '34%' });
    const [a, b] = fleet.replicas('web');
    expect((await one(r, alertFor(a!.id))).decision).toBe('executed');
    await expectStopped(r, alertFor(b!.id), 'blast-radius');
  });

  it('circuit breaker: stops after N replacements of one key and pages once, signed', async () => {
    const r = remediator({ breaker: { max: 1, windowMs: 600_000, notify: 'pager' } });
    const host = fleet.replicas('web')[0]!.id;
    const key = alertFor(host);
    expect((await one(r, key)).decision).toBe('executed');
    pages.length = 0;
    await expectStopped(r, alertFor(host), 'circuit-breaker');
    await expectStopped(r, alertFor(host), 'circuit-breaker');
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatchObject({
      verified: true,
      body: { operation: 'notify', severity: 'critical', rule: 'web-new-stack-trace' },
    });
  });

  it('inhibition, silences, maintenance and the kill switch stop per-instance actions', async () => {
    const r = remediator({
      maintenance: [{ start: '2024-06-01T12:00:00Z', end: '2024-06-01T13:00:00Z' }],
    });
    const host = () => fleet.replicas('web')[0]!.id;
    const wide = alertFor('-', {
      rule: 'web-error-rate',
      key: { 'service.name': 'web' },
      actions: [],
    });
    await r.remediator.handle(wide);
    await expectStopped(r, alertFor(host()), 'inhibited');
    // The service-wide alert's firing resolves: the inhibition ends with it.
    await r.remediator.resolved({
      id: 'resolution-1',
      rule: wide.rule,
      type: wide.type,
      key: wide.key,
      state: 'resolved',
      at: '2024-06-01T10:05:00.000Z',
      alert: wide.id,
      firing_since: wide.at,
      labels: {},
      actions: [],
    });
    now += 6 * 60_000;
    const silence = r.store.addSilence({ 'labels.team': 'frontend' }, now + 60_000, 'rollout');
    await expectStopped(r, alertFor(host()), 'silenced');
    r.store.removeSilence(silence);
    now = Date.parse('2024-06-01T12:30:00Z');
    await expectStopped(r, alertFor(host()), 'maintenance');
    now = Date.parse('2024-06-01T14:00:00Z');
    await r.remediator.setKillSwitch(true);
    await expectStopped(r, alertFor(host()), 'kill-switch');
    await r.remediator.setKillSwitch(false);
    expect((await one(r, alertFor(host()))).decision).toBe('executed');
  });
});
