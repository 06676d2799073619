import { describe, expect, it } from 'vitest';
import type {
  AnyRule,
  CardinalityRule,
  ChangeRule,
  ExpiryRule,
  FlatlineRule,
  FrequencyRule,
  MetricAggregationRule,
  NewTermRule,
  SpikeRule,
} from '../../rules/index.ts';
import { ev, every, m, offsets, rule, run, s, T0 } from './helpers.ts';

describe('any', () => {
  const r = rule<AnyRule>({ name: 'errors', type: 'any', query_key: ['host.name'], realert: m(1) });
  it('fires on every matching event, once per key per realert', () => {
    const { alerts } = run(
      [r],
      [
        ev(0, { 'host.name': 'a' }),
        ev(s(10), { 'host.name': 'a' }),
        ev(s(20), { 'host.name': 'b' }),
        ev(s(61), { 'host.name': 'a' }),
      ],
    );
    expect(
      alerts.map((a) => [Date.parse(a.at) - Date.parse(alerts[0]!.at), a.key['host.name']]),
    ).toEqual([
      [0, 'a'],
      [s(20), 'b'],
      [s(61), 'a'],
    ]);
    expect(alerts[0]!.sample?.['host.name']).toBe('a');
  });
  it('an exponential_realert ceiling below realert caps every silence, the first too', () => {
    // Found by the differential test: the first silence lasted realert (30 s) and later
    // ones the ceiling (3 s), so how long a key stayed silent depended on whether a
    // sweep had dropped its silence state in between.
    const capped = rule<AnyRule>({
      name: 'capped',
      type: 'any',
      realert: s(30),
      exponential_realert: s(3),
    });
    const { alerts } = run([capped], [ev(0), ev(s(2)), ev(s(5)), ev(s(6)), ev(s(9))]);
    expect(alerts.map((a) => Date.parse(a.at) - Date.parse(alerts[0]!.at))).toEqual([
      0,
      s(5),
      s(9),
    ]);
  });
  it('skips events without the query_key field', () => {
    expect(run([r], [ev(0, {})]).alerts).toHaveLength(0);
  });
  it('filters events', () => {
    const only = rule<AnyRule>({
      name: 'f',
      type: 'any',
      filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'error' }] },
    });
    expect(
      run([only], [ev(0, { 'log.level': 'info' }), ev(1, { 'log.level': 'error' })]).alerts,
    ).toHaveLength(1);
  });
});

describe('frequency', () => {
  const r = rule<FrequencyRule>({
    name: 'f',
    type: 'frequency',
    num_events: 3,
    timeframe: m(1),
    query_key: ['service.name'],
    realert: m(5),
  });
  it('fires when num_events fall within the timeframe', () => {
    const { alerts } = run([r], every(0, 5, s(20), { 'service.name': 'web' }));
    expect(offsets(alerts)).toEqual([s(40)]);
    expect(alerts[0]!.figures).toMatchObject({ count: 3, num_events: 3 });
    expect(alerts[0]!.key).toEqual({ 'service.name': 'web' });
  });
  it('does not fire when they are spread wider than the timeframe', () => {
    expect(run([r], every(0, 5, s(31), { 'service.name': 'web' })).alerts).toHaveLength(0);
  });
  it('counts keys apart (compound keys too)', () => {
    const c = { ...r, query_key: ['service.name', 'host.name'] };
    const events = [0, 1, 2].flatMap((i) => [
      ev(s(i), { 'service.name': 'web', 'host.name': 'a' }),
      ev(s(i), { 'service.name': 'web', 'host.name': 'b' }),
    ]);
    const { alerts } = run([c], events);
    expect(alerts.map((a) => a.key)).toEqual([
      { 'service.name': 'web', 'host.name': 'a' },
      { 'service.name': 'web', 'host.name': 'b' },
    ]);
  });
  it('with `for`, fires only if the condition still holds after it', () => {
    const held = { ...r, for: s(30), realert: 0 };
    // 3 in 1m at 0,10,20 → holds from 20s; at 50s (the deadline) still 3 in (−10s, 50s] → fires at 50s.
    expect(
      offsets(run([held], every(0, 3, s(10), { 'service.name': 'w' }), { end: m(5) }).alerts),
    ).toEqual([s(50)]);
    // At 90s the first events left the window: condition broke before `for` passed.
    const late = { ...r, for: s(70), realert: 0 };
    expect(
      run([late], every(0, 3, s(10), { 'service.name': 'w' }), { end: m(5) }).alerts,
    ).toHaveLength(0);
  });
});

describe('`for` across the sweep', () => {
  it('a pending condition is not lost when the sweep drops the key', () => {
    // Found by the differential test: the sweep forgot a key whose window had emptied,
    // its pending `for` state with it, so whether a later holding evaluation fired at
    // once or started a new pending period depended on whether a sweep had run between.
    const r = rule<FrequencyRule>({
      name: 'f',
      type: 'frequency',
      num_events: 1,
      timeframe: s(2),
      for: s(1),
      query_key: ['host.name'],
    });
    const events = [
      ev(0, { 'host.name': 'a' }),
      // Another key moves the watermark one second at a time: sweeps run in between.
      ...every(s(3), 12, s(1), { 'host.name': 'b' }),
      ev(s(15), { 'host.name': 'a' }),
    ];
    const { alerts } = run([r], events);
    // Held at 0 and at the deadline (1 s), and holds at 15 s: checked at each evaluation.
    expect(offsets(alerts.filter((a) => a.key['host.name'] === 'a'))).toEqual([s(1), s(15)]);
  });
});

describe('spike', () => {
  const base = {
    name: 'sp',
    type: 'spike' as const,
    timeframe: m(5),
    spike_height: 3,
    threshold_cur: 1,
    threshold_ref: 1,
    alert_on_new_data: false,
    realert: m(10),
  };
  it('fires up when cur ≥ height × ref, with history', () => {
    const r = rule<SpikeRule>({ ...base, spike_type: 'up' });
    // ref window: 2 events per 5m for 10 minutes, then 6 events in a burst.
    const events = [...every(0, 4, m(2.5)), ...every(m(10) + s(1), 6, s(5))];
    const { alerts } = run([r], events);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.figures).toMatchObject({
      direction: 'up',
      spike_count: 6,
      reference_count: 2,
    });
  });
  it('never spikes on 0 ≥ 3 × 0 (thresholds default to 1)', () => {
    const r = rule<SpikeRule>({ ...base, spike_type: 'both', alert_on_new_data: true });
    expect(run([r], [ev(0)], { end: m(30) }).alerts).toHaveLength(0);
  });
  it('needs 2 × timeframe of history unless alert_on_new_data', () => {
    const burst = [ev(0), ...every(m(5) + s(1), 6, s(1))];
    expect(run([rule<SpikeRule>({ ...base, spike_type: 'up' })], burst).alerts).toHaveLength(0);
    expect(
      run([rule<SpikeRule>({ ...base, spike_type: 'up', alert_on_new_data: true })], burst).alerts,
    ).toHaveLength(1);
  });
  it("counts a key's history from its first event, even after it was quiet for 2 × timeframe", () => {
    // Found by the differential test: the sweep dropped a quiet key with its first-seen
    // time, so whether `a` (first seen at 0) had history at 140 s depended on whether a
    // sweep had run in between.
    const r = rule<SpikeRule>({
      ...base,
      spike_type: 'up',
      timeframe: m(1),
      spike_height: 2,
      threshold_ref: 0,
      realert: 0,
      query_key: ['host.name'],
    });
    const events = [
      ev(0, { 'host.name': 'a' }),
      // Another key moves the watermark one second at a time: sweeps run in between.
      ...every(s(121), 12, s(1), { 'host.name': 'b' }),
      ev(s(140), { 'host.name': 'a' }),
    ];
    const { alerts } = run([r], events);
    expect(alerts.filter((a) => a.key['host.name'] === 'a').map((a) => a.at)).toEqual([
      new Date(T0 + s(140)).toISOString(),
    ]);
  });
  it('fires down when a busy key goes quiet, without any event arriving', () => {
    const r = rule<SpikeRule>({ ...base, spike_type: 'down', threshold_cur: 0 });
    // 12 events per 5m for 15 minutes, then nothing until 25m.
    const { alerts } = run([r], every(0, 36, s(25)), { end: m(25) });
    expect(alerts.length).toBeGreaterThan(0);
    expect(alerts[0]!.figures).toMatchObject({ direction: 'down' });
    const at = offsets(alerts)[0]!;
    expect(at).toBeGreaterThan(m(15));
    expect(at).toBeLessThan(m(20));
  });
});

describe('flatline', () => {
  const base = rule<FlatlineRule>({
    name: 'fl',
    type: 'flatline',
    timeframe: m(1),
    threshold: 1,
    expect: [],
    forget_keys: false,
    query_key: ['host.name'],
    realert: m(5),
  });
  it('fires at the exact event time a key goes silent, and re-fires after realert while silent', () => {
    const { alerts } = run([base], every(0, 10, s(10), { 'host.name': 'a' }), { end: m(13) });
    // last event at 90s → (D−60s, D] empty from D = 150s; again at 150s + 5m and + 10m.
    expect(offsets(alerts)).toEqual([s(150), s(150) + m(5), s(150) + m(10)]);
    expect(alerts[0]!.figures).toMatchObject({ count: 0, threshold: 1 });
  });
  it('uses threshold as a count: fewer than N events in the window', () => {
    const r = { ...base, threshold: 3 };
    // events every 20s: 3 in any 60s window (boundary excluded: (D−60, D]) — fine until they slow down.
    const events = [
      ...every(0, 6, s(20), { 'host.name': 'a' }),
      ...every(s(100) + s(30), 3, s(30), { 'host.name': 'a' }),
    ];
    const { alerts } = run([r], events, { end: m(3) });
    expect(alerts.length).toBeGreaterThan(0);
    // (60, 120] holds only 80 and 100: the first instant with fewer than 3.
    expect(offsets(alerts)[0]).toBe(s(120));
  });
  it('watches `expect` keys it has never seen, once a full timeframe is observed', () => {
    const r = { ...base, expect: [{ 'host.name': 'ghost' }] };
    const { alerts } = run([r], every(0, 20, s(10), { 'host.name': 'a' }), { end: m(3) });
    expect(alerts.map((a) => [a.key['host.name'], Date.parse(a.at)])).toEqual([
      ['ghost', Date.parse('2024-01-01T00:01:00.000Z')],
    ]);
  });
  it('forget_keys drops a key after it fires', () => {
    const r = { ...base, forget_keys: true };
    expect(run([r], [ev(0, { 'host.name': 'a' })], { end: m(20) }).alerts).toHaveLength(1);
  });
  it('fires nothing for deadlines after the data ends', () => {
    expect(run([base], every(0, 10, s(10), { 'host.name': 'a' })).alerts).toHaveLength(0);
  });
});

describe('new_term', () => {
  const r = rule<NewTermRule>({
    name: 'nt',
    type: 'new_term',
    fields: ['error.fingerprint'],
    terms_window_size: m(60),
    alert_on_missing_field: false,
    realert: m(1),
  });
  it('fires once per value never seen in the window; all values, not a top 50', () => {
    const events = Array.from({ length: 200 }, (_, i) =>
      ev(s(i), { 'error.fingerprint': `f${i % 100}` }),
    );
    const { alerts } = run([r], events);
    expect(alerts).toHaveLength(100);
    expect(alerts[5]!.figures).toMatchObject({ term: { 'error.fingerprint': 'f5' } });
  });
  it('forgets terms older than terms_window_size', () => {
    const { alerts } = run(
      [r],
      [
        ev(0, { 'error.fingerprint': 'x' }),
        ev(m(30), { 'error.fingerprint': 'x' }),
        ev(m(91), { 'error.fingerprint': 'x' }),
      ],
    );
    expect(offsets(alerts)).toEqual([0, m(91)]);
  });
  it('composite terms and alert_on_missing_field', () => {
    const c = { ...r, fields: ['service.name', 'error.type'], alert_on_missing_field: true };
    const { alerts } = run(
      [c],
      [
        ev(0, { 'service.name': 'a', 'error.type': 'E' }),
        ev(1, { 'service.name': 'b', 'error.type': 'E' }),
        ev(2, { 'service.name': 'a' }),
      ],
    );
    expect(alerts.map((a) => a.figures)).toEqual([
      { term: { 'service.name': 'a', 'error.type': 'E' }, fields: ['service.name', 'error.type'] },
      { term: { 'service.name': 'b', 'error.type': 'E' }, fields: ['service.name', 'error.type'] },
      { missing_field: 'error.type' },
    ]);
  });
  it('learns silently before --from', () => {
    const { alerts } = run(
      [r],
      [
        ev(0, { 'error.fingerprint': 'old' }),
        ev(m(10), { 'error.fingerprint': 'old' }),
        ev(m(11), { 'error.fingerprint': 'new' }),
      ],
      { from: m(5) },
    );
    expect(alerts.map((a) => a.figures.term)).toEqual([{ 'error.fingerprint': 'new' }]);
  });
  it('takes seeded terms as seen', () => {
    const { engine, alerts } = run([r], []);
    engine.seedTerm('nt', {}, { 'error.fingerprint': 'known' }, ev(0)['@timestamp']);
    engine.process(ev(s(1), { 'error.fingerprint': 'known' }));
    expect(alerts).toHaveLength(0);
  });
});

describe('expiry', () => {
  const r = rule<ExpiryRule>({ name: 'ex', type: 'expiry', ttl: s(60), query_key: ['host.name'] });
  it('fires once per silence at last report + ttl, and re-arms on the next report', () => {
    const events = [
      ev(0, { 'host.name': 'a' }),
      ev(s(30), { 'host.name': 'a' }),
      ev(m(5), { 'host.name': 'a' }),
    ];
    const { alerts } = run([r], events, { end: m(10) });
    expect(offsets(alerts)).toEqual([s(90), m(6)]);
    expect(alerts[0]!.figures).toMatchObject({ ttl_ms: s(60) });
  });
  it("takes an event's ttl (seconds) over the rule's", () => {
    const { alerts } = run([r], [ev(0, { 'host.name': 'a', ttl: 10 })], { end: m(1) });
    expect(offsets(alerts)).toEqual([s(10)]);
  });
  it('per-event ttls: the last of two reports at one instant decides; out of order, known runs do', () => {
    const a = { 'host.name': 'a' };
    const tie = run([r], [ev(0, { ...a, ttl: 10 }), ev(0, { ...a, ttl: 2 })], { end: m(1) });
    expect(offsets(tie.alerts)).toEqual([s(2)]);
    // 5 s arrives after 8 s, inside the run 0..8 s: its 1 s ttl does not end it at 6 s.
    const events = [
      ev(0, { ...a, ttl: 10 }),
      ev(s(8), { ...a, ttl: 10 }),
      ev(s(5), { ...a, ttl: 1 }),
    ];
    const outOfOrder = run([r], events, { end: m(1), lateness: s(20) });
    expect(offsets(outOfOrder.alerts)).toEqual([s(18)]);
  });
});

describe('change', () => {
  const r = rule<ChangeRule>({
    name: 'ch',
    type: 'change',
    compare_key: ['version'],
    ignore_null: true,
    query_key: ['host.name'],
  });
  it('fires when the compared value differs from the previous one', () => {
    const events = [
      ev(0, { 'host.name': 'a', version: '1' }),
      ev(1, { 'host.name': 'a', version: '1' }),
      ev(2, { 'host.name': 'a' }),
      ev(3, { 'host.name': 'a', version: '2' }),
    ];
    const { alerts } = run([r], events);
    expect(alerts.map((a) => [a.figures.old_value, a.figures.new_value])).toEqual([['1', '2']]);
  });
  it('counts a missing value as null without ignore_null', () => {
    const events = [ev(0, { 'host.name': 'a', version: '1' }), ev(1, { 'host.name': 'a' })];
    expect(
      run([{ ...r, ignore_null: false }], events).alerts.map((a) => a.figures.new_value),
    ).toEqual([null]);
  });
  it('only within timeframe when set', () => {
    const events = [
      ev(0, { 'host.name': 'a', version: '1' }),
      ev(m(10), { 'host.name': 'a', version: '2' }),
    ];
    expect(run([{ ...r, timeframe: m(5) }], events).alerts).toHaveLength(0);
  });
});

describe('cardinality', () => {
  const base = {
    name: 'card',
    type: 'cardinality' as const,
    cardinality_field: 'user',
    timeframe: m(1),
    query_key: ['service.name'],
    realert: m(10),
  };
  it('fires above max_cardinality', () => {
    const r = rule<CardinalityRule>({ ...base, max_cardinality: 3 });
    const events = ['a', 'b', 'c', 'a', 'd'].map((u, i) =>
      ev(s(i), { 'service.name': 'web', user: u }),
    );
    const { alerts } = run([r], events);
    expect(offsets(alerts)).toEqual([s(4)]);
    expect(alerts[0]!.figures).toMatchObject({ cardinality: 4, max_cardinality: 3 });
  });
  it('fires below min_cardinality as values age out, once a full timeframe is observed', () => {
    const r = rule<CardinalityRule>({ ...base, min_cardinality: 2 });
    const events = [
      ...every(0, 10, s(10), { 'service.name': 'web', user: 'a' }),
      ...every(s(5), 3, s(10), { 'service.name': 'web', user: 'b' }),
    ];
    events.sort((x, y) => x['@timestamp'] - y['@timestamp']);
    const { alerts } = run([r], events, { end: m(3) });
    // user b last seen at 25s → leaves the window at 85s, leaving 1 distinct value.
    expect(offsets(alerts)).toEqual([s(85)]);
  });
});

describe('metric_aggregation', () => {
  const base = {
    name: 'lat',
    type: 'metric_aggregation' as const,
    metric_agg_key: 'metric.value',
    timeframe: m(1),
    query_key: ['service.name'],
    realert: m(10),
  };
  const samples = (values: number[]) =>
    values.map((v, i) => ev(s(i * 5), { 'service.name': 'checkout', 'metric.value': v }));
  it('avg above max_threshold (exclusive)', () => {
    const r = rule<MetricAggregationRule>({ ...base, metric_agg_type: 'avg', max_threshold: 500 });
    expect(run([r], samples([400, 500, 600])).alerts).toHaveLength(0); // avg 500, not > 500
    const { alerts } = run([r], samples([400, 500, 700]));
    expect(alerts[0]!.figures).toMatchObject({ value: 1600 / 3, samples: 3, max_threshold: 500 });
  });
  it('p95 nearest-rank over the window', () => {
    const r = rule<MetricAggregationRule>({ ...base, metric_agg_type: 'p95', max_threshold: 900 });
    const values = Array.from({ length: 12 }, (_, i) => (i === 11 ? 1000 : 100));
    const { alerts } = run([r], samples(values));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.figures.value).toBe(1000);
  });
  it('min, max, sum, count and min_threshold', () => {
    const cases: Array<[MetricAggregationRule['metric_agg_type'], number]> = [
      ['min', 1],
      ['max', 9],
      ['sum', 15],
      ['count', 3],
      ['p50', 5],
    ];
    for (const [type, expected] of cases) {
      const r = rule<MetricAggregationRule>({
        ...base,
        realert: 0,
        metric_agg_type: type,
        min_threshold: 1e9,
      });
      const { alerts } = run([r], samples([5, 1, 9]));
      expect(alerts.at(-1)!.figures.value, type).toBe(expected);
    }
  });
  it('only samples inside (t−tf, t] count', () => {
    const r = rule<MetricAggregationRule>({ ...base, metric_agg_type: 'max', max_threshold: 50 });
    const events = [
      ev(0, { 'service.name': 'c', 'metric.value': 100 }),
      ev(m(2), { 'service.name': 'c', 'metric.value': 10 }),
    ];
    expect(offsets(run([r], events).alerts)).toEqual([0]);
  });
});
