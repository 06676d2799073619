import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import {
  type Alert,
  Engine,
  type EngineSnapshot,
  METRIC_AGG_TYPES,
  type RuleSpec,
  type StateChange,
} from '../../rules/index.ts';
import { rule as withDefaults, s, T0 } from './helpers.ts';
import { type RefAlert, type RefResolution, referenceAlerts } from './reference-engine.ts';

/**
 * The engine against the plain reference evaluator (reference-engine.ts), on random
 * streams that arrive out of order, with late events, for every rule type and the options
 * that change alerts (`for`, `realert`, `exponential_realert`, flatline `expect` and
 * `forget_keys`, spike `alert_on_new_data`...), fed whole or cut at a random point by a
 * snapshot restored into a new engine.
 * Times are whole seconds so that ties and window edges occur; values are integers so
 * that sums are exact.
 */

const HOSTS = ['a', 'b', 'c'];

const eventArb = fc.record({
  t: fc.integer({ min: 0, max: 300 }),
  jitter: fc.integer({ min: 0, max: 40 }),
  host: fc.constantFrom(...HOSTS, null),
  user: fc.constantFrom('u1', 'u2', 'u3', 'u4', null),
  val: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant(null)),
  ver: fc.constantFrom('v1', 'v2', null),
});

/** Events in arrival order: each arrives up to 40 s after its time, so some are late. */
const streamArb = fc.array(eventArb, { maxLength: 50 }).map((list) =>
  list
    .map((e, i) => ({ ...e, i }))
    .sort((x, y) => x.t + x.jitter - (y.t + y.jitter) || x.i - y.i)
    .map((e): Event => {
      const event: Record<string, unknown> = { '@timestamp': T0 + s(e.t) };
      if (e.host !== null) event['host.name'] = e.host;
      if (e.user !== null) event.user = e.user;
      if (e.val !== null) event.val = e.val;
      if (e.ver !== null) event.ver = e.ver;
      return event as Event;
    }),
);

const common = {
  query_key: fc.constantFrom<string[]>([], ['host.name'], ['host.name', 'ver']),
  realert: fc.constantFrom(0, s(5), s(30), s(120)),
  exponential_realert: fc.option(fc.constantFrom(s(3), s(20), s(90), s(300)), {
    nil: undefined,
  }),
  keep_firing_for: fc.option(fc.constantFrom(s(2), s(15), s(60)), { nil: undefined }),
};
/** any, new_term, change: how long a firing lasts after its last occurrence. */
const resolveAfter = fc.option(fc.constantFrom(0, s(4), s(40)), { nil: undefined });
/** `for`, on the condition types the loader accepts it for. */
const forArb = fc.option(fc.constantFrom(s(1), s(10), s(45)), { nil: undefined });
const tf = fc.integer({ min: 1, max: 90 }).map(s);

const ruleArb: fc.Arbitrary<RuleSpec> = fc
  .oneof(
    fc.record({ type: fc.constant('any' as const), ...common, resolve_after: resolveAfter }),
    fc.record({
      type: fc.constant('frequency' as const),
      ...common,
      for: forArb,
      num_events: fc.integer({ min: 1, max: 5 }),
      timeframe: tf,
    }),
    fc.record({
      type: fc.constant('spike' as const),
      ...common,
      for: forArb,
      timeframe: tf,
      spike_height: fc.constantFrom(1.5, 2, 3),
      spike_type: fc.constantFrom('up' as const, 'down' as const, 'both' as const),
      threshold_cur: fc.integer({ min: 0, max: 3 }),
      threshold_ref: fc.integer({ min: 0, max: 3 }),
      alert_on_new_data: fc.boolean(),
    }),
    fc.record({
      type: fc.constant('flatline' as const),
      ...common,
      realert: fc.constantFrom(s(5), s(30), s(120)),
      timeframe: tf,
      threshold: fc.integer({ min: 1, max: 4 }),
      expect: fc.constantFrom([], [{ 'host.name': 'ghost' }], [{ 'host.name': 'a' }]),
      forget_keys: fc.boolean(),
    }),
    fc.record({
      type: fc.constant('new_term' as const),
      ...common,
      fields: fc.constantFrom(['user'], ['user', 'ver']),
      terms_window_size: tf,
      alert_on_missing_field: fc.boolean(),
      resolve_after: resolveAfter,
    }),
    fc.record({
      type: fc.constant('expiry' as const),
      ...common,
      ttl: tf,
    }),
    fc.record({
      type: fc.constant('change' as const),
      ...common,
      compare_key: fc.constantFrom(['ver'], ['ver', 'user']),
      ignore_null: fc.boolean(),
      timeframe: fc.option(tf, { nil: undefined }),
      resolve_after: resolveAfter,
    }),
    fc.record({
      type: fc.constant('cardinality' as const),
      ...common,
      for: forArb,
      cardinality_field: fc.constant('user'),
      timeframe: tf,
      max_cardinality: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      min_cardinality: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
    }),
    fc.record({
      type: fc.constant('metric_aggregation' as const),
      ...common,
      for: forArb,
      metric_agg_key: fc.constant('val'),
      metric_agg_type: fc.constantFrom(...METRIC_AGG_TYPES),
      timeframe: tf,
      max_threshold: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
      min_threshold: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
    }),
  )
  .map((r) => {
    const spec = Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined));
    // With a compound key, an `expect` entry names every query_key field (the loader's rule).
    if (r.type === 'flatline' && r.query_key.length === 2)
      spec.expect = (r.expect as readonly Record<string, unknown>[]).map((e) => ({
        ...e,
        ver: 'v1',
      }));
    return withDefaults({ name: `r-${r.type}`, ...spec } as unknown as RuleSpec & { type: 'any' });
  });

/** An engine alert in the reference's terms: its key, instant and the semantic figures. */
function semantic(spec: RuleSpec, a: Alert): RefAlert {
  const key = spec.query_key.map((f) => JSON.stringify(a.key[f])).join('|');
  const f = a.figures;
  const out = (discriminator: string, figures: Record<string, unknown> = {}): RefAlert => ({
    rule: a.rule,
    key,
    at: Date.parse(a.at),
    discriminator,
    figures,
  });
  switch (spec.type) {
    case 'flatline':
      return out('', { count: f.count });
    case 'cardinality':
      return out(f.max_cardinality !== undefined ? 'max' : 'min', {
        cardinality: f.cardinality,
      });
    case 'spike':
      return out(f.direction as string, {
        spike_count: f.spike_count,
        reference_count: f.reference_count,
      });
    case 'metric_aggregation':
      return out(f.max_threshold !== undefined ? 'above' : 'below', {
        value: f.value,
        samples: f.samples,
      });
    case 'new_term': {
      if (f.missing_field !== undefined)
        return out(`missing:${f.missing_field as string}`, { missing_field: f.missing_field });
      const term = f.term as Record<string, unknown>;
      return out(JSON.stringify(spec.fields.map((k) => term[k])));
    }
    case 'change': {
      const values = (v: unknown) =>
        JSON.stringify(
          spec.compare_key.length === 1
            ? [v]
            : spec.compare_key.map((k) => (v as Record<string, unknown>)[k]),
        );
      const now = values(f.new_value);
      return out(now, { old: values(f.old_value), new: now });
    }
    default:
      return out('');
  }
}

function runEngine(
  spec: RuleSpec,
  events: Event[],
  lateness: number,
  cut?: number,
  resolutions: RefResolution[] = [],
): Alert[] {
  const alerts: Alert[] = [];
  const options = {
    allowedLatenessMs: lateness,
    onAlert: (a: Alert) => alerts.push(a),
    onState: (c: StateChange) => {
      if (c.state !== 'resolved') return;
      resolutions.push({
        key: spec.query_key.map((f) => JSON.stringify(c.key[f])).join('|'),
        at: Date.parse(c.at),
        since: Date.parse(c.firing_since!),
      });
    },
  };
  let engine = new Engine([spec], options);
  events.forEach((e, i) => {
    if (i === cut) {
      const snapshot = JSON.parse(JSON.stringify(engine.snapshot())) as EngineSnapshot;
      engine = new Engine([spec], options);
      engine.restore(snapshot);
    }
    engine.process(structuredClone(e));
  });
  engine.finish();
  return alerts;
}

/**
 * Streams the random search once found the engine and the reference disagreeing on,
 * each run before the random ones (`examples`): what the engine must keep doing.
 */
const ev = (t: number, fields: Record<string, unknown>): Event => ({
  '@timestamp': T0 + s(t),
  ...fields,
});
const cardinality = (fields: Record<string, unknown>) =>
  ({
    query_key: [],
    realert: 0,
    labels: {},
    actions: [],
    enabled: true,
    name: 'r-cardinality',
    type: 'cardinality',
    cardinality_field: 'user',
    ...fields,
  }) as unknown as RuleSpec;
const KNOWN: Array<[RuleSpec, Event[], number, number]> = [
  // A sweep forgets a key whose samples all left the window before its firing's re-check
  // at that instant runs; a count over an empty window (0, under min_threshold) still
  // holds there, so nothing resolves, whether the sweep came first (after a restore: the
  // snapshot cut at the second event) or not.
  [
    {
      query_key: ['host.name', 'ver'],
      realert: 0,
      labels: {},
      actions: [],
      enabled: true,
      name: 'r-metric_aggregation',
      type: 'metric_aggregation',
      metric_agg_key: 'val',
      metric_agg_type: 'count',
      timeframe: s(3),
      min_threshold: 2,
    } as unknown as RuleSpec,
    [
      ev(254, { 'host.name': 'a', val: 0, ver: 'v1' }),
      ev(277, { 'host.name': 'a', val: 0, ver: 'v2' }),
    ],
    s(20),
    1,
  ],
  // keep_firing_for ends at the instant the condition holds again: the firing resolves
  // there, and the alert at that instant opens a new one (resolved at 5 and at 25).
  [
    cardinality({ keep_firing_for: s(2), timeframe: s(2), min_cardinality: 1 }),
    [0, 3, 23, 26].map((t) => ev(t, { 'host.name': 'a', user: 'u1' })),
    s(20),
    0,
  ],
  // A late report older than the key's newest alert (it expired again at 3) clears nothing.
  [
    {
      query_key: ['host.name'],
      realert: 0,
      labels: {},
      actions: [],
      enabled: true,
      name: 'r-expiry',
      type: 'expiry',
      keep_firing_for: s(2),
      ttl: s(1),
    } as unknown as RuleSpec,
    [
      ev(0, { 'host.name': 'a' }),
      ev(2, { 'host.name': 'a' }),
      ev(4, {}),
      ev(1, { 'host.name': 'a' }),
    ],
    0,
    0,
  ],
  // A late value that counts from the watermark on ends the firing there (at 111).
  [
    cardinality({ timeframe: s(3), min_cardinality: 3 }),
    [
      ev(0, { user: 'u1' }),
      ev(110, { user: 'u1' }),
      ev(109, { user: 'u1' }),
      ev(111, { user: 'u3' }),
      ev(110, { user: 'u4' }),
      ev(113, { user: 'u1' }),
    ],
    0,
    0,
  ],
  // An on-time value out of order that counts at the newest instant evaluated (174) ends
  // the firing there.
  [
    cardinality({ for: s(1), timeframe: s(3), min_cardinality: 2 }),
    [
      ev(0, { user: 'u1' }),
      ev(174, { user: 'u2' }),
      ev(172, { user: 'u2' }),
      ev(173, { user: 'u1' }),
      ev(196, { user: 'u1' }),
    ],
    s(20),
    3,
  ],
];

const byResolution = (a: RefResolution, b: RefResolution) =>
  a.at - b.at || a.key.localeCompare(b.key) || a.since - b.since;

const order = (a: RefAlert, b: RefAlert) =>
  a.at - b.at ||
  a.key.localeCompare(b.key) ||
  a.discriminator.localeCompare(b.discriminator) ||
  JSON.stringify(a.figures).localeCompare(JSON.stringify(b.figures));

describe('engine against the reference evaluator', () => {
  it('gives the same alerts on random out-of-order streams, whole or cut by a snapshot', () => {
    const seen = new Map<string, number>();
    const optionsSeen = new Set<string>();
    const resolvedSeen = new Set<string>();
    fc.assert(
      fc.property(
        ruleArb,
        streamArb,
        fc.constantFrom(0, s(5), s(20)),
        fc.nat(),
        (spec, events, lateness, cutSeed) => {
          const refResolved: RefResolution[] = [];
          const expected = referenceAlerts(spec, events, {
            lateness,
            resolutions: refResolved,
          }).sort(order);
          refResolved.sort(byResolution);
          const wholeResolved: RefResolution[] = [];
          const whole = runEngine(spec, events, lateness, undefined, wholeResolved)
            .map((a) => semantic(spec, a))
            .sort(order);
          expect(whole).toEqual(expected);
          expect(wholeResolved.sort(byResolution)).toEqual(refResolved);
          const cut = events.length === 0 ? 0 : cutSeed % events.length;
          const splitResolved: RefResolution[] = [];
          const split = runEngine(spec, events, lateness, cut, splitResolved)
            .map((a) => semantic(spec, a))
            .sort(order);
          expect(split).toEqual(expected);
          expect(splitResolved.sort(byResolution)).toEqual(refResolved);
          if (refResolved.length > 0) resolvedSeen.add(spec.type);
          if (expected.length > 0) {
            seen.set(spec.type, (seen.get(spec.type) ?? 0) + 1);
            const options = [
              spec.for !== undefined && 'for',
              spec.exponential_realert !== undefined && spec.realert > 0 && 'exponential_realert',
              spec.type === 'flatline' && spec.forget_keys && 'forget_keys',
              spec.type === 'spike' && !spec.alert_on_new_data && 'no alert_on_new_data',
            ];
            for (const o of options) if (o) optionsSeen.add(o);
          }
        },
      ),
      { numRuns: 4000, examples: KNOWN },
    );
    // The streams are not vacuous: every type fired in some runs.
    expect([...seen.keys()].sort()).toEqual([
      'any',
      'cardinality',
      'change',
      'expiry',
      'flatline',
      'frequency',
      'metric_aggregation',
      'new_term',
      'spike',
    ]);
    // Every type resolved in some runs.
    expect([...resolvedSeen].sort()).toEqual([...seen.keys()].sort());
    // ...and so did each option the reference models beyond the basics.
    expect([...optionsSeen].sort()).toEqual([
      'exponential_realert',
      'for',
      'forget_keys',
      'no alert_on_new_data',
    ]);
  }, 300_000);
});
