import { describe, expect, it } from 'vitest';
import {
  defaultWarmupMs,
  parseRuleFile,
  type RuleSpec,
  warmupNeedMs,
  warmupReport,
} from '../../rules/index.ts';

function rule(yaml: string): RuleSpec {
  const { rule, diagnostics } = parseRuleFile(yaml, 'r.yaml');
  expect(diagnostics).toEqual([]);
  return rule!;
}

const FILTER = 'filter: { all: [ { fact: message, operator: equal, value: x } ] }';

describe('the warm-up a rule needs before --from', () => {
  it('is its longest window, plus for', () => {
    const cases: Array<[string, number]> = [
      [`name: a\ntype: any\n${FILTER}`, 0],
      [`name: f\ntype: frequency\nnum_events: 3\ntimeframe: 2m\n${FILTER}`, 120_000],
      [`name: f2\ntype: frequency\nnum_events: 3\ntimeframe: 2m\nfor: 30s\n${FILTER}`, 150_000],
      [`name: s\ntype: spike\ntimeframe: 5m\nspike_height: 2\nspike_type: up\n${FILTER}`, 600_000],
      [`name: fl\ntype: flatline\ntimeframe: 10m\nthreshold: 1\n${FILTER}`, 600_000],
      [`name: n\ntype: new_term\nfields: [a]\nterms_window_size: 1d\n${FILTER}`, 86_400_000],
      [`name: e\ntype: expiry\nquery_key: host.name\nttl: 45s\n${FILTER}`, 45_000],
      [`name: c\ntype: change\nquery_key: h\ncompare_key: v\ntimeframe: 1h\n${FILTER}`, 3_600_000],
      [`name: c2\ntype: change\nquery_key: h\ncompare_key: v\n${FILTER}`, Infinity],
      [
        `name: k\ntype: cardinality\ncardinality_field: u\nmax_cardinality: 3\ntimeframe: 3m\n${FILTER}`,
        180_000,
      ],
      [
        `name: m\ntype: metric_aggregation\nmetric_agg_key: metric.value\nmetric_agg_type: avg\nmax_threshold: 1\ntimeframe: 4m\n${FILTER}`,
        240_000,
      ],
    ];
    for (const [yaml, need] of cases)
      expect([yaml, warmupNeedMs(rule(yaml))]).toEqual([yaml, need]);
  });

  it('defaults to the longest finite need of the enabled rules', () => {
    const rules = [
      rule(`name: s\ntype: spike\ntimeframe: 5m\nspike_height: 2\nspike_type: up\n${FILTER}`),
      rule(`name: c2\ntype: change\nquery_key: h\ncompare_key: v\n${FILTER}`),
      rule(`name: off\ntype: flatline\ntimeframe: 1h\nthreshold: 1\nenabled: false\n${FILTER}`),
    ];
    expect(defaultWarmupMs(rules)).toBe(600_000);
  });

  it('reports what each rule got: the history before from, at most its need', () => {
    const rules = [
      rule(`name: f\ntype: frequency\nnum_events: 3\ntimeframe: 2m\n${FILTER}`),
      rule(`name: n\ntype: new_term\nfields: [a]\nterms_window_size: 1d\n${FILTER}`),
      rule(`name: c2\ntype: change\nquery_key: h\ncompare_key: v\n${FILTER}`),
    ];
    expect(warmupReport(rules, 1_000_000, 1_000_000 - 300_000)).toEqual([
      { rule: 'f', needMs: 120_000, gotMs: 120_000 },
      { rule: 'n', needMs: 86_400_000, gotMs: 300_000 },
      { rule: 'c2', needMs: Infinity, gotMs: 300_000 },
    ]);
    // The first event after --from, or no --from: no warm-up.
    expect(warmupReport(rules, 1_000_000, 1_000_500).map((e) => e.gotMs)).toEqual([0, 0, 0]);
    expect(warmupReport(rules, undefined, 5).map((e) => e.gotMs)).toEqual([0, 0, 0]);
  });
});
