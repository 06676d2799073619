import { describe, expect, it } from 'vitest';
import { type Alert, Engine, type EngineSnapshot } from '../../rules/index.ts';
import { RULES, stream } from './fleet-state.ts';
import { ev, m, rule, s, T0 } from './helpers.ts';

function engine(alerts: Alert[]): Engine {
  return new Engine(RULES, {
    allowedLatenessMs: s(2),
    observedFrom: T0,
    onAlert: (a) => alerts.push(a),
  });
}

describe('snapshot and restore', () => {
  const events = stream();
  const end = T0 + m(21);
  const uninterrupted: Alert[] = [];
  const e0 = engine(uninterrupted);
  for (const e of events) e0.process(e);
  e0.finish(end);

  it('the scenario exercises every rule type', () => {
    const fired = new Set(uninterrupted.map((a) => a.rule));
    expect([...fired].sort()).toEqual(RULES.map((r) => r.name).sort());
  });

  for (const fraction of [0.1, 0.37, 0.5, 0.83, 0.99]) {
    it(`a restored engine fed the rest gives exactly the uninterrupted alerts (split at ${fraction * 100}%)`, () => {
      const split = Math.floor(events.length * fraction);
      const before: Alert[] = [];
      const first = engine(before);
      for (const e of events.slice(0, split)) first.process(e);
      // Through JSON, as it is stored: plain data only.
      const snapshot = JSON.parse(JSON.stringify(first.snapshot())) as EngineSnapshot;
      const after: Alert[] = [];
      const second = engine(after);
      expect(second.restore(snapshot).reset).toEqual([]);
      for (const e of events.slice(split)) second.process(e);
      second.finish(end);
      expect([...before, ...after]).toEqual(uninterrupted);
    });
  }

  it('a restored engine holds, at every later snapshot, what the uninterrupted one holds', () => {
    // Sweeps drop state on a phase of their own: a restore that started them over held
    // different state than the engine it came from (and, with a sweep dropping a key
    // before a re-check at its own instant, once resolved a firing the other kept).
    const split = Math.floor(events.length * 0.37);
    const whole = engine([]);
    const first = engine([]);
    for (const e of events.slice(0, split)) {
      whole.process(e);
      first.process(e);
    }
    const second = engine([]);
    second.restore(JSON.parse(JSON.stringify(first.snapshot())) as EngineSnapshot);
    const rest = events.slice(split);
    for (let i = 0; i < rest.length; i++) {
      whole.process(rest[i]!);
      second.process(rest[i]!);
      if (i % 500 === 0 || i === rest.length - 1)
        expect(JSON.stringify(second.snapshot()), `after ${split + i + 1} events`).toBe(
          JSON.stringify(whole.snapshot()),
        );
    }
  });

  it('a restore replaces the state an engine held before it, rule by rule', () => {
    const split = Math.floor(events.length * 0.37);
    const first = engine([]);
    for (const e of events.slice(0, split)) first.process(e);
    const snapshot = JSON.parse(JSON.stringify(first.snapshot())) as EngineSnapshot;
    // An engine further along (keys, silences, pending keys and episodes of its own)
    // restored to the earlier snapshot holds exactly what that snapshot holds.
    const ahead = engine([]);
    for (const e of events.slice(0, Math.floor(events.length * 0.83))) ahead.process(e);
    expect(ahead.restore(snapshot).reset).toEqual([]);
    expect(JSON.parse(JSON.stringify(ahead.snapshot()))).toEqual(snapshot);
    // A rule whose definition changed starts fresh there too.
    const changed = RULES.map((r) => (r.name === 'freq-errors' ? { ...r, num_events: 9 } : r));
    const other = new Engine(changed, {
      allowedLatenessMs: s(2),
      observedFrom: T0,
      onAlert: () => {},
    });
    for (const e of events) other.process(e);
    expect(other.restore(snapshot).reset).toEqual(['freq-errors']);
    const fresh = new Engine(changed, {
      allowedLatenessMs: s(2),
      observedFrom: T0,
      onAlert: () => {},
    });
    fresh.restore(snapshot);
    expect(other.snapshot().rules['freq-errors']).toEqual(fresh.snapshot().rules['freq-errors']);
  });

  it('alert ids are stable across replays and unique per alert', () => {
    const again: Alert[] = [];
    const e1 = engine(again);
    for (const e of events) e1.process(e);
    e1.finish(end);
    expect(again.map((a) => a.id)).toEqual(uninterrupted.map((a) => a.id));
    expect(new Set(again.map((a) => a.id)).size).toBe(again.length);
  });

  it('a rule whose definition changed starts fresh; an unknown version is refused', () => {
    const first = engine([]);
    for (const e of events.slice(0, 100)) first.process(e);
    const snapshot = first.snapshot();
    const changed = RULES.map((r) => (r.name === 'freq-errors' ? { ...r, num_events: 9 } : r));
    const relabeled = RULES.map((r) =>
      r.name === 'any-fatal' ? { ...r, labels: { team: 'x' } } : r,
    );
    expect(new Engine(changed, { onAlert: () => {} }).restore(snapshot).reset).toEqual([
      'freq-errors',
    ]);
    expect(new Engine(relabeled, { onAlert: () => {} }).restore(snapshot).reset).toEqual([]);
    expect(() =>
      new Engine(RULES, { onAlert: () => {} }).restore({ ...snapshot, version: 99 }),
    ).toThrow(/version 99/);
  });
});

describe('time and memory', () => {
  it('live: the wall clock drives the watermark once sources go quiet, so flatline still fires', () => {
    let now = T0;
    const alerts: Alert[] = [];
    const flat = rule({
      name: 'fl',
      type: 'flatline',
      timeframe: m(1),
      threshold: 1,
      expect: [],
      forget_keys: false,
      query_key: ['host.name'],
      realert: m(5),
    });
    const live = new Engine([flat], {
      allowedLatenessMs: s(5),
      clock: () => now,
      onAlert: (a) => alerts.push(a),
    });
    live.process(ev(0, { 'host.name': 'a' }));
    now += s(30);
    live.tick();
    expect(alerts).toHaveLength(0);
    now += m(1);
    live.tick();
    expect(alerts.map((a) => a.at)).toEqual([new Date(T0 + m(1)).toISOString()]);
  });

  it('late events within the allowed lateness still count; the watermark trails the newest event', () => {
    const freq = rule({
      name: 'f',
      type: 'frequency',
      num_events: 3,
      timeframe: s(10),
      realert: 0,
    });
    const alerts: Alert[] = [];
    const e = new Engine([freq], {
      allowedLatenessMs: s(5),
      observedFrom: T0,
      onAlert: (a) => alerts.push(a),
    });
    e.process(ev(s(8)));
    e.process(ev(s(2))); // late, but within the window of the event at 8s
    e.process(ev(s(9)));
    expect(alerts).toHaveLength(1);
    expect(e.watermark).toBe(T0 + s(4));
  });

  it('drops keys whose windows emptied, and reports keys held per rule', () => {
    const freq = rule({
      name: 'f',
      type: 'frequency',
      num_events: 100,
      timeframe: s(10),
      query_key: ['host.name'],
    });
    const flat = rule({
      name: 'fl',
      type: 'flatline',
      timeframe: s(10),
      threshold: 1,
      expect: [],
      forget_keys: false,
      query_key: ['host.name'],
      realert: m(1),
    });
    const e = new Engine([freq, flat], {
      allowedLatenessMs: 0,
      observedFrom: T0,
      onAlert: () => {},
    });
    for (let i = 0; i < 1000; i++) e.process(ev(i, { 'host.name': `h${i}` }));
    expect(e.stats().map((r) => r.keys)).toEqual([1000, 1000]);
    // Rules are swept a slice at a time, each within ten seconds of event time.
    for (let k = 0; k <= 10; k++) e.process(ev(m(1) + s(k), { 'host.name': 'h0' }));
    const [f, fl] = e.stats();
    expect(f!.keys).toBe(1); // only h0 has events in its window
    expect(fl!.keys).toBe(1000); // flatline must remember silent keys
    expect(f!.bytes).toBeGreaterThan(0);
  });

  it('drops cardinality values and keys each time they go quiet, not only the first', () => {
    // Sweeps skip their walk while no value's interval has ended: the bound must follow
    // the values added after a walk that emptied the rule.
    const card = rule({
      name: 'c',
      type: 'cardinality',
      cardinality_field: 'user',
      timeframe: s(10),
      max_cardinality: 100,
      query_key: ['host.name'],
    });
    const e = new Engine([card], { allowedLatenessMs: 0, observedFrom: T0, onAlert: () => {} });
    const keys = () => e.stats()[0]!.keys;
    // Each round: 50 keys report, then one other key reports alone for a minute of event
    // time (past the timeframe and the sweeps' slices): only that key is still held.
    for (let round = 0; round < 3; round++) {
      const t0 = m(2 * round);
      for (let i = 0; i < 50; i++) e.process(ev(t0 + i, { 'host.name': `h${i}`, user: `u${i}` }));
      expect(keys()).toBe(50 + Math.min(round, 1));
      for (let k = 0; k <= 60; k++)
        e.process(ev(t0 + s(20) + s(k), { 'host.name': 'quiet', user: 'q' }));
      expect(keys()).toBe(1);
    }
  });
});
