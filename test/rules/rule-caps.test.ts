import { describe, expect, it } from 'vitest';
import {
  type Alert,
  Engine,
  type FlatlineRule,
  type CardinalityRule,
  type FrequencyRule,
  type NewTermRule,
  parseRuleFile,
  type RuleSpec,
} from '../../rules/index.ts';
import { ev, m, rule, s, T0 } from './helpers.ts';

/**
 * Keys and terms are values the sender picks (one client.ip per line). A rule holds at
 * most max_keys keys and max_terms terms; past the cap a new one is refused, counted and
 * reported, and what the rule already holds keeps working.
 */
function engine(
  rules: RuleSpec[],
  options: { maxKeysPerRule?: number; maxTermsPerRule?: number } = {},
) {
  const alerts: Alert[] = [];
  const refused: Array<[string, string, number]> = [];
  const e = new Engine(rules, {
    allowedLatenessMs: 0,
    observedFrom: T0,
    onAlert: (a) => alerts.push(a),
    onRefused: (r, what, cap) => refused.push([r, what, cap]),
    ...options,
  });
  return { e, alerts, refused };
}

const perIp = rule<FrequencyRule>({
  name: 'per-ip',
  type: 'frequency',
  query_key: ['client.ip'],
  num_events: 2,
  timeframe: m(10),
  max_keys: 3,
});

describe('per-rule caps on keys and terms', () => {
  it('a frequency rule holds at most max_keys keys; held keys still alert', () => {
    const { e, alerts, refused } = engine([perIp]);
    for (let i = 0; i < 10; i++) e.process(ev(s(i), { 'client.ip': `10.0.0.${i}` }));
    const stats = e.stats()[0]!;
    expect(stats.keys).toBe(3);
    expect(stats.keysRefused).toBe(7);
    expect(refused).toHaveLength(7);
    expect(refused[0]).toEqual(['per-ip', 'key', 3]);
    // A second event of a held key completes its window; of a refused one, nothing.
    e.process(ev(s(20), { 'client.ip': '10.0.0.1' }));
    e.process(ev(s(21), { 'client.ip': '10.0.0.9' }));
    e.process(ev(s(22), { 'client.ip': '10.0.0.9' }));
    expect(alerts.map((a) => a.key)).toEqual([{ 'client.ip': '10.0.0.1' }]);
    expect(e.stats()[0]!.keysRefused).toBe(9);
  });

  it('rules.maxKeysPerRule is the default; max_keys overrides it per rule', () => {
    const { max_keys: _, ...noCap } = perIp;
    const other = { ...noCap, name: 'other' };
    const { e } = engine([noCap, { ...other, max_keys: 5 }], {
      maxKeysPerRule: 2,
    });
    for (let i = 0; i < 10; i++) e.process(ev(s(i), { 'client.ip': `10.0.0.${i}` }));
    expect(e.stats().map((x) => [x.rule, x.keys, x.keysRefused])).toEqual([
      ['per-ip', 2, 8],
      ['other', 5, 5],
    ]);
  });

  it('a key is admitted again once the rule has forgotten enough keys', () => {
    const { e } = engine([perIp]);
    for (let i = 0; i < 4; i++) e.process(ev(s(i), { 'client.ip': `a${i}` }));
    expect(e.stats()[0]).toMatchObject({ keys: 3, keysRefused: 1 });
    // Their windows empty after the timeframe, and the sweep forgets the keys: a rule is
    // swept at least every 60 s of event time (engine.ts, sweepTurns).
    for (let i = 0; i < 61; i++) e.process(ev(m(11) + s(i), { other: 1 }));
    e.process(ev(m(12) + s(2), { 'client.ip': 'late-comer' }));
    expect(e.stats()[0]).toMatchObject({ keys: 1, keysRefused: 1 });
  });

  it('an any rule with realert holds at most max_keys silences', () => {
    const any = rule({
      name: 'any',
      type: 'any',
      query_key: ['client.ip'],
      realert: m(60),
      max_keys: 2,
    });
    const { e, alerts } = engine([any]);
    for (let i = 0; i < 5; i++) e.process(ev(s(i), { 'client.ip': `ip${i}` }));
    expect(alerts).toHaveLength(2);
    expect(e.stats()[0]!.keysRefused).toBe(3);
    // A held key is still silenced, not refused.
    e.process(ev(s(10), { 'client.ip': 'ip0' }));
    expect(alerts).toHaveLength(2);
    expect(e.stats()[0]!.keysRefused).toBe(3);
  });

  it('flatline: a refused key never gets a false flatline, expected keys are held', () => {
    const flat = rule<FlatlineRule>({
      name: 'flat',
      type: 'flatline',
      query_key: ['host'],
      timeframe: m(1),
      threshold: 1,
      expect: [{ host: 'db-1' }],
      forget_keys: false,
      realert: m(10),
      max_keys: 2,
    });
    const { e, alerts } = engine([flat]);
    for (const host of ['db-1', 'web-1', 'evil-1', 'evil-2']) e.process(ev(s(1), { host }));
    e.finish(T0 + m(5));
    expect(e.stats()[0]).toMatchObject({ keys: 2, keysRefused: 2 });
    expect(new Set(alerts.map((a) => a.key.host))).toEqual(new Set(['db-1', 'web-1']));
  });

  it('new_term holds at most max_terms terms (default rules.maxTermsPerRule)', () => {
    const terms = rule<NewTermRule>({
      name: 'new-ip',
      type: 'new_term',
      fields: ['client.ip'],
      terms_window_size: m(60),
      alert_on_missing_field: false,
      max_terms: 4,
    });
    const { e, alerts, refused } = engine([terms]);
    for (let i = 0; i < 10; i++) e.process(ev(s(i), { 'client.ip': `ip${i}` }));
    expect(alerts).toHaveLength(4);
    expect(e.stats()[0]).toMatchObject({ terms: 4, termsRefused: 6 });
    expect(refused[0]).toEqual(['new-ip', 'term', 4]);
    // A known term is seen again without an alert and without a refusal.
    e.process(ev(s(20), { 'client.ip': 'ip0' }));
    expect(e.stats()[0]).toMatchObject({ terms: 4, termsRefused: 6 });

    const { max_terms: _, ...noCap } = terms;
    const d = engine([noCap], { maxTermsPerRule: 2 });
    for (let i = 0; i < 10; i++) d.e.process(ev(s(i), { 'client.ip': `ip${i}` }));
    expect(d.e.stats()[0]).toMatchObject({ terms: 2, termsRefused: 8 });
  });

  it('new_term with alert_on_missing_field: silences per key are capped by max_terms', () => {
    const missing = rule<NewTermRule>({
      name: 'missing',
      type: 'new_term',
      query_key: ['client.ip'],
      fields: ['user'],
      terms_window_size: m(60),
      alert_on_missing_field: true,
      realert: m(60),
      max_terms: 3,
    });
    const { e, alerts } = engine([missing]);
    for (let i = 0; i < 10; i++) e.process(ev(s(i), { 'client.ip': `ip${i}` }));
    expect(alerts).toHaveLength(3);
    expect(e.stats()[0]!.termsRefused).toBe(7);
  });
});

describe('max_keys and max_terms in rule files', () => {
  const base = 'name: r\ntype: frequency\nquery_key: client.ip\nnum_events: 2\ntimeframe: 1m\n';
  const lint = (text: string) =>
    parseRuleFile(text, 'r.yaml').diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`);

  it('are read into the rule', () => {
    expect(parseRuleFile(`${base}max_keys: 500\n`, 'r.yaml').rule).toMatchObject({ max_keys: 500 });
    const nt = 'name: n\ntype: new_term\nfields: ip\nmax_terms: 7\nmax_keys: 2\n';
    expect(parseRuleFile(nt, 'r.yaml').rule).toMatchObject({ max_terms: 7, max_keys: 2 });
  });

  it('are checked', () => {
    expect(lint(`${base}max_keys: 0\n`)).toEqual(['6:11 "max_keys" must be ≥ 1']);
    expect(lint(`${base}max_keys: many\n`)).toEqual(['6:11 "max_keys" must be an integer']);
    expect(lint(`${base}max_terms: 10\n`)).toEqual([
      '6:1 "max_terms" is not an option of frequency rules (it belongs to new_term)',
    ]);
  });
});

describe('per-key bounds on what a sender can pile up', () => {
  it('a frequency key keeps at most 10,000 event times past the watermark, and still alerts', () => {
    const alerts: Alert[] = [];
    // An hour of allowed lateness: every event stays past the watermark.
    const e = new Engine(
      [rule<FrequencyRule>({ name: 'burst', type: 'frequency', num_events: 3, timeframe: m(10) })],
      { allowedLatenessMs: m(60), observedFrom: T0, onAlert: (a) => alerts.push(a) },
    );
    for (let i = 0; i < 30_000; i++) e.process(ev(i));
    expect(alerts.length).toBeGreaterThan(0);
    // 8 bytes a time, in a buffer that at most doubles past what it holds.
    expect(e.stats()[0]!.bytes).toBeLessThanOrEqual(2 * 8 * 10_003 + 64);
  });

  it('a cardinality key holds at most 10,000 distinct values; past it one is refused and counted', () => {
    const { e, alerts, refused } = engine([
      rule<CardinalityRule>({
        name: 'many-users',
        type: 'cardinality',
        cardinality_field: 'user',
        max_cardinality: 5,
        timeframe: m(60),
        realert: m(120),
      }),
    ]);
    for (let i = 0; i < 12_000; i++) e.process(ev(i, { user: `u${i}` }));
    // Above the maximum at the 6th value: the alert does not need the values past the cap.
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.figures).toMatchObject({ cardinality: 6, max_cardinality: 5 });
    const stats = e.stats()[0]!;
    expect(stats.termsRefused).toBe(2_000);
    expect(refused).toHaveLength(2_000);
    expect(refused[0]).toEqual(['many-users', 'term', 10_000]);
    // A value already held still counts.
    e.process(ev(20_000, { user: 'u1' }));
    expect(e.stats()[0]!.termsRefused).toBe(2_000);
    expect(stats.bytes).toBeLessThanOrEqual(64 + 10_000 * (48 + 16));
  });
});
