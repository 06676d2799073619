import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import { encodeRemoteWrite } from '../../../../ingest/sources/decoders/remote-write.ts';
import {
  createIngestServer,
  type IngestMetrics,
  type IngestServer,
} from '../../../../ingest/sources/http/index.ts';

// What one request may make ingest hold or send back is bounded, whatever the sender picks.
let bus: EmbeddedBus;
let server: IngestServer;
const metrics: IngestMetrics[] = [];
beforeAll(async () => {
  bus = openEmbeddedBus({ path: join(mkdtempSync(join(tmpdir(), 'drover-bounds-')), 'bus.db') });
  server = await createIngestServer({
    bus,
    port: 0,
    statsd: { port: 0, maxGauges: 100 },
    onIngest: (m) => metrics.push(m),
  });
});
afterAll(async () => {
  await server.close();
  await bus.close();
});

const T = 1_714_557_600_123;
const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method: 'POST', body, headers });

describe('NDJSON', () => {
  it('echoes at most 100 rejected lines, then how many more', async () => {
    const body = gzipSync(
      `${JSON.stringify({ '@timestamp': T, message: 'ok' })}\n${'x\n'.repeat(10_000)}`,
    );
    const res = await post('/ingest', body, { 'content-encoding': 'gzip' });
    expect(res.status).toBe(200);
    const text = await res.text();
    const json = JSON.parse(text) as {
      accepted: number;
      rejected: Array<{ line: number }>;
      omitted: number;
    };
    expect(json.accepted).toBe(1);
    expect(json.rejected.map((r) => r.line)).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
    expect(json.omitted).toBe(9_900);
    expect(text.length).toBeLessThan(20_000);
    expect(metrics.at(-1)).toMatchObject({ protocol: 'ndjson', decodeErrors: 10_000 });
  });

  it('clips each echoed reason: a megabyte of refused values is answered in a few KB', async () => {
    // normalize quotes the value it refused, here 300,000 characters of it, three times.
    const doc = JSON.stringify({
      '@timestamp': T,
      'metric.name': 'm',
      'metric.value': 'y'.repeat(300_000),
    });
    const res = await post('/ingest', `${doc}\n${doc}\n${doc}\n`);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(2_000);
    const json = JSON.parse(text) as { rejected: Array<{ line: number; error: string }> };
    expect(json.rejected.map((r) => r.line)).toEqual([1, 2, 3]);
    expect(json.rejected[0]!.error).toMatch(
      /^metric\.value must be a number, got "y+… \(300037 characters\)$/,
    );
  });

  it('refuses an event nested more than 64 objects deep, by line, and keeps the rest', async () => {
    // Written as text: JSON.stringify itself recurses.
    const nest = (depth: number) =>
      `${'{"k":'.repeat(depth - 1)}{"leaf":1,"@timestamp":${T}}${'}'.repeat(depth - 1)}`;
    const res = await post('/ingest', [nest(64), nest(65), nest(5_000)].join('\n'));
    const json = (await res.json()) as {
      accepted: number;
      rejected: Array<{ line: number; error: string }>;
    };
    expect(json.accepted).toBe(1);
    expect(json.rejected).toEqual([
      { line: 2, error: 'objects nested more than 64 levels deep' },
      { line: 3, error: 'objects nested more than 64 levels deep' },
    ]);
  });

  it('keeps no more than a bounded cache of the field names senders choose', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const before = heap();
    // 20,000 keys of 2 KiB, each new: 40 MiB of names.
    let n = 0;
    for (let r = 0; r < 4; r++) {
      const lines: string[] = [];
      for (let i = 0; i < 5_000; i++)
        lines.push(`{"@timestamp":${T},"${`k${n++}`.padEnd(2_048, 'x')}":1}`);
      const res = await post('/ingest', gzipSync(lines.join('\n')), { 'content-encoding': 'gzip' });
      expect(res.status).toBe(200);
    }
    const grown = heap() - before;
    expect(grown).toBeLessThan(24 << 20);
  }, 60_000);
});

describe('_bulk', () => {
  type BulkAnswer = {
    errors: boolean;
    items: Array<Record<string, { error?: { reason: string } }>>;
  };
  const reasons = (answer: BulkAnswer) =>
    answer.items.map((item) => Object.values(item)[0]!.error?.reason);

  it('clips the error reason of each item to 200 characters, saying how long it was', async () => {
    // normalize's refusal quotes the value it refused: here 300,000 characters of it.
    const huge = 'y'.repeat(300_000);
    const doc = JSON.stringify({ '@timestamp': T, 'metric.name': 'm', 'metric.value': huge });
    const ok = JSON.stringify({ '@timestamp': T, message: 'ok' });
    const body = `{"index":{}}\n${doc}\n{"index":{}}\n${ok}\n{"index":{}}\n${doc}\n`;
    const res = await post('/_bulk', body, { 'content-type': 'application/x-ndjson' });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.length).toBeLessThan(2_000);
    const answer = JSON.parse(text) as BulkAnswer;
    expect(answer.items).toHaveLength(3);
    const [first, second, third] = reasons(answer);
    expect(second).toBeUndefined();
    expect(third).toBe(first);
    expect(first).toMatch(/^metric\.value must be a number, got "y+… \(300037 characters\)$/);
    expect(first!.length).toBeLessThan(240);
  });

  const logged = () => bus.read('logs', 0, 1 << 20).length;

  it('refuses a megabyte of malformed action lines as a whole, in one short error, publishing nothing', async () => {
    // 524,288 lines, each was an item that failed: the answer was 15 to 75 times the body.
    const before = logged();
    const good = `{"index":{}}\n${JSON.stringify({ '@timestamp': T, message: 'ok' })}\n`;
    const body = good + 'x\n'.repeat(1 << 19);
    const res = await post('/_bulk', body, { 'content-type': 'application/x-ndjson' });
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(1_000);
    const answer = JSON.parse(text) as {
      status: number;
      error: { type: string; reason: string; root_cause: unknown[] };
    };
    expect(answer.status).toBe(400);
    expect(answer.error.type).toBe('illegal_argument_exception');
    expect(answer.error.reason).toMatch(
      /^Malformed action\/metadata line \[3\], expected START_OBJECT but found invalid JSON/,
    );
    expect(answer.error.root_cause).toEqual([
      { type: answer.error.type, reason: answer.error.reason },
    ]);
    // The good item before the bad line was not published: the request is refused whole.
    expect(logged()).toBe(before);
    expect(metrics.at(-1)).toMatchObject({ protocol: 'bulk', events: 0, decodeErrors: 1 });
  });

  it.each([
    ['index actions with bad documents', '/_bulk', '{"index":{}}\nx\n'],
    ['index actions without documents', '/_bulk', '{"index":{}}\n\n'],
    [
      'delete actions, under the longest index a URL may name',
      `/${'a'.repeat(100)}/_bulk`,
      '{"delete":{}}\n',
    ],
  ])(
    'keeps one item per action for a megabyte of %s, within 20 bytes of answer a byte',
    async (_name, path, unit) => {
      const count = Math.floor((1 << 20) / unit.length);
      const body = unit.repeat(count);
      const res = await post(path, body, { 'content-type': 'application/x-ndjson' });
      expect(res.status).toBe(200);
      const text = await res.text();
      const answer = JSON.parse(text) as BulkAnswer;
      expect(answer.errors).toBe(true);
      expect(answer.items).toHaveLength(count);
      const all = reasons(answer);
      // The first reasons in full, then a short fixed text once the reason budget is spent.
      expect(all[0]!.length).toBeGreaterThan('too many errors to list'.length);
      expect(all.at(-1)).toBe('too many errors to list');
      const full = all.filter((r) => r !== 'too many errors to list').length;
      expect(full).toBeGreaterThan(100);
      expect(full).toBeLessThan(2_000);
      // The bound docs/security.md states.
      expect(Buffer.byteLength(text)).toBeLessThan(20 * body.length + 256 * 1024);
    },
  );

  it('refuses an index name in the URL that would make every item longer', async () => {
    for (const index of ['%01'.repeat(30), 'logs%0A', 'a%7F']) {
      const res = await post(`/${index}/_bulk`, '{"delete":{}}\n', {
        'content-type': 'application/x-ndjson',
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { type: string } }).error.type).toBe(
        'invalid_index_name_exception',
      );
    }
  });
});

describe('OTLP', () => {
  const attrs = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ key: `a${i}`, value: { stringValue: 'v' } }));
  const logs = (resourceAttrs: number, records: number) =>
    JSON.stringify({
      resourceLogs: [
        {
          resource: { attributes: attrs(resourceAttrs) },
          scopeLogs: [
            {
              logRecords: Array.from({ length: records }, () => ({
                timeUnixNano: '1714557600123456789',
                body: { stringValue: 'x' },
              })),
            },
          ],
        },
      ],
    });
  const json = { 'content-type': 'application/json' };

  it('refuses more than 128 attributes in a list with 400, and says why', async () => {
    const started = performance.now();
    const res = await post('/v1/logs', logs(1_000, 1_000), json);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(
      /1000 attributes in one list \(limit 128\)/,
    );
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('refuses with 413 a request that would make more than a million fields', async () => {
    const res = await post('/v1/logs', logs(100, 20_000), json);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { message: string }).message).toMatch(/send smaller batches/);
  });

  const records = (n: number, record: (i: number) => unknown) =>
    JSON.stringify({
      resourceLogs: [
        { scopeLogs: [{ logRecords: Array.from({ length: n }, (_, i) => record(i)) }] },
      ],
    });
  type Partial = { partialSuccess: { rejectedLogRecords: number; errorMessage: string } };

  it('answers a megabyte of refused records with their count and one clipped reason', async () => {
    // A time out of range, then a metric whose value (300,000 characters) is quoted.
    const late = { timeUnixNano: '9'.repeat(24), body: { stringValue: 'x' } };
    const quoted = {
      timeUnixNano: '1714557600123456789',
      attributes: [
        { key: 'metric.name', value: { stringValue: 'm' } },
        { key: 'metric.value', value: { stringValue: 'y'.repeat(300_000) } },
      ],
    };
    for (const [body, reason] of [
      [records(14_000, () => late), /time/],
      [
        records(3, () => quoted),
        /^metric\.value must be a number, got "y+… \(300037 characters\)$/,
      ],
    ] as const) {
      expect(body.length).toBeGreaterThan(900_000);
      const res = await post('/v1/logs', body, json);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text.length).toBeLessThan(1_000);
      const answer = JSON.parse(text) as Partial;
      expect(answer.partialSuccess.errorMessage).toMatch(reason);
    }
  });

  it('answers 400, not 500, for attribute values nested without end', async () => {
    const depth = 10_000;
    const value = `${'{"kvlistValue":{"values":[{"key":"k","value":'.repeat(depth)}{"stringValue":"leaf"}${'}]}}'.repeat(depth)}`;
    const body = `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1714557600123456789","body":${value}}]}]}]}`;
    const res = await post('/v1/logs', body, json);
    expect(res.status).toBe(400);
  });
});

describe('Prometheus remote_write', () => {
  it('drops and counts a sample whose time is out of range, keeps the rest, answers 400', async () => {
    const from = bus.stats().topics.metrics.next;
    const body = encodeRemoteWrite({
      timeseries: [
        {
          labels: [{ name: '__name__', value: 'up' }],
          samples: [
            { value: 1, timestamp: String(T) },
            { value: 2, timestamp: '9223372036854775807' },
          ],
        },
      ],
    });
    const res = await post('/api/v1/write', body, {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'snappy',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /1 samples refused.*out of range/,
    );
    expect(bus.read('metrics', from, 10).map((m) => m.event['metric.value'])).toEqual([1]);
  });
});

describe('statsd', () => {
  it('remembers a bounded number of gauge series, evicting the least recent and counting it', async () => {
    const socket = createSocket('udp4');
    const send = (text: string) =>
      new Promise<void>((resolve, reject) =>
        socket.send(text, server.statsdPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
      );
    const from = bus.stats().topics.metrics.next;
    await send('g0:10|g');
    for (let p = 0; p < 15; p++)
      await send(Array.from({ length: 10 }, (_, i) => `s${p * 10 + i}:1|g`).join('\n'));
    await send('g0:+1|g');
    const deadline = Date.now() + 5_000;
    let values: unknown[] = [];
    while (Date.now() < deadline) {
      values = bus
        .read('metrics', from, 1_000)
        .filter((m) => m.event['metric.name'] === 'g0')
        .map((m) => m.event['metric.value']);
      if (values.length === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    socket.close();
    // g0 was evicted by 150 newer series: its delta starts again from 0.
    expect(values).toEqual([10, 1]);
    const evicted = metrics
      .filter((m) => m.protocol === 'statsd')
      .reduce((sum, m) => sum + (m.evicted ?? 0), 0);
    // 151 series past a limit of 100, then g0 again.
    expect(evicted).toBe(52);
  });
});
