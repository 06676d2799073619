import { describe, expect, it } from 'vitest';
import { canonicalKey, diffAlerts, toleranceMs } from '../../rules/diff.ts';
import type { Alert, RuleSpec } from '../../rules/index.ts';

const T0 = Date.parse('2024-01-01T00:00:00Z');

function alert(rule: string, key: Record<string, unknown>, s: number): Alert {
  return {
    id: `${rule}-${s}`,
    rule,
    type: 'frequency',
    key,
    at: new Date(T0 + s * 1000).toISOString(),
    figures: {},
    labels: {},
    actions: [],
  };
}

function rule(name: string, timeframe: number, realert: number): RuleSpec {
  return { name, type: 'frequency', timeframe, realert } as unknown as RuleSpec;
}

describe('diffAlerts: same incident = same rule and key, within max(timeframe, realert)', () => {
  const rules = [rule('r', 60_000, 10 * 60_000)];

  it('pairs exact times as unchanged, near ones as moved, the rest added or removed', () => {
    const base = [
      alert('r', { h: 'a' }, 0),
      alert('r', { h: 'a' }, 3600),
      alert('r', { h: 'b' }, 100),
    ];
    const head = [
      alert('r', { h: 'a' }, 0), // unchanged
      alert('r', { h: 'a' }, 3600 + 599), // moved: 599 s < realert 10 min
      alert('r', { h: 'b' }, 100 + 601), // 601 s > 10 min: b at 100 removed, this added
      alert('r', { h: 'c' }, 50), // new key: added
    ];
    const [d] = diffAlerts({ rules, alerts: base }, { rules, alerts: head });
    expect(d).toMatchObject({
      rule: 'r',
      presence: 'both',
      unchanged: 1,
      moved: 1,
      added: 2,
      removed: 1,
    });
    expect(d!.changes.map((c) => [c.change, c.key, c.baseAt ?? null, c.headAt ?? null])).toEqual([
      ['added', { h: 'c' }, null, '2024-01-01T00:00:50.000Z'],
      ['removed', { h: 'b' }, '2024-01-01T00:01:40.000Z', null],
      ['added', { h: 'b' }, null, '2024-01-01T00:11:41.000Z'],
      ['moved', { h: 'a' }, '2024-01-01T01:00:00.000Z', '2024-01-01T01:09:59.000Z'],
    ]);
  });

  it('never pairs alerts of different keys or rules, and key order does not matter', () => {
    const both = [rule('r', 60_000, 60_000), rule('s', 60_000, 60_000)];
    const [r, s] = diffAlerts(
      { rules: both, alerts: [alert('r', { a: 1, b: 2 }, 0), alert('s', { h: 'x' }, 0)] },
      { rules: both, alerts: [alert('r', { b: 2, a: 1 }, 10), alert('s', { h: 'y' }, 0)] },
    );
    expect(r).toMatchObject({ moved: 1, added: 0, removed: 0 });
    expect(s).toMatchObject({ moved: 0, added: 1, removed: 1 });
  });

  it('pairs in time order, one to one: a burst moved by a retune stays one incident each', () => {
    const base = [0, 700, 1400].map((s) => alert('r', {}, s));
    const head = [30, 730, 1430, 2100].map((s) => alert('r', {}, s));
    const [d] = diffAlerts({ rules, alerts: base }, { rules, alerts: head });
    expect(d).toMatchObject({ moved: 3, added: 1, removed: 0 });
    expect(d!.changes.at(-1)).toMatchObject({
      change: 'added',
      headAt: '2024-01-01T00:35:00.000Z',
    });
  });

  it('a rule on one side only: presence says so, all its alerts added or removed', () => {
    const d = diffAlerts(
      { rules: [rule('old', 60_000, 0)], alerts: [alert('old', {}, 0)] },
      { rules: [rule('new', 60_000, 0)], alerts: [alert('new', {}, 0), alert('new', {}, 1)] },
    );
    expect(d.map((x) => [x.rule, x.presence, x.added, x.removed, x.moved])).toEqual([
      ['new', 'head', 2, 0, 0],
      ['old', 'base', 0, 1, 0],
    ]);
  });

  it('tolerance is the longer of timeframe and realert, at least a second', () => {
    expect(toleranceMs(rule('r', 60_000, 600_000))).toBe(600_000);
    expect(toleranceMs(rule('r', 120_000, 0))).toBe(120_000);
    expect(toleranceMs(rule('r', 0, 0))).toBe(1_000);
    expect(toleranceMs(undefined)).toBe(1_000);
  });

  it('canonical keys sort object keys at every depth', () => {
    expect(canonicalKey({ b: { y: 1, x: [2, { d: 1, c: 2 }] }, a: 'q' })).toBe(
      canonicalKey({ a: 'q', b: { x: [2, { c: 2, d: 1 }], y: 1 } }),
    );
  });

  it('is linear enough: 20,000 alerts per side on one key in well under a second', () => {
    const base = Array.from({ length: 20_000 }, (_, i) => alert('r', { h: 'a' }, i * 900));
    const head = Array.from({ length: 20_000 }, (_, i) => alert('r', { h: 'a' }, i * 900 + 5));
    const started = performance.now();
    const [d] = diffAlerts({ rules, alerts: base }, { rules, alerts: head });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(d).toMatchObject({ moved: 20_000, added: 0, removed: 0 });
  });
});
