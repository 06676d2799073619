import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import {
  type Alert,
  EVIDENCE_BYTES,
  EVIDENCE_EVENTS,
  Engine,
  type Explanation,
  type FrequencyRule,
  type RuleSpec,
  type SpikeRule,
  renderEvent,
  ruleHash,
} from '../../rules/index.ts';
import { ev, every, rule, s, T0 } from './helpers.ts';

function explained(rules: RuleSpec[], events: Event[]) {
  const out: Array<{ alert: Alert; explanation: Explanation | undefined }> = [];
  const engine = new Engine(rules, {
    allowedLatenessMs: 0,
    observedFrom: T0,
    explain: true,
    onAlert: (alert, explanation) => out.push({ alert, explanation }),
  });
  for (const e of events) engine.process(e);
  engine.finish();
  return out;
}

const burst = rule<FrequencyRule>({
  name: 'burst',
  type: 'frequency',
  query_key: ['host.name'],
  num_events: 3,
  timeframe: s(60),
  realert: s(600),
  source: { file: 'rules/burst.yaml' },
});

describe('alert explanations', () => {
  it('carry the figures, the window in event time, the rule hash and file, and the events that counted', () => {
    const [first, ...rest] = explained(
      [burst],
      [
        ev(0, { 'host.name': 'web-1', message: 'too early' }),
        ev(s(70), { 'host.name': 'web-1', message: 'one' }),
        ev(s(80), { 'host.name': 'web-2', message: 'other key' }),
        ev(s(90), { 'host.name': 'web-1', message: 'two' }),
        ev(s(100), { 'host.name': 'web-1', message: 'three' }),
      ],
    );
    expect(rest).toEqual([]);
    const x = first!.explanation!;
    expect(x.rule).toEqual({ name: 'burst', hash: ruleHash(burst), file: 'rules/burst.yaml' });
    expect(x.rule.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(x.figures).toEqual(first!.alert.figures);
    expect(x.window).toEqual({
      from: new Date(T0 + s(40)).toISOString(),
      to: new Date(T0 + s(100)).toISOString(),
    });
    // Only this key's events within the window, oldest first.
    expect(x.events.map((e) => e.message)).toEqual(['one', 'two', 'three']);
    expect(x.eventsSeen).toBe(3);
    expect(x.eventsOmitted).toBe(0);
  });

  it('the hash follows the definition, not where it was read from', () => {
    expect(ruleHash({ ...burst, source: { file: 'elsewhere.yaml' } })).toBe(ruleHash(burst));
    expect(ruleHash({ ...burst, num_events: 4 })).not.toBe(ruleHash(burst));
  });

  it('a spike names its reference window too', () => {
    const spike = rule<SpikeRule>({
      name: 'surge',
      type: 'spike',
      timeframe: s(10),
      spike_height: 2,
      spike_type: 'up',
      threshold_cur: 1,
      threshold_ref: 1,
      alert_on_new_data: false,
    });
    const out = explained(
      [spike],
      [...every(0, 3, s(3)), ...every(s(10), 3, s(3)), ...every(s(20), 20, 400)],
    );
    const x = out[0]!.explanation!;
    const to = Date.parse(x.window.to);
    expect(Date.parse(x.window.from)).toBe(to - s(10));
    expect(x.window.reference).toEqual({
      from: new Date(to - s(20)).toISOString(),
      to: new Date(to - s(10)).toISOString(),
    });
  });

  it('many events: at most EVIDENCE_EVENTS shown, the newest, the rest counted', () => {
    const many = rule<FrequencyRule>({ ...burst, num_events: 50 });
    const events = Array.from({ length: 50 }, (_, i) =>
      ev(i * 100, { 'host.name': 'web-1', n: i }),
    );
    const x = explained([many], events)[0]!.explanation!;
    expect(x.events).toHaveLength(EVIDENCE_EVENTS);
    expect(x.events.map((e) => e.n)).toEqual(Array.from({ length: 10 }, (_, i) => 40 + i));
    expect(x.eventsSeen).toBe(50);
    expect(x.eventsOmitted).toBe(40);
  });

  it('hostile huge events: clipped per value, per event and in all', () => {
    const huge = 'x'.repeat(2_000_000);
    const wide: Record<string, unknown> = { 'host.name': 'web-1', message: huge };
    for (let i = 0; i < 100_000; i++) wide[`f${i}`] = huge.slice(0, 300);
    wide['nested'] = { deep: { deeper: huge } };
    const x = explained(
      [burst],
      [ev(0, wide), ev(1, wide), ev(2, { ...wide, ['k'.repeat(10_000)]: 1 })],
    )[0]!.explanation!;
    const size = Buffer.byteLength(JSON.stringify(x.events));
    expect(size).toBeLessThanOrEqual(EVIDENCE_BYTES);
    expect(x.events.length).toBeGreaterThan(0);
    for (const e of x.events) {
      expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThanOrEqual(2048);
      expect(String(e.message)).toMatch(/… \(2000000 characters\)$/);
      expect(e['…fields']).toMatch(/fields shown/);
    }
    expect(x.eventsSeen).toBe(3);
  });

  it('renders nested values as markers, never walking them', () => {
    let walked = false;
    const trap = {
      get deep() {
        walked = true;
        return 1;
      },
    };
    const r = renderEvent({ a: trap, b: [1, 2, 3], c: null, d: 1.5, e: true });
    expect(walked).toBe(false);
    expect(r).toEqual({ a: '[object]', b: '[array of 3]', c: null, d: 1.5, e: true });
  });

  it('without `explain` the engine keeps no evidence and passes no explanation', () => {
    const got: unknown[] = [];
    const engine = new Engine([burst], {
      allowedLatenessMs: 0,
      observedFrom: T0,
      onAlert: (_a, x) => got.push(x),
    });
    for (const e of every(0, 3, s(1), { 'host.name': 'a' })) engine.process(e);
    expect(got).toEqual([undefined]);
  });
});
