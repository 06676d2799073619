import type { Condition, RuleSpec } from '../rules/index.ts';
import { serviceName } from './fleet.ts';

const m = (n: number) => n * 60_000;
const s = (n: number) => n * 1000;

function base(
  name: string,
): Pick<RuleSpec, 'name' | 'query_key' | 'realert' | 'labels' | 'actions' | 'enabled'> {
  return { name, query_key: [], realert: m(1), labels: {}, actions: [], enabled: true };
}

const svc = (name: string): Condition => ({ fact: 'service.name', operator: 'equal', value: name });

/**
 * A realistic mix: per service, the rules an SRE team writes (error bursts, new stack
 * traces, latency, silent replicas, level spikes...), cycling through every rule type
 * and a variety of operators, plus a few fleet-wide rules. `count` rules in all.
 */
export function ruleMix(count: number): RuleSpec[] {
  const rules: RuleSpec[] = [
    {
      ...base('fleet-fatal'),
      type: 'any',
      query_key: ['host.name'],
      filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'fatal' }] },
    },
    {
      ...base('fleet-version-change'),
      type: 'change',
      query_key: ['host.name'],
      compare_key: ['service.version'],
      ignore_null: true,
      filter: { all: [{ fact: 'service.version', operator: 'exists', value: true }] },
    },
    {
      ...base('fleet-user-cardinality'),
      type: 'cardinality',
      query_key: ['service.name'],
      cardinality_field: 'user.name',
      timeframe: m(5),
      max_cardinality: 1000,
      filter: {
        all: [
          { fact: 'req.method', operator: 'equal', value: 'POST' },
          { fact: 'log.level', operator: 'in', value: ['warn', 'error'] },
        ],
      },
    },
  ];
  const perService = 5;
  for (let i = 0; rules.length < count; i++) {
    const name = serviceName(Math.floor(i / perService));
    const k = i % perService;
    const variant = Math.floor(i / perService) % 2;
    const id = `${name}-${i}`;
    switch (k) {
      case 0:
        rules.push(
          variant === 0
            ? {
                ...base(`${id}-error-burst`),
                type: 'frequency',
                query_key: ['host.name'],
                num_events: 20,
                timeframe: m(1),
                filter: {
                  all: [
                    svc(name),
                    { fact: 'log.level', operator: 'in', value: ['error', 'fatal'] },
                  ],
                },
              }
            : {
                ...base(`${id}-error-spike`),
                type: 'spike',
                query_key: ['service.name'],
                timeframe: m(1),
                spike_height: 3,
                spike_type: 'both',
                threshold_cur: 5,
                threshold_ref: 5,
                alert_on_new_data: false,
                filter: {
                  all: [
                    svc(name),
                    { fact: 'res.statusCode', operator: 'greaterThanInclusive', value: 500 },
                  ],
                },
              },
        );
        break;
      case 1:
        rules.push({
          ...base(`${id}-new-stack`),
          type: 'new_term',
          query_key: ['service.name'],
          fields: ['error.fingerprint'],
          terms_window_size: m(60 * 24),
          alert_on_missing_field: false,
          realert: 0,
          filter: {
            all: [svc(name), { fact: 'error.fingerprint', operator: 'exists', value: true }],
          },
        });
        break;
      case 2:
        rules.push({
          ...base(`${id}-latency`),
          type: 'metric_aggregation',
          query_key: ['service.name'],
          metric_agg_key: 'metric.value',
          metric_agg_type: variant === 0 ? 'p95' : 'avg',
          timeframe: s(30),
          max_threshold: variant === 0 ? 1500 : 400,
          filter: {
            all: [
              svc(name),
              { fact: 'metric.name', operator: 'equal', value: 'http_request_duration_ms' },
            ],
          },
        });
        break;
      case 3:
        rules.push(
          variant === 0
            ? {
                ...base(`${id}-replica-silent`),
                type: 'expiry',
                query_key: ['host.name'],
                ttl: s(30),
                filter: { all: [svc(name)] },
              }
            : {
                ...base(`${id}-heartbeat`),
                type: 'flatline',
                query_key: ['host.name'],
                timeframe: m(1),
                threshold: 1,
                expect: [],
                forget_keys: false,
                filter: {
                  all: [svc(name), { fact: 'message', operator: 'equal', value: 'heartbeat' }],
                },
              },
        );
        break;
      default:
        rules.push({
          ...base(`${id}-slow-posts`),
          type: 'frequency',
          query_key: ['host.name'],
          num_events: 10,
          timeframe: m(1),
          filter: {
            all: [
              svc(name),
              { fact: 'req.method', operator: 'equal', value: 'POST' },
              {
                any: [
                  { fact: 'responseTime', operator: 'greaterThan', value: 250 },
                  { fact: 'req.url', operator: 'matches', value: '/items/9\\d\\d$' },
                ],
              },
              { not: { fact: 'req.url', operator: 'startsWith', value: '/health' } },
            ],
          },
        });
    }
  }
  return rules.slice(0, count);
}
