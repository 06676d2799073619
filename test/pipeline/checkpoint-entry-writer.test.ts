import { describe, expect, it, vi } from 'vitest';
import { decodeValue, EntryBatch } from '../../pipeline/checkpoint-codec.ts';
import type { EntrySink } from '../../rules/changes.ts';
import { Engine, type RuleSpec } from '../../rules/index.ts';
import type { RuleRunner, RunnerEntry } from '../../rules/runner.ts';
import { CardinalityRunner } from '../../rules/kinds/cardinality.ts';
import { ExpiryRunner } from '../../rules/kinds/expiry.ts';
import { FlatlineRunner } from '../../rules/kinds/flatline.ts';
import { FrequencyRunner } from '../../rules/kinds/frequency.ts';
import { MetricAggregationRunner } from '../../rules/kinds/metric-aggregation.ts';
import { SpikeRunner } from '../../rules/kinds/spike.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const base = { labels: {}, actions: [], enabled: true };
const rules = [
  {
    ...base,
    name: 'burst',
    type: 'frequency',
    num_events: 2,
    timeframe: 60_000,
    realert: 30_000,
    query_key: ['user.id'],
  },
  {
    ...base,
    name: 'silent',
    type: 'flatline',
    threshold: 2,
    timeframe: 60_000,
    expect: [],
    forget_keys: false,
    query_key: ['host.name'],
    realert: 60_000,
  },
  {
    ...base,
    name: 'spike',
    type: 'spike',
    timeframe: 30_000,
    spike_height: 2,
    spike_type: 'both',
    threshold_cur: 0,
    threshold_ref: 0,
    alert_on_new_data: true,
    realert: 0,
    query_key: ['host.name'],
  },
  {
    ...base,
    name: 'terms',
    type: 'new_term',
    fields: ['user.id'],
    terms_window_size: 3_600_000,
    query_key: [],
    realert: 0,
  },
] as unknown as RuleSpec[];

/** The kinds whose window state is more than timestamps: runs, intervals, values. */
const others = [
  {
    ...base,
    name: 'distinct',
    type: 'cardinality',
    cardinality_field: 'user.id',
    timeframe: 2_000,
    max_cardinality: 1_000,
    realert: 0,
    query_key: ['host.name'],
  },
  {
    ...base,
    name: 'expire',
    type: 'expiry',
    ttl: 1_500,
    realert: 0,
    query_key: ['host.name'],
  },
  {
    ...base,
    name: 'p95',
    type: 'metric_aggregation',
    metric_agg_key: 'v',
    metric_agg_type: 'p95',
    timeframe: 30_000,
    max_threshold: 1e9,
    realert: 0,
    query_key: ['host.name'],
  },
  {
    ...base,
    name: 'avg',
    type: 'metric_aggregation',
    metric_agg_key: 'v',
    metric_agg_type: 'avg',
    timeframe: 30_000,
    max_threshold: 1e9,
    realert: 0,
    query_key: ['user.id'],
  },
  {
    ...base,
    name: 'version',
    type: 'change',
    compare_key: ['ver'],
    ignore_null: true,
    realert: 0,
    query_key: ['host.name'],
  },
] as unknown as RuleSpec[];

/** Each entry both ways: `put` of `entry(id)` into one batch, `putEntry` into the other. */
class Both implements EntrySink {
  made = new EntryBatch();
  written = new EntryBatch();
  put(rule: string, id: string, entry: RunnerEntry | undefined): void {
    this.made.put(rule, id, entry);
    this.written.put(rule, id, entry);
  }
  putEntry(rule: string, id: string, runner: RuleRunner): void {
    this.made.put(rule, id, runner.entry(id));
    this.written.putEntry(rule, id, runner);
  }
}

/**
 * `dates`: some events carry a Date (not plain data: those entries go through node:v8).
 * Some events arrive up to 4.5 s late (within the lateness allowed): an expiry key then
 * holds runs before its newest, a cardinality value intervals with gaps.
 */
function engine(dates = true, specs = rules): Engine {
  const e = new Engine(specs, {
    allowedLatenessMs: 5_000,
    observedFrom: T0,
    maxKeysPerRule: 10_000,
    onAlert: () => {},
  });
  e.trackChanges(true);
  const wide = ['a', '\u0000', '\ud800', 'é', '日本', 'x'.repeat(300)];
  for (let i = 0; i < 600; i++)
    e.process({
      '@timestamp': T0 + i * 997 - (specs === rules || i % 3 !== 0 ? 0 : 4_500),
      'user.id': `u${i % 97}${wide[i % wide.length]}`,
      'host.name': `h${i % 7}`,
      v: i % 11 === 0 ? i / 3 : i,
      ver: i % 13 === 0 ? 'v2' : 'v1',
      message: wide[(i * 5) % wide.length],
      nested: { n: i % 3 === 0 ? -0 : i / 7, list: [1, 'two', null, true, Infinity] },
      ...(dates && i % 50 === 0 ? { when: new Date(i) } : {}),
    });
  if (specs !== rules)
    // Each host reports, then reports late from 4 s before (past the ttl and the
    // cardinality timeframe): an expiry run before the newest, a value's second interval.
    for (let h = 0; h < 7; h++)
      for (const late of [0, 4_000])
        e.process({
          '@timestamp': T0 + 610_000 + h * 10 - late,
          'user.id': `late${h}`,
          'host.name': `h${h}`,
          v: h,
          ver: 'v1',
        });
  return e;
}

describe('checkpoint entries written without making them', () => {
  it('gives the bytes of the entry encoded whole, for every entry of a full capture', () => {
    const e = engine();
    const both = new Both();
    const capture = e.capture(both);
    while (!capture.step(64));
    expect(both.made.rows).toBeGreaterThan(200);
    expect(both.written.rows).toBe(both.made.rows);
    expect(new Set(both.made.rules.slice(0, both.made.rows))).toStrictEqual(
      new Set(['burst', 'silent', 'spike', 'terms']),
    );
    expect(both.written.rules).toStrictEqual(both.made.rules);
    expect(both.written.spans.subarray(0, 3 * both.made.rows)).toStrictEqual(
      both.made.spans.subarray(0, 3 * both.made.rows),
    );
    expect(
      Buffer.compare(
        both.written.bytes.subarray(0, both.written.end),
        both.made.bytes.subarray(0, both.made.end),
      ),
    ).toBe(0);
    // Entries past plain data (a Date in a sample) went through node:v8 both ways.
    let v8 = 0;
    for (let r = 0; r < both.made.rows; r++)
      if (both.made.bytes[both.made.spans[3 * r + 1]!] === 0xff) v8++;
    expect(v8).toBeGreaterThan(0);
  });

  it('gives the same bytes for cardinality, expiry, metric aggregation and change', () => {
    const e = engine(true, others);
    const both = new Both();
    const capture = e.capture(both);
    while (!capture.step(64));
    const made = both.made;
    const rules = new Set(made.rules.slice(0, made.rows));
    expect(rules).toStrictEqual(new Set(['distinct', 'expire', 'p95', 'avg', 'version']));
    expect(both.written.rows).toBe(made.rows);
    expect(both.written.rules).toStrictEqual(made.rules);
    expect(both.written.spans.subarray(0, 3 * made.rows)).toStrictEqual(
      made.spans.subarray(0, 3 * made.rows),
    );
    expect(
      Buffer.compare(
        both.written.bytes.subarray(0, both.written.end),
        made.bytes.subarray(0, made.end),
      ),
    ).toBe(0);
    // The states the writers walk: expiry keys with runs before the newest, cardinality
    // values with more than one interval, windows of several samples.
    let olderRuns = 0;
    let gaps = 0;
    let samples = 0;
    for (let r = 0; r < made.rows; r++) {
      const bytes = made.bytes.subarray(made.spans[3 * r + 1], made.spans[3 * r + 2]);
      if (bytes.length === 0 || bytes[0] === 0xff) continue;
      const k = (decodeValue(bytes) as RunnerEntry).k as Record<string, unknown> | undefined;
      if (k === undefined) continue;
      if (made.rules[r] === 'expire' && (k.runs as unknown[]).length > 1) olderRuns++;
      if (made.rules[r] === 'distinct')
        for (const [, c] of k.values as Array<[string, number[]]>) if (c.length > 2) gaps++;
      if (made.rules[r] === 'p95' && (k.values as number[]).length > 1) samples++;
    }
    expect(olderRuns).toBeGreaterThan(0);
    expect(gaps).toBeGreaterThan(0);
    expect(samples).toBeGreaterThan(0);
  });

  it('writes nothing for an id the runner does not hold, as put does for no entry', () => {
    const e = engine();
    const both = new Both();
    const capture = e.capture(both);
    while (!capture.step(64));
    const batch = new EntryBatch();
    const runner = { writeEntry: () => false, entry: () => undefined };
    batch.putEntry('burst', 'nobody', runner);
    expect(batch.spans[1]).toBe(batch.spans[2]);
  });

  it("makes no window-state object per entry for frequency, flatline and spike (a capture's allocation)", () => {
    const e = engine(false);
    const frequency = vi.spyOn(
      FrequencyRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    const flatline = vi.spyOn(
      FlatlineRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    const spike = vi.spyOn(
      SpikeRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    try {
      const capture = e.capture(new EntryBatch());
      while (!capture.step(64));
      expect(capture.entries).toBeGreaterThan(200);
      expect(frequency).not.toHaveBeenCalled();
      expect(flatline).not.toHaveBeenCalled();
      expect(spike).not.toHaveBeenCalled();
    } finally {
      spike.mockRestore();
      frequency.mockRestore();
      flatline.mockRestore();
    }
  });

  it('makes no window-state object per entry for cardinality, expiry and metric aggregation', () => {
    const e = engine(false, others);
    const spies = [CardinalityRunner, ExpiryRunner, MetricAggregationRunner].map((k) =>
      vi.spyOn(k.prototype as unknown as { encodeKey: () => unknown }, 'encodeKey'),
    );
    try {
      const capture = e.capture(new EntryBatch());
      while (!capture.step(64));
      expect(capture.entries).toBeGreaterThan(50);
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
