import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Decision,
  formatDecision,
  formatJournal,
  killSwitchCommand,
  listJournal,
  openSqliteStore,
  silenceCommand,
} from '../../../actions/index.ts';
import type { RemediationStore } from '../../../actions/index.ts';
import { decision, storeContract, T } from './store-contract.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'drover-journal-'));

describe('SQLite store', () => {
  // One file per name: a second store on it is a restart or another worker.
  const paths = new Map<string, string>();
  const opened: RemediationStore[] = [];
  let n = 0;
  storeContract({
    fresh: () => `store-${++n}`,
    open: async (name) => {
      if (!paths.has(name)) paths.set(name, join(dir(), 'actions.db'));
      const store = openSqliteStore(paths.get(name)!);
      opened.push(store);
      return store;
    },
  });
  afterAll(async () => {
    for (const store of opened) await store.close();
  });
});

describe('workers in separate processes on one SQLite file', () => {
  const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'remediate.ts');

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
    // A remediation's verification, once known, is named on its line.
    expect(
      formatDecision(
        decision({
          verification: {
            outcome: 'ineffective',
            withinMs: 60_000,
            since: '2024-01-01T00:00:00.000Z',
            deadline: T + 120_000,
            reason: 'ineffective: not resolved within 1m of event time',
          },
        }),
      ),
    ).toBe(
      '2024-01-01T00:00:00.000Z  executed   web-errors  fleet:kill-and-replace web-1  alert a1 (840 ms)  verification ineffective',
    );
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
