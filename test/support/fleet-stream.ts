/**
 * A recorded multi-service stream, generated deterministically from a seed: what a
 * fleet's shippers would have sent over a stretch of time. For tests that replay the
 * same events live and through `drover backtest` and compare what the rules found.
 *
 * - Services `api`, `checkout` and `search`, three hosts each (`api-1` ...).
 * - Logs: info lines (some hosts in pino's shape, the rest ECS), a heartbeat per host
 *   every 20 s, occasional errors with stack traces from a few known code paths.
 * - Metrics: `http.latency_ms` and `system.cpu` per host every 10 s.
 * - Each host's shipper sends its lines in batches every 2 to 5 s, so the stream is a
 *   few seconds out of order across hosts; logs and metrics are interleaved.
 * - Planted incidents (see `incidents`): an error burst on one host, a replica that goes
 *   silent, a latency spike on one host, a stack trace never seen before.
 */
export interface FleetStreamOptions {
  seed: number;
  /** Epoch ms of the first event. */
  start: number;
  /** Length of the stream. Default 15 minutes. */
  minutes?: number;
}

export interface FleetStream {
  /** NDJSON lines in the order the shippers sent them. */
  lines: string[];
  /** The same lines grouped as the shippers sent them. */
  batches: string[][];
  /** Event times of the earliest and latest event. */
  first: number;
  last: number;
  /** Largest amount an event's time falls behind one sent before it, in ms. */
  disorderMs: number;
  incidents: {
    errorBurst: { host: string; at: number };
    silentReplica: { host: string; from: number };
    latencySpike: { host: string; at: number };
    newStackTrace: { service: string; at: number };
  };
}

export const FLEET_SERVICES = ['api', 'checkout', 'search'] as const;

/** mulberry32: a small, fast, seeded PRNG; the same seed gives the same stream. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const STACKS: Record<string, string[]> = {
  api: ['at parseBody (api/body.js:10:5)', 'at handle (api/router.js:88:12)'],
  checkout: ['at charge (checkout/pay.js:41:9)', 'at submit (checkout/cart.js:17:3)'],
  search: ['at query (search/index.js:120:7)', 'at handle (search/http.js:30:11)'],
};
const NEW_STACK = ['at merge (search/rank.js:77:13)', 'at rerank (search/rank.js:12:4)'];

interface Timed {
  t: number;
  line: string;
}

export function generateFleetStream(options: FleetStreamOptions): FleetStream {
  const random = seededRandom(options.seed);
  const start = options.start;
  const span = (options.minutes ?? 15) * 60_000;
  const minute = (m: number) => start + m * 60_000;
  const incidents: FleetStream['incidents'] = {
    errorBurst: { host: 'checkout-2', at: minute(6) },
    silentReplica: { host: 'search-3', from: minute(8) },
    latencySpike: { host: 'api-1', at: minute(10) },
    newStackTrace: { service: 'search', at: minute(12) },
  };
  const perHost = new Map<string, Timed[]>();
  for (const service of FLEET_SERVICES)
    for (let h = 1; h <= 3; h++) {
      const host = `${service}-${h}`;
      const pino = h === 1;
      const out: Timed[] = [];
      const log = (t: number, level: 'info' | 'error', msg: string, stack?: string[]) => {
        if (host === incidents.silentReplica.host && t >= incidents.silentReplica.from) return;
        const error = stack && {
          type: 'Error',
          message: msg,
          stack: [`Error: ${msg}`, ...stack].join('\n    '),
        };
        const line = pino
          ? {
              level: level === 'error' ? 50 : 30,
              time: t,
              hostname: host,
              name: service,
              msg,
              ...(error && { err: error }),
            }
          : {
              '@timestamp': new Date(t).toISOString(),
              'log.level': level,
              'service.name': service,
              'host.name': host,
              message: msg,
              ...(error && {
                'error.type': error.type,
                'error.message': error.message,
                'error.stack_trace': error.stack,
              }),
            };
        out.push({ t, line: JSON.stringify(line) });
      };
      const metric = (t: number, name: string, value: number) => {
        if (host === incidents.silentReplica.host && t >= incidents.silentReplica.from) return;
        out.push({
          t,
          line: JSON.stringify({
            '@timestamp': new Date(t).toISOString(),
            'service.name': service,
            'host.name': host,
            'metric.name': name,
            'metric.value': value,
          }),
        });
      };
      // Info lines at about two a second, errors now and then.
      for (let t = start + Math.floor(random() * 500); t < start + span;) {
        if (random() < 0.002) log(t, 'error', 'request failed', STACKS[service]);
        else log(t, 'info', `GET /${service}/${Math.floor(random() * 100)} 200`);
        t += 200 + Math.floor(random() * 600);
      }
      for (let t = start + h * 1_000; t < start + span; t += 20_000) log(t, 'info', 'heartbeat');
      for (let t = start + 500 + h * 700; t < start + span; t += 10_000) {
        const spiking =
          host === incidents.latencySpike.host &&
          t >= incidents.latencySpike.at &&
          t < incidents.latencySpike.at + 60_000;
        metric(t, 'http.latency_ms', spiking ? 900 + random() * 200 : 40 + random() * 40);
        metric(t + 50, 'system.cpu', 0.2 + random() * 0.3);
      }
      if (host === incidents.errorBurst.host)
        for (let i = 0; i < 12; i++)
          log(incidents.errorBurst.at + i * 3_000, 'error', 'payment declined', STACKS.checkout);
      if (host === 'search-1') log(incidents.newStackTrace.at, 'error', 'rank overflow', NEW_STACK);
      out.sort((a, b) => a.t - b.t);
      perHost.set(host, out);
    }
  // Each shipper flushes every 2 to 5 s; its batch is sent up to 1.5 s after the flush.
  const sends: Array<{ sentAt: number; order: number; lines: Timed[] }> = [];
  let order = 0;
  for (const lines of perHost.values()) {
    let i = 0;
    for (let flush = start + 2_000 + random() * 3_000; i < lines.length;) {
      const batch: Timed[] = [];
      while (i < lines.length && lines[i]!.t < flush) batch.push(lines[i++]!);
      if (batch.length > 0)
        sends.push({ sentAt: flush + random() * 1_500, order: order++, lines: batch });
      flush += 2_000 + random() * 3_000;
    }
  }
  sends.sort((a, b) => a.sentAt - b.sentAt || a.order - b.order);
  let maxSeen = Number.NEGATIVE_INFINITY;
  let disorderMs = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const s of sends)
    for (const l of s.lines) {
      disorderMs = Math.max(disorderMs, maxSeen - l.t);
      maxSeen = Math.max(maxSeen, l.t);
      first = Math.min(first, l.t);
      last = Math.max(last, l.t);
    }
  const batches = sends.map((s) => s.lines.map((l) => l.line));
  return { lines: batches.flat(), batches, first, last, disorderMs, incidents };
}

/**
 * The rules the fleet stream is made for, by file name: an incident of each kind the
 * stream scripts (an error burst per host, an error spike per service, a silent replica,
 * high latency, a new stack trace). The live-backtest and backtest-source tests and the
 * backtest benchmark run them.
 */
export const FLEET_RULES: Record<string, string> = {
  'host-error-burst.yaml': `name: host-error-burst
type: frequency
query_key: host.name
num_events: 5
timeframe: 1m
realert: 5m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`,
  'service-error-spike.yaml': `name: service-error-spike
type: spike
query_key: service.name
timeframe: 1m
spike_height: 3
spike_type: up
threshold_cur: 5
realert: 5m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`,
  'replica-silent.yaml': `name: replica-silent
type: expiry
query_key: host.name
ttl: 45s
filter: { all: [ { fact: message, operator: equal, value: heartbeat } ] }
`,
  'latency-high.yaml': `name: latency-high
type: metric_aggregation
query_key: host.name
metric_agg_key: metric.value
metric_agg_type: avg
timeframe: 1m
max_threshold: 500
realert: 5m
filter: { all: [ { fact: metric.name, operator: equal, value: http.latency_ms } ] }
`,
  'new-stack-trace.yaml': `name: new-stack-trace
type: new_term
query_key: service.name
fields: [error.fingerprint]
terms_window_size: 1h
`,
};

/** FLEET_RULES as a drover workspace holds them: under rules/. */
export const FLEET_RULE_FILES: Record<string, string> = Object.fromEntries(
  Object.entries(FLEET_RULES).map(([file, text]) => [`rules/${file}`, text]),
);

/** What two runs over the fleet stream are compared on: each alert's rule, key and time. */
export interface AlertView {
  rule: string;
  key: Record<string, unknown>;
  at: string;
}
export const alertView = (a: AlertView): AlertView => ({ rule: a.rule, key: a.key, at: a.at });
export const byAlert = (a: AlertView, b: AlertView) =>
  a.at.localeCompare(b.at) ||
  a.rule.localeCompare(b.rule) ||
  JSON.stringify(a.key).localeCompare(JSON.stringify(b.key));
