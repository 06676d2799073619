import { afterEach, describe, expect, it, vi } from 'vitest';
import { Engine, type FrequencyRule, type MetricAggregationRule } from '../../rules/index.ts';
import { sweepTurns } from '../../rules/engine.ts';
import { FrequencyRunner } from '../../rules/kinds/frequency.ts';
import { MetricAggregationRunner } from '../../rules/kinds/metric-aggregation.ts';
import { ev, m, rule, s, T0 } from './helpers.ts';

/**
 * A rule comes up for a sweep every 10 s of event time; one whose state spans longer is
 * swept every half its span, at most every 60 s (engine.ts). With 1,000 rules the sweeps
 * were about a tenth of the hot path's time (bench/README.md, "Hot path").
 */
describe('how often a rule is swept', () => {
  afterEach(() => vi.restoreAllMocks());

  it('every half its span in 10 s turns, from every turn to every sixth', () => {
    expect(sweepTurns(0)).toBe(1);
    expect(sweepTurns(s(30))).toBe(1);
    expect(sweepTurns(m(1))).toBe(3);
    expect(sweepTurns(m(2))).toBe(6);
    expect(sweepTurns(m(60 * 24))).toBe(6);
    expect(sweepTurns(Number.POSITIVE_INFINITY)).toBe(6);
  });

  it('a 1-minute frequency rule every 30 s, a 30 s aggregation every 10 s', () => {
    const frequency = vi.spyOn(FrequencyRunner.prototype, 'sweep');
    const aggregation = vi.spyOn(MetricAggregationRunner.prototype, 'sweep');
    const e = new Engine(
      [
        rule<FrequencyRule>({
          name: 'burst',
          type: 'frequency',
          query_key: ['host'],
          num_events: 50,
          timeframe: m(1),
        }),
        rule<MetricAggregationRule>({
          name: 'latency',
          type: 'metric_aggregation',
          query_key: ['host'],
          metric_agg_key: 'value',
          metric_agg_type: 'avg',
          timeframe: s(30),
          max_threshold: 1e9,
        }),
      ],
      { allowedLatenessMs: 0, observedFrom: T0, onAlert: () => {} },
    );
    // Ten minutes of event time, an event a second: 60 turns of 10 s.
    for (let i = 0; i < 600; i++) e.process(ev(s(i), { host: 'h1', value: i }));
    expect(aggregation.mock.calls.length).toBeGreaterThanOrEqual(59);
    expect(aggregation.mock.calls.length).toBeLessThanOrEqual(61);
    expect(frequency.mock.calls.length).toBeGreaterThanOrEqual(19);
    expect(frequency.mock.calls.length).toBeLessThanOrEqual(21);
  });
});
