import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import {
  type Alert,
  type AnyRule,
  type CardinalityRule,
  type ChangeRule,
  Engine,
  type EngineSnapshot,
  type ExpiryRule,
  formatDiagnostic,
  type FlatlineRule,
  type FrequencyRule,
  type MetricAggregationRule,
  type NewTermRule,
  parseRuleFile,
  type RuleSpec,
  type SpikeRule,
  type StateChange,
} from '../../rules/index.ts';
import { ev, rule, s, T0 } from './helpers.ts';

/**
 * Alert states in event time (docs/rules.md#alert-states): per rule type, the instants
 * a key goes pending, fires and resolves; keep_firing_for; snapshots; bounds.
 */

type Step = [string, number, string?];

interface Timeline {
  steps: Step[];
  alerts: Alert[];
  changes: StateChange[];
  engine: Engine;
}

/** Feeds events in order (lateness 0 unless given) and ends time at `end`: alerts and changes in order. */
function timeline(
  rules: RuleSpec[],
  events: Event[],
  end: number,
  cutAt?: number,
  lateness = 0,
  /** null: observation starts at the first event. */
  observedFrom: number | null = T0,
): Timeline {
  const alerts: Alert[] = [];
  const changes: StateChange[] = [];
  const steps: Step[] = [];
  const make = () =>
    new Engine(rules, {
      allowedLatenessMs: lateness,
      observedFrom: observedFrom ?? undefined,
      onAlert: (a) => {
        alerts.push(a);
        steps.push(['firing', Date.parse(a.at) - T0, keyName(a.key)]);
      },
      onState: (c) => {
        changes.push(c);
        steps.push([c.state, Date.parse(c.at) - T0, keyName(c.key)]);
      },
    });
  let engine = make();
  events.forEach((e, i) => {
    if (i === cutAt) {
      // A restart: the snapshot as JSON (what the live pipeline stores), into a new engine.
      const saved = JSON.parse(JSON.stringify(engine.snapshot())) as EngineSnapshot;
      engine = make();
      engine.restore(saved);
    }
    engine.process(e);
  });
  engine.finish(T0 + end);
  return { steps, alerts, changes, engine };
}

function keyName(key: Record<string, unknown>): string | undefined {
  const v = Object.values(key)[0];
  return v === undefined ? undefined : String(v);
}

const at = (...offsets: number[]) => offsets.map((o) => ev(s(o), { 'host.name': 'a' }));

describe('frequency', () => {
  const r = rule<FrequencyRule>({
    name: 'f',
    type: 'frequency',
    num_events: 3,
    timeframe: s(10),
    for: s(5),
    realert: s(60),
    query_key: ['host.name'],
  });
  it('goes pending, fires once its for has passed, resolves when the count falls under num_events', () => {
    const { steps } = timeline([r], at(0, 1, 2, 3, 4, 5, 6, 7, 8), s(40));
    // Events 6, 7, 8 are the newest three; 6 leaves the window at 16.
    expect(steps).toEqual([
      ['pending', s(2), 'a'],
      ['firing', s(7), 'a'],
      ['resolved', s(16), 'a'],
    ]);
  });
  it('a pending condition that stops holding goes inactive without firing', () => {
    // (1, 4] holds two events: the condition no longer holds at 4, before its for ends at 7.
    const { steps } = timeline([{ ...r, timeframe: s(3) }], at(0, 1, 2, 4), s(40));
    expect(steps).toEqual([
      ['pending', s(2), 'a'],
      ['inactive', s(4), 'a'],
    ]);
  });
  const flap = rule<FrequencyRule>({
    name: 'flap',
    type: 'frequency',
    num_events: 2,
    timeframe: s(10),
    realert: 0,
    query_key: ['host.name'],
  });
  const flapping = at(0, 1, 12, 13);
  it('without keep_firing_for a flapping condition resolves and fires again', () => {
    expect(timeline([flap], flapping, s(40)).steps).toEqual([
      ['firing', s(1), 'a'],
      ['resolved', s(10), 'a'],
      ['firing', s(13), 'a'],
      ['resolved', s(22), 'a'],
    ]);
  });
  it('keep_firing_for damps the flapping: one firing, resolved that long after it clears', () => {
    const damped = { ...flap, keep_firing_for: s(5) };
    const { steps, alerts, changes } = timeline([damped], flapping, s(40));
    expect(steps).toEqual([
      ['firing', s(1), 'a'],
      ['firing', s(13), 'a'], // a repeat within the firing (realert 0)
      ['resolved', s(27), 'a'],
    ]);
    // The resolution names the alert that opened the firing.
    expect(changes[0]!.alert).toBe(alerts[0]!.id);
    expect(changes[0]!.firing_since).toBe(alerts[0]!.at);
  });
  it('a condition holding past keep_firing_for is a new firing, the old one resolved at its deadline', () => {
    const damped = { ...flap, keep_firing_for: s(2) };
    expect(timeline([damped], flapping, s(40)).steps).toEqual([
      ['firing', s(1), 'a'],
      ['resolved', s(12), 'a'],
      ['firing', s(13), 'a'],
      ['resolved', s(24), 'a'],
    ]);
  });
  it('ids are stable: a replay gives the same ids, each resolution its own', () => {
    const one = timeline([flap], flapping, s(40)).changes.map((c) => c.id);
    const two = timeline([flap], flapping, s(40)).changes.map((c) => c.id);
    expect(one).toEqual(two);
    expect(new Set(one).size).toBe(2);
  });
});

describe('spike', () => {
  it('resolves when the current window falls back under the height', () => {
    const r = rule<SpikeRule>({
      name: 'sp',
      type: 'spike',
      timeframe: s(10),
      spike_height: 2,
      spike_type: 'up',
      threshold_cur: 1,
      threshold_ref: 1,
      alert_on_new_data: true,
      realert: s(60),
      query_key: ['host.name'],
    });
    // At 13: current (3, 13] holds 12, 13 against the reference (−7, 3]'s 2: 2 ≥ 2 × 1.
    // At 23: current (13, 23] holds 14 against (3, 13]'s two: no longer a spike.
    expect(timeline([r], at(2, 12, 13, 14), s(60)).steps).toEqual([
      ['firing', s(13), 'a'],
      ['resolved', s(23), 'a'],
    ]);
  });
});

describe('spike: counterexamples of the differential test', () => {
  it('a firing held with no event in its windows is re-checked once an event enters them', () => {
    // threshold_cur and threshold_ref 0: two empty windows are an up spike (0 ≥ 1.5 × 0).
    // Pending at 2, the for runs out at 47 with both windows empty: it fires with no
    // event left to leave a window. 48 enters the current window and leaves it at 49,
    // where (48, 49] is empty against (47, 48]'s one: the condition no longer holds.
    const r = rule<SpikeRule>({
      name: 'r-spike',
      type: 'spike',
      for: s(45),
      timeframe: s(1),
      spike_height: 1.5,
      spike_type: 'up',
      threshold_cur: 0,
      threshold_ref: 0,
      alert_on_new_data: false,
      realert: 0,
    });
    const events = [0, 2, 48, 50].map((o) => ev(s(o), { 'host.name': 'a', user: 'u1', ver: 'v1' }));
    expect(timeline([r], events, s(60)).steps).toEqual([
      ['pending', s(2), undefined],
      ['firing', s(47), undefined],
      ['firing', s(48), undefined],
      ['resolved', s(49), undefined],
      ['firing', s(50), undefined],
      ['resolved', s(51), undefined],
    ]);
  });
});

describe('spike: an on-time event out of order', () => {
  it('moves the re-check of a firing to the earlier instant it leaves a window at', () => {
    // The differential test's counterexample, lateness 5 s. 182 fires (1 against 0) and
    // is re-checked at 184, where it leaves the current window. 181 arrives after it, on
    // time: it leaves the current window at 183, where (181, 183] holds 182 against
    // (179, 181]'s 181: no longer a spike. The re-check stayed at 184, after 189 moved
    // time on, and found a spike again: no resolution.
    const r = rule<SpikeRule>({
      name: 'r-spike',
      type: 'spike',
      timeframe: s(2),
      spike_height: 1.5,
      spike_type: 'up',
      threshold_cur: 0,
      threshold_ref: 0,
      alert_on_new_data: false,
    });
    const events = [0, 182, 181, 189].map((o) => ev(s(o), { 'host.name': 'a' }));
    expect(timeline([r], events, s(189), undefined, s(5)).steps).toEqual([
      ['firing', s(182), undefined],
      ['firing', s(181), undefined],
      ['resolved', s(183), undefined],
      ['firing', s(189), undefined],
    ]);
  });
});

describe('metric_aggregation', () => {
  const r = rule<MetricAggregationRule>({
    name: 'ma',
    type: 'metric_aggregation',
    metric_agg_key: 'v',
    metric_agg_type: 'avg',
    timeframe: s(10),
    max_threshold: 50,
    realert: s(60),
    query_key: ['host.name'],
  });
  it('resolves at the event that brings the aggregate back inside the threshold', () => {
    const events = [
      ev(0, { 'host.name': 'a', v: 10 }),
      ev(s(1), { 'host.name': 'a', v: 100 }),
      ev(s(2), { 'host.name': 'a', v: 0 }),
    ];
    expect(timeline([r], events, s(30)).steps).toEqual([
      ['firing', s(1), 'a'],
      ['resolved', s(2), 'a'],
    ]);
  });
  it('resolves when its window empties, a timeframe after the last sample', () => {
    const events = [ev(s(5), { 'host.name': 'b', v: 100 })];
    expect(timeline([r], events, s(30)).steps).toEqual([
      ['firing', s(5), 'b'],
      ['resolved', s(15), 'b'],
    ]);
  });
});

describe('cardinality', () => {
  it('resolves when a value leaves the window and the count is back under the maximum', () => {
    const r = rule<CardinalityRule>({
      name: 'card',
      type: 'cardinality',
      cardinality_field: 'user',
      timeframe: s(10),
      max_cardinality: 2,
      realert: s(60),
    });
    const events = ['u1', 'u2', 'u3'].map((user, i) => ev(s(i), { user }));
    // u1 covers [0, 10): at 10 only u2 and u3 are left.
    expect(timeline([r], events, s(30)).steps).toEqual([
      ['firing', s(2), undefined],
      ['resolved', s(10), undefined],
    ]);
  });

  it('a firing opened by an alert out of order is evaluated at once where the key was already', () => {
    // The differential test's counterexample, lateness 20 s. Low at 3 (nothing in (0, 3]):
    // fires. 47 (u1): still under 2 values. 49 (u4): two values, resolved at 49. 48 (u1)
    // arrives after 49, on time: (45, 48] holds u1 only, an alert, which opens a firing
    // after the key was evaluated at 49, where it no longer holds (u1 and u4): it is
    // evaluated there at once, and resolves.
    const r = rule<CardinalityRule>({
      name: 'r-cardinality',
      type: 'cardinality',
      cardinality_field: 'user',
      timeframe: s(3),
      min_cardinality: 2,
    });
    const events = [
      ev(0, { user: 'u1' }),
      ev(s(47), { user: 'u1' }),
      ev(s(49), { user: 'u4' }),
      ev(s(48), { user: 'u1' }),
      ev(s(50)),
    ];
    expect(timeline([r], events, s(50), undefined, s(20)).steps).toEqual([
      ['firing', s(3), undefined],
      ['firing', s(47), undefined],
      ['resolved', s(49), undefined],
      ['firing', s(48), undefined],
      ['resolved', s(49), undefined],
    ]);
  });
});

describe('for', () => {
  it('a pending that ends and begins again at one instant fires once at its deadline', () => {
    // The differential test's counterexample, lateness 20 s; observation starts at 23 (the
    // first event, without the field). 46 (u4) holds a single value: pending, deadline 47.
    // 42 (u1) holds too. 67 moves the watermark to 47: u1 of 22 leaves at 26, where the
    // timeframe is not yet observed, so the pending ends there (evaluated after 46), and
    // u1 of 42 leaves at 46, where it holds again: pending since 46 once more, and the
    // deadline 47 was set twice. It fired twice at 47 with realert 0.
    const r = rule<CardinalityRule>({
      name: 'r-cardinality',
      type: 'cardinality',
      cardinality_field: 'user',
      timeframe: s(4),
      min_cardinality: 2,
      for: s(1),
    });
    const events = [
      ev(s(23)),
      ev(s(22), { user: 'u1' }),
      ev(s(46), { user: 'u4' }),
      ev(s(42), { user: 'u1' }),
      ev(s(67), { user: 'u1' }),
    ];
    const { steps } = timeline([r], events, s(67), undefined, s(20), null);
    expect(steps.filter(([state]) => state === 'firing')).toEqual([
      ['firing', s(67), undefined],
      ['firing', s(47), undefined],
      ['firing', s(50), undefined],
    ]);
  });
});

describe('flatline and expiry resolve when the key reports again', () => {
  it('flatline', () => {
    const r = rule<FlatlineRule>({
      name: 'flat',
      type: 'flatline',
      timeframe: s(10),
      threshold: 1,
      expect: [],
      forget_keys: false,
      realert: s(60),
      query_key: ['host.name'],
    });
    expect(timeline([r], at(0, 5, 20), s(22)).steps).toEqual([
      ['firing', s(15), 'a'],
      ['resolved', s(20), 'a'],
    ]);
  });
  it('flatline with forget_keys, and keep_firing_for', () => {
    const r = rule<FlatlineRule>({
      name: 'flat',
      type: 'flatline',
      timeframe: s(10),
      threshold: 1,
      expect: [],
      forget_keys: true,
      keep_firing_for: s(3),
      realert: s(60),
      query_key: ['host.name'],
    });
    expect(timeline([r], at(0, 5, 20), s(30)).steps).toEqual([
      ['firing', s(15), 'a'],
      ['resolved', s(23), 'a'],
    ]);
  });
  it('a forgotten key low again while realert silences it fires again, so its firing goes on', () => {
    // The differential test's counterexample. Low at 1: fires, realert silences the key
    // until 6, forget_keys forgets it. Each report (2, 4, 6) clears the firing and starts
    // the key afresh; it is low again a timeframe later (3, 5), within keep_firing_for,
    // an alert realert silences: the firing goes on each time and never resolves by 6.
    const r = rule<FlatlineRule>({
      name: 'r-flatline',
      type: 'flatline',
      timeframe: s(1),
      threshold: 1,
      expect: [],
      forget_keys: true,
      keep_firing_for: s(2),
      realert: s(5),
    });
    expect(timeline([r], at(0, 2, 4, 6), s(6)).steps).toEqual([['firing', s(1), undefined]]);
    // Time going on: low again at 7, past the silence: an alert, within the same firing.
    expect(timeline([r], at(0, 2, 4, 6), s(20)).steps).toEqual([
      ['firing', s(1), undefined],
      ['firing', s(7), undefined],
    ]);
  });
  it('expiry', () => {
    const r = rule<ExpiryRule>({
      name: 'exp',
      type: 'expiry',
      ttl: s(10),
      realert: s(60),
      query_key: ['host.name'],
    });
    expect(timeline([r], at(0, 14), s(20)).steps).toEqual([
      ['firing', s(10), 'a'],
      ['resolved', s(14), 'a'],
    ]);
  });
});

describe('any, new_term and change resolve after resolve_after', () => {
  it('any: by default a realert after its last occurrence, silenced ones included', () => {
    const r = rule<AnyRule>({ name: 'any', type: 'any', realert: s(30) });
    expect(timeline([r], [ev(0), ev(s(10))], s(60)).steps).toEqual([
      ['firing', 0, undefined],
      ['resolved', s(40), undefined],
    ]);
  });
  it('any with resolve_after', () => {
    const r = rule<AnyRule>({ name: 'any', type: 'any', realert: s(30), resolve_after: s(5) });
    // 3 is silenced by realert but still an occurrence: the firing lasts until 3 + 5.
    expect(timeline([r], [ev(0), ev(s(3)), ev(s(30))], s(60)).steps).toEqual([
      ['firing', 0, undefined],
      ['resolved', s(8), undefined],
      ['firing', s(30), undefined],
      ['resolved', s(35), undefined],
    ]);
  });
  it('new_term', () => {
    const r = rule<NewTermRule>({
      name: 'nt',
      type: 'new_term',
      fields: ['user'],
      terms_window_size: s(3600),
      alert_on_missing_field: false,
      resolve_after: s(5),
    });
    expect(timeline([r], [ev(0, { user: 'x' }), ev(s(2), { user: 'y' })], s(60)).steps).toEqual([
      ['firing', 0, undefined],
      ['firing', s(2), undefined],
      ['resolved', s(7), undefined],
    ]);
  });
  it('change', () => {
    const r = rule<ChangeRule>({
      name: 'ch',
      type: 'change',
      compare_key: ['ver'],
      ignore_null: true,
      realert: s(20),
      query_key: ['host.name'],
    });
    const events = [ev(0, { 'host.name': 'a', ver: 1 }), ev(s(1), { 'host.name': 'a', ver: 2 })];
    expect(timeline([r], events, s(60)).steps).toEqual([
      ['firing', s(1), 'a'],
      ['resolved', s(21), 'a'],
    ]);
  });
});

describe('snapshots', () => {
  const flap = rule<FrequencyRule>({
    name: 'flap',
    type: 'frequency',
    num_events: 2,
    timeframe: s(10),
    realert: 0,
    keep_firing_for: s(5),
    for: s(1),
    query_key: ['host.name'],
  });
  const events = at(0, 1, 2, 3, 12, 13, 14, 30);
  it('a restart at any point, mid-firing too, gives the same transitions and ids', () => {
    const whole = timeline([flap], events, s(60));
    expect(whole.changes.map((c) => c.state)).toContain('resolved');
    for (let cut = 1; cut < events.length; cut++) {
      const restarted = timeline([flap], events, s(60), cut);
      expect(restarted.steps, `cut before event ${cut}`).toEqual(whole.steps);
      expect(restarted.changes.map((c) => c.id)).toEqual(whole.changes.map((c) => c.id));
    }
  });
});

describe('bounds', () => {
  it('a resolved key leaves no state behind', () => {
    const r = rule<AnyRule>({
      name: 'any',
      type: 'any',
      realert: s(5),
      query_key: ['host.name'],
    });
    const events = Array.from({ length: 500 }, (_, i) => ev(i, { 'host.name': `h${i}` }));
    const { engine, changes } = timeline([r], events, s(60));
    expect(changes.filter((c) => c.state === 'resolved')).toHaveLength(500);
    expect(engine.snapshot().rules.any!.state.episodes).toEqual([]);
  });
  it('firings are capped by max_keys: past it an alert fires but is not tracked', () => {
    const r = rule<AnyRule>({
      name: 'any',
      type: 'any',
      realert: 0,
      resolve_after: s(30),
      max_keys: 2,
      query_key: ['host.name'],
    });
    const events = ['a', 'b', 'c'].map((h, i) => ev(i, { 'host.name': h }));
    const { alerts, changes } = timeline([r], events, s(60));
    expect(alerts).toHaveLength(3);
    expect(changes.map((c) => c.key['host.name'])).toEqual(['a', 'b']);
  });
});

describe('rule files', () => {
  it('take keep_firing_for on every type and resolve_after on any, new_term and change', () => {
    const ok = parseRuleFile(
      'name: r\ntype: any\nkeep_firing_for: 30s\nresolve_after: 0s\n',
      'rule.yaml',
    );
    expect(ok.diagnostics).toEqual([]);
    expect(ok.rule).toMatchObject({ keep_firing_for: s(30), resolve_after: 0 });
  });
  it('refuse resolve_after where a condition clears, at its line and column', () => {
    const bad = parseRuleFile(
      'name: r\ntype: frequency\nnum_events: 2\ntimeframe: 1m\nresolve_after: 5m\n',
      'rule.yaml',
    );
    expect(bad.diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^rule\.yaml:5:1 "resolve_after" is for rules whose firing/),
    ]);
  });
});

describe('resolvedOnly', () => {
  it('sends only resolutions (pending and inactive are not built), alerts unchanged', () => {
    const r = rule<FrequencyRule>({
      name: 'f',
      type: 'frequency',
      num_events: 3,
      timeframe: s(10),
      for: s(5),
      realert: s(60),
      query_key: ['host.name'],
    });
    const changes: StateChange[] = [];
    const alerts: Alert[] = [];
    const engine = new Engine([r], {
      allowedLatenessMs: 0,
      observedFrom: T0,
      resolvedOnly: true,
      onAlert: (a) => alerts.push(a),
      onState: (c) => changes.push(c),
    });
    for (const e of at(0, 1, 2, 3, 4, 5, 6, 7, 8)) engine.process(e);
    engine.finish(T0 + s(40));
    expect(alerts.map((a) => Date.parse(a.at) - T0)).toEqual([s(7)]);
    expect(changes.map((c) => [c.state, Date.parse(c.at) - T0])).toEqual([['resolved', s(16)]]);
  });
});
