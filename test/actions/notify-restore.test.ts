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
import type { Alert } from '../../rules/index.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * A grouped page waiting when Drover is killed goes out after the restart, from the
 * journal: SQLite files, a real webhook adapter and receiver. A "kill" is a remediator
 * whose group timers never run and which is never closed (close() would send the group).
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

const alert = (host: string): Alert => ({
  id: `web-errors-${host}`,
  rule: 'web-errors',
  type: 'any',
  key: { 'host.name': host },
  at: new Date(T0).toISOString(),
  figures: {},
  labels: {},
  actions: [{ adapter: 'pager', operation: 'notify', group_wait: '30s' }],
});

/** A remediator on the journal at `file`, its clock at `now`, its group timers held. */
function start(file: string, now: number) {
  const due: Array<{ fn: () => void; ms: number }> = [];
  const store = openSqliteStore(file);
  const remediator = createRemediator({
    store,
    adapters,
    clock: () => now,
    groupTimers: { setTimeout: (fn, ms) => due.push({ fn, ms }), clearTimeout: () => {} },
  });
  const fire = async () => {
    due.splice(0).forEach((t) => t.fn());
    await remediator.settled();
  };
  return { store, remediator, due, fire };
}

describe('notification groups after a kill', () => {
  it('a waiting group goes out once after the restart, under its notification id', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'drover-restore-')), 'a.db');
    hook.pages.length = 0;
    const before = start(file, T0);
    for (const host of ['web-1', 'web-2', 'web-3'])
      expect((await before.remediator.handle(alert(host)))[0]).toMatchObject({ guard: 'group' });
    // Killed while the group waits: its timer never runs, nothing is flushed.
    expect(hook.pages).toHaveLength(0);
    const id = 'web-errors-web-1#0/group';

    const after = start(file, T0 + 10_000);
    expect(await after.remediator.restoreGroups()).toEqual({
      notifications: 1,
      alerts: 3,
      skipped: 0,
    });
    // The rest of its group_wait: 30 s from its first alert, 10 s of which passed.
    expect(after.due.map((t) => t.ms)).toEqual([20_000]);
    await after.fire();
    expect(hook.pages).toHaveLength(1);
    expect(hook.pages[0]!.title).toBe('[web-errors] 3 alerts (web-1, web-2, web-3)');
    expect(after.store.list({ limit: 10 })[0]).toMatchObject({
      id,
      decision: 'executed',
      result: { alerts: 3 },
    });

    // Another restart: the notification is on record, nothing goes out again.
    const again = start(file, T0 + 60_000);
    expect(await again.remediator.restoreGroups()).toEqual({
      notifications: 0,
      alerts: 0,
      skipped: 0,
    });
    await again.fire();
    expect(hook.pages).toHaveLength(1);
  });

  it('a group past its wait goes out at once; entries beyond the look-back are left', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'drover-restore-')), 'a.db');
    hook.pages.length = 0;
    const before = start(file, T0);
    await before.remediator.handle(alert('web-1'));
    // Down 2 minutes: the page is late, and goes out at the first timer.
    const after = start(file, T0 + 120_000);
    expect((await after.remediator.restoreGroups()).notifications).toBe(1);
    expect(after.due.map((t) => t.ms)).toEqual([1]);
    // Down longer than group_wait + group_interval + repeat_interval (4 h 5 min 30 s): left.
    const late = start(file, T0 + 5 * 3_600_000);
    expect(await late.remediator.restoreGroups()).toEqual({
      notifications: 0,
      alerts: 0,
      skipped: 1,
    });
    expect(late.due).toEqual([]);
  });
});
