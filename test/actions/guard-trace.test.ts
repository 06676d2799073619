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
import type { GuardCheck } from '../../actions/guard-trace.ts';
import type { Alert } from '../../rules/index.ts';

/**
 * Each journal entry carries every guard evaluated, with its inputs: a real exec adapter
 * (node, a describe command printing the group's health), a real SQLite store, and the
 * entries read back from it.
 */
let adapters: Map<string, Adapter>;
const T0 = Date.parse('2024-06-01T10:00:00Z');

beforeAll(async () => {
  adapters = await createAdapters({
    fleet: {
      type: 'exec',
      command: process.execPath,
      args: ['-e', 'process.exit(0)'],
      describeCommand: process.execPath,
      describeArgs: [
        '-e',
        'console.log(JSON.stringify({ group: "web", size: 4, healthy: 3, members: [{ id: "web-1", healthy: true }, { id: "web-2", healthy: true }] }))',
      ],
    },
  });
});

afterAll(async () => {
  await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
});

let n = 0;
const alert = (host: string): Alert => ({
  id: `alert-${++n}`,
  rule: 'web-errors',
  type: 'any',
  key: { 'service.name': 'web', 'host.name': host },
  at: new Date(T0).toISOString(),
  figures: { count: 1 },
  labels: {},
  actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
});

const byGuard = (checks: GuardCheck[] | undefined) =>
  Object.fromEntries((checks ?? []).map((c) => [c.guard, c]));

describe('journal guard inputs', () => {
  it('records every guard evaluated with its inputs, read back from the store', async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-trace-')), 'a.db'));
    let now = T0;
    const remediator = createRemediator({
      store,
      adapters,
      clock: () => now,
      guards: {
        cooldownMs: 60_000,
        budget: { max: 3, windowMs: 3_600_000 },
        minHealthy: 2,
        breaker: { max: 5, windowMs: 600_000 },
      },
    });

    const [done] = await remediator.handle(alert('web-1'));
    expect(done!.decision).toBe('executed');
    const [stored] = store.list({ alertId: done!.alertId });
    expect(stored!.guards).toEqual(done!.guards);
    const g = byGuard(stored!.guards);
    expect(stored!.guards!.map((c) => c.guard)).toEqual([
      'kill-switch',
      'maintenance',
      'silenced',
      'inhibited',
      'circuit-breaker',
      'storm',
      'cooldown',
      'budget',
      'concurrency',
      'min-healthy',
    ]);
    expect(stored!.guards!.every((c) => c.passed)).toBe(true);
    expect(g['kill-switch']!.inputs).toEqual({ configured: false, runtime: false });
    expect(g.silenced!.inputs).toEqual({ inForce: 0 });
    expect(g.cooldown!.inputs).toEqual({ cooldownMs: 60_000, remainingMs: 0 });
    // The reservation's reading: before this attempt was appended.
    expect(g.budget!.inputs).toEqual({
      rule: [{ max: 3, windowMs: 3_600_000, used: 0, left: 3 }],
      global: [],
    });
    expect(g['circuit-breaker']!.inputs).toEqual({
      breakers: [{ max: 5, windowMs: 600_000, used: 0, left: 5 }],
    });
    expect(g['min-healthy']!.inputs).toEqual({
      group: 'web',
      size: 4,
      healthy: 3,
      lost: 1,
      floors: [2],
    });
    expect(g.concurrency!.inputs).toEqual({ cap: 4 });

    // The same target 20 s later: the cooldown stops it, with the time remaining.
    now = T0 + 20_000;
    const [held] = await remediator.handle(alert('web-1'));
    expect(held).toMatchObject({ decision: 'suppressed', guard: 'cooldown' });
    const h = byGuard(store.list({ alertId: held!.alertId })[0]!.guards);
    expect(h.cooldown).toEqual({
      guard: 'cooldown',
      passed: false,
      inputs: {
        cooldownMs: 60_000,
        lastActedOn: new Date(T0).toISOString(),
        remainingMs: 40_000,
      },
    });
    expect(h.budget!.inputs).toEqual({
      rule: [{ max: 3, windowMs: 3_600_000, used: 1, left: 2 }],
      global: [],
    });

    // A silence: its id is among the inputs, and nothing after it was evaluated.
    const silence = store.addSilence({ 'key.host.name': 'web-2' }, T0 + 3_600_000, 'deploy');
    const [silenced] = await remediator.handle(alert('web-2'));
    expect(silenced).toMatchObject({ decision: 'suppressed', guard: 'silenced' });
    const s = store.list({ alertId: silenced!.alertId })[0]!.guards!;
    expect(s.map((c) => c.guard)).toEqual(['kill-switch', 'maintenance', 'silenced']);
    expect(s[2]).toEqual({
      guard: 'silenced',
      passed: false,
      inputs: { inForce: 1, silence, until: new Date(T0 + 3_600_000).toISOString() },
    });
    store.close();
  });
});
