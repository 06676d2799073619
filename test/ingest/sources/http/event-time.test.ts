import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import {
  createIngestServer,
  type IngestMetrics,
  type IngestServer,
} from '../../../../ingest/sources/http/index.ts';

// Times no event may carry: they wedged the consumers (Invalid time value, NOT NULL) or
// pulled the watermark ahead of the wall clock. Ingest refuses them, line by line.
let bus: EmbeddedBus;
let server: IngestServer;
const metrics: IngestMetrics[] = [];
beforeAll(async () => {
  bus = openEmbeddedBus({ path: join(mkdtempSync(join(tmpdir(), 'drover-time-')), 'bus.db') });
  server = await createIngestServer({
    bus,
    port: 0,
    statsd: false,
    onIngest: (m) => metrics.push(m),
  });
});
afterAll(async () => {
  await server.close();
  await bus.close();
});

const DIGITS_400 = '9'.repeat(400);
const GOOD = 1_714_557_600_123;
const hostile = [
  { '@timestamp': 1e300, message: 'huge number' },
  { '@timestamp': DIGITS_400, message: '400 digits' },
  { time: -5, message: 'before 1970' },
  { '@timestamp': '2200-01-01T00:00:00Z', message: 'far future' },
  { timestamp: new Date(Date.now() + 3_600_000).toISOString(), message: 'an hour ahead' },
  // Escapes send the line down the object path (JSON.parse, normalize) rather than the byte path.
  { '@timestamp': 1e300, message: 'object path \u00e9\n' },
];
const lines = [
  JSON.stringify({ '@timestamp': GOOD, message: 'first' }),
  ...hostile.map((o) => JSON.stringify(o)),
  '{"@timestamp":1e300,"message":"escaped \\u0041"}',
  JSON.stringify({ '@timestamp': GOOD + 1, message: 'last' }),
];

function logsSince(offset: number) {
  return bus.read('logs', offset, 100).map((m) => m.event);
}

describe('event times out of range', () => {
  it('NDJSON: each such line is refused by number with a clear error, the rest kept', async () => {
    const from = bus.stats().topics.logs.next;
    metrics.length = 0;
    const res = await fetch(`${server.url}/ingest`, {
      method: 'POST',
      body: `${lines.join('\n')}\n`,
      headers: { 'content-type': 'application/x-ndjson' },
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      accepted: number;
      rejected: Array<{ line: number; error: string }>;
    };
    expect(json.accepted).toBe(2);
    expect(json.rejected.map((r) => r.line)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    for (const r of json.rejected) expect(r.error).toMatch(/out of range/);
    // The sender's 400 digits are quoted, not echoed whole.
    expect(json.rejected[1]!.error.length).toBeLessThan(300);
    expect(logsSince(from).map((e) => e.message)).toEqual(['first', 'last']);
    expect(metrics.at(-1)).toMatchObject({ protocol: 'ndjson', events: 2, decodeErrors: 7 });
  });

  it('_bulk: each such document fails as an item, the rest are indexed', async () => {
    const from = bus.stats().topics.logs.next;
    const body = lines.map((l) => `{"create":{}}\n${l}\n`).join('');
    const res = await fetch(`${server.url}/logs/_bulk`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-ndjson' },
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      errors: boolean;
      items: Array<{ create: { status: number; error?: { reason: string } } }>;
    };
    expect(json.errors).toBe(true);
    expect(json.items.map((i) => i.create.status)).toEqual([
      201, 400, 400, 400, 400, 400, 400, 400, 201,
    ]);
    expect(json.items[1]!.create.error!.reason).toMatch(/out of range/);
    expect(logsSince(from).map((e) => e.message)).toEqual(['first', 'last']);
  });

  it('OTLP: records with such times are refused and counted, the rest kept', async () => {
    const from = bus.stats().topics.logs.next;
    const record = (timeUnixNano: string, body: string) => ({
      timeUnixNano,
      body: { stringValue: body },
    });
    const res = await fetch(`${server.url}/v1/logs`, {
      method: 'POST',
      body: JSON.stringify({
        resourceLogs: [
          {
            scopeLogs: [
              {
                logRecords: [
                  record('1714557600123456789', 'first'),
                  record(DIGITS_400, '400 digits'),
                  record('7258118400000000000', 'year 2200'),
                  record('1714557600123456790', 'last'),
                ],
              },
            ],
          },
        ],
      }),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      partialSuccess?: { rejectedLogRecords?: string | number; errorMessage?: string };
    };
    expect(Number(json.partialSuccess?.rejectedLogRecords)).toBe(2);
    expect(json.partialSuccess?.errorMessage).toMatch(/out of range/);
    expect(logsSince(from).map((e) => e.message)).toEqual(['first', 'last']);
  });
});
