import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import {
  type Alert,
  backtest,
  type CardinalityRule,
  Engine,
  type EngineSnapshot,
  type ExpiryRule,
  type FlatlineRule,
  type FrequencyRule,
} from '../../rules/index.ts';
import { BIN, serverEnv } from '../support/drover.ts';
import { ev, every, m, offsets, rule, s, T0 } from './helpers.ts';

const byTime = (a: Event, b: Event) => a['@timestamp'] - b['@timestamp'];

function fleet(hosts: string[], fromMs: number, toMs: number, stepMs: number): Event[] {
  const out: Event[] = [];
  for (let t = fromMs; t < toMs; t += stepMs)
    for (const h of hosts) out.push(ev(t, { 'host.name': h, 'service.name': 'web' }));
  return out;
}

describe('cardinality with min_cardinality', () => {
  const card = rule<CardinalityRule>({
    name: 'hosts-up',
    type: 'cardinality',
    cardinality_field: 'host.name',
    timeframe: m(1),
    min_cardinality: 6,
    realert: m(60),
  });
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6'];

  it('counts a value whose newest event is later than the instant, if it also reported inside the window', () => {
    const alerts: Alert[] = [];
    const e = new Engine([card], { allowedLatenessMs: s(5), onAlert: (a) => alerts.push(a) });
    for (const event of fleet(hosts, 0, m(10), s(1))) e.process(event);
    e.finish();
    expect(alerts).toEqual([]);
  });

  it('fires once a host has been silent a full timeframe, with the right count', () => {
    const alerts: Alert[] = [];
    const e = new Engine([card], { allowedLatenessMs: s(5), onAlert: (a) => alerts.push(a) });
    const events = [
      ...fleet(hosts.slice(0, 5), 0, m(10), s(1)),
      ...fleet(['h6'], 0, m(5), s(1)),
    ].sort(byTime);
    for (const event of events) e.process(event);
    e.finish();
    // h6's last event is at 4:59; (D−1m, D] holds none of it from D = 5:59.
    expect(offsets(alerts)).toEqual([m(5) + s(59)]);
    expect(alerts[0]!.figures).toMatchObject({ cardinality: 5, min_cardinality: 6 });
  });
});

describe('backtest', () => {
  const flat = rule<FlatlineRule>({
    name: 'silent-expected',
    type: 'flatline',
    timeframe: m(30),
    threshold: 1,
    expect: [{ 'service.name': 'billing' }],
    forget_keys: false,
    query_key: ['service.name'],
    realert: m(60),
  });
  const lines = () =>
    Readable.from(
      every(0, 120, m(1), { 'service.name': 'web' }).map((e) => `${JSON.stringify(e)}\n`),
    );

  it('observes from the first event, not from --from: events before it build state', async () => {
    const summary = await backtest(lines(), { rules: [flat], from: T0 + m(45) });
    // Observed from 0:00, billing is low from 0:30 (before --from: silenced, not shown)
    // and again once realert has passed, at 1:30.
    expect(offsets(summary.alerts)).toEqual([m(90)]);
  });

  it('reports late events, which count in no window already decided', async () => {
    const freq = rule<FrequencyRule>({
      name: 'two',
      type: 'frequency',
      num_events: 2,
      timeframe: m(1),
    });
    const data = [ev(0), ev(s(100)), ev(s(10))].map((e) => `${JSON.stringify(e)}\n`);
    const summary = await backtest(Readable.from(data), { rules: [freq], allowedLatenessMs: 0 });
    expect(summary.lateEvents).toBe(1);
    // (−50s, 10s] would hold two events, but the watermark had passed 10s.
    expect(summary.alerts).toEqual([]);
  });

  it('the CLI prints the late count in text, and a JSON summary with --format json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-late-'));
    const rules = join(dir, 'r.yaml');
    writeFileSync(rules, 'name: two\ntype: frequency\nnum_events: 2\ntimeframe: 1m\n');
    const data = [ev(0), ev(s(100)), ev(s(10))].map((e) => JSON.stringify(e)).join('\n');
    const cli = (format: string) =>
      spawnSync(
        process.execPath,
        [BIN, 'backtest', '--rules', rules, '--data', '-', '--lateness', '0s', '--format', format],
        { input: data, encoding: 'utf8', env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' } },
      );
    const text = cli('text');
    expect(text.status).toBe(0);
    expect(text.stderr).toContain('3 events');
    expect(text.stderr).toContain('1 late events');
    const json = cli('json');
    expect(json.stdout).toBe('');
    const summary = json.stderr
      .trim()
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l) as { summary?: unknown };
        } catch {
          return {};
        }
      })
      .find((o) => o.summary !== undefined);
    expect(summary).toEqual({
      summary: {
        events: 3,
        alerts: 0,
        badLines: 0,
        lateEvents: 1,
        states: { pending: 0, inactive: 0, resolved: 0 },
        first: new Date(T0).toISOString(),
        last: new Date(T0 + s(100)).toISOString(),
        // No --from: no warm-up, alerts from the first event.
        warmup: [{ rule: 'two', needMs: 60_000, gotMs: 0, enough: false }],
      },
    });
  }, 120_000); // two cold starts of the CLI took 26-31 s on the shared machine
});

describe('flatline for a key seen for the first time', () => {
  it('waits a full timeframe from its first event: a new deploy does not page', () => {
    const flat = rule<FlatlineRule>({
      name: 'svc-silent',
      type: 'flatline',
      timeframe: m(1),
      threshold: 3,
      expect: [],
      forget_keys: false,
      query_key: ['service.name'],
      realert: m(60),
    });
    const alerts: Alert[] = [];
    const e = new Engine([flat], { allowedLatenessMs: s(5), onAlert: (a) => alerts.push(a) });
    const events = [
      ...every(0, 60, s(10), { 'service.name': 'old' }),
      ...every(m(5), 30, s(10), { 'service.name': 'new' }),
    ].sort(byTime);
    for (const event of events) e.process(event);
    e.finish();
    expect(alerts).toEqual([]);
  });
});

describe('live', () => {
  const flat = rule<FlatlineRule>({
    name: 'host-silent',
    type: 'flatline',
    timeframe: m(1),
    threshold: 1,
    expect: [],
    forget_keys: false,
    query_key: ['host.name'],
    realert: m(60),
  });

  it('observation starts at event time: a replay of past events still observes full windows', () => {
    let now = T0 + 24 * 3_600_000;
    const alerts: Alert[] = [];
    const e = new Engine([flat], {
      allowedLatenessMs: s(5),
      clock: () => now,
      onAlert: (a) => alerts.push(a),
    });
    now += s(30);
    e.tick(); // idle before the replay: the clock must not close the replay's windows
    const events = [
      ...every(0, 30, s(10), { 'host.name': 'a' }),
      ...every(0, 60, s(10), { 'host.name': 'b' }),
    ].sort(byTime);
    for (const event of events) e.process(event);
    expect(e.lateEvents).toBe(0);
    // a's last event at 4:50 → silent over (D−1m, D] from 5:50, decided as b's replay moves on.
    expect(alerts.map((a) => [a.key['host.name'], Date.parse(a.at) - T0])).toEqual([
      ['a', m(5) + s(50)],
    ]);
  });

  describe('event time is bounded by the wall clock', () => {
    const expiry = rule<ExpiryRule>({
      name: 'gone',
      type: 'expiry',
      ttl: m(10),
      query_key: ['host.name'],
    });
    const y2200 = Date.parse('2200-01-01T00:00:00Z');

    it('refuses an event past clock + skew, counts it, and leaves the watermark', () => {
      const now = T0 + m(1);
      const alerts: Alert[] = [];
      const e = new Engine([expiry, flat], {
        allowedLatenessMs: s(5),
        maxFutureSkewMs: m(5),
        clock: () => now,
        onAlert: (a) => alerts.push(a),
      });
      e.process(ev(0, { 'host.name': 'a' }));
      e.process(ev(m(1), { 'host.name': 'b' }));
      const before = e.watermark;
      e.process({ '@timestamp': y2200, 'host.name': 'evil' });
      e.process({ '@timestamp': Number.NaN, 'host.name': 'evil' });
      e.process(ev(m(5) + s(1), { 'host.name': 'c' })); // 4m01s ahead: within the skew
      expect(e.counts()).toEqual({ lateEvents: 0, futureEvents: 2 });
      expect(e.watermark).toBe(T0 + m(5) + s(1) - s(5));
      expect(before).toBe(T0 + m(1) - s(5));
      // Nothing pending fired at once: a's expiry is due at 10m.
      expect(alerts.filter((a) => a.rule === 'gone')).toEqual([]);
      e.advance(y2200);
      expect(e.watermark).toBe(now + m(5));
      expect(e.stats().find((r) => r.rule === 'gone')!.keys).toBe(3);
    });

    it('clamps a restored watermark to clock + skew; a backtest has no clock and no clamp', () => {
      const snapshotEngine = new Engine([expiry], { allowedLatenessMs: 0, onAlert: () => {} });
      snapshotEngine.process(ev(0, { 'host.name': 'a' }));
      snapshotEngine.process({ '@timestamp': y2200, 'host.name': 'evil' });
      const snapshot = JSON.parse(JSON.stringify(snapshotEngine.snapshot())) as EngineSnapshot;
      expect(snapshot.watermark).toBe(y2200);
      const now = T0 + m(1);
      const live = new Engine([expiry], {
        allowedLatenessMs: 0,
        clock: () => now,
        onAlert: () => {},
      });
      live.restore(snapshot);
      expect(live.watermark).toBe(now + 5 * 60_000);
      const offline = new Engine([expiry], { allowedLatenessMs: 0, onAlert: () => {} });
      offline.restore(snapshot);
      expect(offline.watermark).toBe(y2200);
    });
  });
});

describe('snapshots of version 1', () => {
  it('are still restored: cardinality values and expiry reports convert to the new state', () => {
    const card = rule<CardinalityRule>({
      name: 'c',
      type: 'cardinality',
      cardinality_field: 'user',
      timeframe: m(1),
      min_cardinality: 2,
      realert: m(10),
    });
    const expiry = rule<ExpiryRule>({
      name: 'e',
      type: 'expiry',
      ttl: m(2),
      query_key: ['host.name'],
    });
    const probe = new Engine([card, expiry], { allowedLatenessMs: 0, onAlert: () => {} });
    const fp = probe.snapshot().rules;
    const shared = {
      keyValues: [],
      silences: [],
      pending: [],
      extra: undefined,
      lastAlertAt: undefined,
      alertCount: 0,
    };
    const v1: EngineSnapshot = {
      version: 1,
      watermark: T0 + s(10),
      maxEventTime: T0 + s(10),
      observedFrom: T0,
      rules: {
        c: {
          fingerprint: fp.c!.fingerprint,
          state: {
            ...shared,
            keyValues: [['', {}]],
            keys: [
              [
                '',
                {
                  values: [
                    ['u1', T0 + s(10)],
                    ['u2', T0 + s(5)],
                  ],
                  nextCheck: T0 + s(65),
                  sample: undefined,
                },
              ],
            ],
          },
        },
        e: {
          fingerprint: fp.e!.fingerprint,
          state: {
            ...shared,
            keyValues: [['a', { 'host.name': 'a' }]],
            keys: [
              [
                'a',
                {
                  lastSeen: T0 + s(10),
                  deadline: T0 + s(130),
                  scheduled: T0 + s(130),
                  ttl: m(2),
                  sample: ev(s(10), { 'host.name': 'a' }),
                },
              ],
            ],
          },
        },
      },
      timers: [
        [T0 + s(65), 'c', '', 2],
        [T0 + s(130), 'e', 'a', 2],
      ],
    };
    const alerts: Alert[] = [];
    const e = new Engine([card, expiry], { allowedLatenessMs: 0, onAlert: (a) => alerts.push(a) });
    expect(e.restore(JSON.parse(JSON.stringify(v1)) as EngineSnapshot).reset).toEqual([]);
    e.process(ev(m(3), { user: 'u1' }));
    // u2 (seen at 5 s) leaves the window at 65 s; host a's silence ends at 130 s.
    expect(alerts.map((a) => [a.rule, Date.parse(a.at) - T0])).toEqual([
      ['c', s(65)],
      ['e', s(130)],
    ]);
    expect(e.snapshot().version).toBe(2);
  });
});
