import type { Event } from '../../ingest/model/index.ts';
import type { RuleSpec } from '../../rules/index.ts';
import { ev, m, rule, s } from './helpers.ts';

/** One rule of every type, over the same synthetic fleet. */
export const RULES: RuleSpec[] = [
  rule({
    name: 'any-fatal',
    type: 'any',
    query_key: ['host.name'],
    realert: m(2),
    filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'fatal' }] },
  }),
  rule({
    name: 'freq-errors',
    type: 'frequency',
    num_events: 4,
    timeframe: m(1),
    query_key: ['service.name'],
    realert: m(1),
    filter: { all: [{ fact: 'log.level', operator: 'in', value: ['error', 'fatal'] }] },
  }),
  rule({
    name: 'freq-for',
    type: 'frequency',
    num_events: 3,
    timeframe: m(1),
    for: s(20),
    query_key: ['service.name'],
    realert: m(1),
    filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'error' }] },
  }),
  rule({
    name: 'spike-both',
    type: 'spike',
    timeframe: m(2),
    spike_height: 2,
    spike_type: 'both',
    threshold_cur: 1,
    threshold_ref: 2,
    alert_on_new_data: false,
    query_key: ['service.name'],
    realert: m(3),
  }),
  rule({
    name: 'flat-hosts',
    type: 'flatline',
    timeframe: m(1),
    threshold: 2,
    expect: [{ 'host.name': 'never-seen' }],
    forget_keys: false,
    query_key: ['host.name'],
    realert: m(2),
  }),
  rule({
    name: 'new-fp',
    type: 'new_term',
    fields: ['error.fingerprint'],
    terms_window_size: m(10),
    alert_on_missing_field: false,
    query_key: [],
    realert: m(1),
    filter: { all: [{ fact: 'error.fingerprint', operator: 'exists', value: true }] },
  }),
  rule({ name: 'expire-hosts', type: 'expiry', ttl: s(45), query_key: ['host.name'], realert: 0 }),
  rule({
    name: 'version-change',
    type: 'change',
    compare_key: ['version'],
    ignore_null: true,
    query_key: ['host.name'],
    realert: 0,
  }),
  rule({
    name: 'card-users',
    type: 'cardinality',
    cardinality_field: 'user',
    timeframe: m(1),
    max_cardinality: 4,
    min_cardinality: 2,
    query_key: ['service.name'],
    realert: m(1),
    exponential_realert: m(8),
  }),
  rule({
    name: 'latency-p90',
    type: 'metric_aggregation',
    metric_agg_key: 'metric.value',
    metric_agg_type: 'p90',
    timeframe: m(1),
    max_threshold: 800,
    query_key: ['service.name'],
    realert: m(1),
    filter: { all: [{ fact: 'metric.name', operator: 'equal', value: 'latency_ms' }] },
  }),
];

/** A deterministic, busy stream with bursts, silences, late events and metrics. */
export function stream(): Event[] {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const hosts = ['web-1', 'web-2', 'api-1', 'api-2'];
  const events: Event[] = [];
  for (let t = 0; t < m(20); t += 500 + Math.floor(rand() * 2500)) {
    const host = hosts[Math.floor(rand() * hosts.length)]!;
    // web-2 dies for good at 12m; api-1 goes quiet between 6m and 9m.
    if (host === 'web-2' && t > m(12)) continue;
    if (host === 'api-1' && t > m(6) && t < m(9)) continue;
    const service = host.split('-')[0]!;
    const burst = t > m(8) && t < m(9.5) && service === 'api';
    const level = burst || rand() < 0.05 ? 'error' : rand() < 0.01 ? 'fatal' : 'info';
    const late = rand() < 0.05 ? -Math.floor(rand() * 1500) : 0;
    const e = ev(t + late, {
      'service.name': service,
      'host.name': host,
      'log.level': level,
      version: t > m(10) && host === 'web-1' ? '2.0' : '1.0',
      user: `u${Math.floor(rand() * (t > m(15) ? 8 : 3))}`,
    });
    if (level !== 'info') e['error.fingerprint'] = `fp${Math.floor(rand() * (t > m(5) ? 12 : 3))}`;
    events.push(e);
    if (rand() < 0.3) {
      events.push(
        ev(t + 1, {
          'service.name': service,
          'host.name': host,
          'metric.name': 'latency_ms',
          'metric.value': burst ? 900 + rand() * 300 : 100 + rand() * 700,
        }),
      );
    }
  }
  return events;
}
