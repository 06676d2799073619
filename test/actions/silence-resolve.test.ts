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
import { InputError, parseSilence } from '../../pipeline/control-input.ts';
import { type Alert, type AnyRule, Engine, type StateChange } from '../../rules/index.ts';

/**
 * `expire_on_resolve`: a silence that ends when an alert it matches resolves. Alerts and
 * resolutions come from the engine, actions go through a real exec adapter and a real
 * SQLite store.
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
const rule: AnyRule = {
  name: 'host-fatal',
  type: 'any',
  query_key: ['host.name'],
  realert: 10_000,
  resolve_after: 10_000,
  labels: {},
  enabled: true,
  actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
};

/** web-1 fires at 0 s, resolves at 10 s, fires again at 60 s; in order, as the engine emits. */
function stream(): Array<{ alert: Alert } | { change: StateChange }> {
  const out: Array<{ alert: Alert } | { change: StateChange }> = [];
  const engine = new Engine([rule], {
    allowedLatenessMs: 0,
    onAlert: (alert) => out.push({ alert }),
    onState: (change) => out.push({ change }),
    resolvedOnly: true,
  });
  engine.process({ '@timestamp': T0, 'host.name': 'web-1' });
  engine.process({ '@timestamp': T0 + 30_000, message: 'time goes on' });
  engine.process({ '@timestamp': T0 + 60_000, 'host.name': 'web-1' });
  return out;
}

describe('silences that expire on resolve', () => {
  it('end when an alert they match resolves; other silences stay', async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'drover-eor-')), 'a.db'));
    const remediator = createRemediator({
      store,
      adapters,
      clock: () => T0,
      guards: { cooldownMs: 0 },
    });
    const until = T0 + 3_600_000;
    const ends = store.addSilence({ 'key.host.name': 'web-1' }, until, 'incident', {
      expireOnResolve: true,
    });
    const plain = store.addSilence({ 'key.host.name': 'web-9' }, until, 'maintenance');
    const other = store.addSilence({ rule: 'other-rule' }, until, '', { expireOnResolve: true });
    expect(store.silences(T0).find((s) => s.id === ends)).toMatchObject({ expireOnResolve: true });

    const events = stream();
    expect(events.map((e) => ('alert' in e ? 'alert' : e.change.state))).toEqual([
      'alert',
      'resolved',
      'alert',
    ]);
    const [first, resolution, second] = events as [
      { alert: Alert },
      { change: StateChange },
      { alert: Alert },
    ];
    const [held] = await remediator.handle(first.alert);
    expect(held).toMatchObject({ decision: 'suppressed', guard: 'silenced' });
    expect(held!.reason).toContain(`silence ${ends} `);

    await remediator.resolved(resolution.change);
    expect(store.silences(T0).map((s) => s.id)).toEqual([plain, other]);

    const [acted] = await remediator.handle(second.alert);
    expect(acted).toMatchObject({ decision: 'executed', target: 'web-1' });
    store.close();
  });

  it('the API takes expire_on_resolve as a boolean', () => {
    const body = { matchers: { rule: 'x' }, until: new Date(T0 + 60_000).toISOString() };
    expect(parseSilence(body, T0).expireOnResolve).toBe(false);
    expect(parseSilence({ ...body, expire_on_resolve: true }, T0).expireOnResolve).toBe(true);
    expect(() => parseSilence({ ...body, expire_on_resolve: 'yes' }, T0)).toThrow(InputError);
  });
});
