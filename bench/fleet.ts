/**
 * A seeded, realistic event stream: services with replicas, pino-style log lines at
 * realistic level ratios, errors with real-shaped stack traces, request latencies and
 * heartbeats. The same seed gives the same stream, so runs compare.
 */

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const serviceName = (i: number) => `svc-${i}`;

const FUNCTIONS = [
  'handleRequest',
  'chargeCard',
  'loadUser',
  'renderPage',
  'queryOrders',
  'publishEvent',
  'resizeImage',
  'parseBody',
];
const ERRORS = ['Error', 'TypeError', 'RangeError', 'TimeoutError', 'ECONNRESET'];

function stackFor(
  service: number,
  shape: number,
  order: number,
): { type: string; message: string; stack: string } {
  const type = ERRORS[shape % ERRORS.length]!;
  const message = `${type === 'TypeError' ? "Cannot read properties of undefined (reading 'id')" : 'request failed'} for order ${order}`;
  const frames = [0, 1, 2, 3].map((d) => {
    const fn = FUNCTIONS[(shape + d * 3) % FUNCTIONS.length]!;
    return `    at ${fn} (/srv/${serviceName(service)}/releases/20241122/lib/${fn}.js:${10 + d * 7 + (order % 5)}:${5 + d})`;
  });
  frames.push('    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)');
  return { type, message, stack: `${type}: ${message}\n${frames.join('\n')}` };
}

export interface FleetOptions {
  services: number;
  replicas: number;
  events: number;
  seed?: number;
  /** Event time of the first event. */
  start?: number;
}

/** Raw objects as shippers send them (pino lines and metric samples). */
export function generateFleet(options: FleetOptions): Record<string, unknown>[] {
  const rand = rng(options.seed ?? 1);
  const out: Record<string, unknown>[] = [];
  let t = options.start ?? Date.parse('2024-11-22T00:00:00Z');
  for (let i = 0; i < options.events; i++) {
    t += Math.floor(rand() * 4); // ~500 events/s of event time
    const service = Math.floor(rand() ** 1.5 * options.services); // some services are busier
    const replica = Math.floor(rand() * options.replicas);
    const name = serviceName(service);
    const hostname = `${name}-${replica}`;
    const r = rand();
    if (r < 0.3) {
      out.push({
        '@timestamp': new Date(t).toISOString(),
        'service.name': name,
        'host.name': hostname,
        'metric.name': rand() < 0.8 ? 'http_request_duration_ms' : 'cpu_utilization',
        'metric.value': Math.round(20 + rand() ** 4 * 2000),
        'metric.type': 'gauge',
      });
      continue;
    }
    const level = r < 0.31 ? 60 : r < 0.36 ? 50 : r < 0.45 ? 40 : r < 0.95 ? 30 : 20;
    const line: Record<string, unknown> = {
      level,
      time: t,
      pid: 1000 + replica,
      hostname,
      name,
      msg: level >= 50 ? 'request failed' : rand() < 0.1 ? 'heartbeat' : 'request served',
      req: {
        id: `req-${i}`,
        method: rand() < 0.7 ? 'GET' : 'POST',
        url: `/api/v1/items/${Math.floor(rand() * 1000)}`,
      },
      res: { statusCode: level >= 50 ? 500 : 200 },
      responseTime: Math.round(rand() * 300),
      user: { name: `user${Math.floor(rand() * 50)}` },
      'service.version': rand() < 0.999 ? '1.4.0' : '1.5.0',
    };
    if (level >= 50) line.err = stackFor(service, Math.floor(rand() * 6), i);
    out.push(line);
  }
  return out;
}
