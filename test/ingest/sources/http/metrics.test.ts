import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import snappy from 'snappyjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import { encodeRemoteWrite } from '../../../../ingest/sources/decoders/remote-write.ts';
import { StatsdDecoder } from '../../../../ingest/sources/decoders/statsd.ts';
import {
  createIngestServer,
  type IngestMetrics,
  type IngestServer,
} from '../../../../ingest/sources/http/index.ts';

let bus: EmbeddedBus;
let server: IngestServer;
const metrics: IngestMetrics[] = [];
beforeAll(async () => {
  bus = openEmbeddedBus({ path: join(mkdtempSync(join(tmpdir(), 'drover-metrics-')), 'bus.db') });
  server = await createIngestServer({
    bus,
    port: 0,
    statsd: { port: 0 },
    onIngest: (m) => metrics.push(m),
  });
});
afterAll(async () => {
  await server.close();
  await bus.close();
});

describe('Prometheus remote_write', () => {
  it('turns samples into metric events, labels into fields, and skips staleness markers', async () => {
    const body = encodeRemoteWrite({
      timeseries: [
        {
          labels: [
            { name: '__name__', value: 'http_requests_total' },
            { name: 'job', value: 'checkout' },
            { name: 'instance', value: 'co-1:9100' },
            { name: 'code', value: '500' },
          ],
          samples: [
            { value: 17, timestamp: '1714557600000' },
            { value: Number.NaN, timestamp: '1714557615000' },
          ],
        },
        {
          labels: [{ name: '__name__', value: 'node_load1' }],
          samples: [{ value: 0.5, timestamp: '1714557600000' }],
        },
      ],
    });
    const res = await fetch(`${server.url}/api/v1/write`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
    });
    expect(res.status).toBe(204);
    const events = bus.read('metrics', 0, 100).map((m) => m.event);
    expect(events.map((e) => [e['metric.name'], e['metric.value'], e['metric.type']])).toEqual([
      ['http_requests_total', 17, 'counter'],
      ['node_load1', 0.5, 'gauge'],
    ]);
    expect(events[0]).toMatchObject({
      '@timestamp': 1714557600000,
      'service.name': 'checkout',
      'host.name': 'co-1:9100',
      'labels.code': '500',
    });
  });

  it('answers 400 to a body that is not a snappy WriteRequest', async () => {
    const res = await fetch(`${server.url}/api/v1/write`, {
      method: 'POST',
      body: Buffer.from('not snappy at all'),
      headers: { 'content-type': 'application/x-protobuf' },
    });
    expect(res.status).toBe(400);
  });

  it('answers 413 to a snappy block that would inflate past the body limit', async () => {
    // A snappy block declaring 1 GiB (varint 0x80 0x80 0x80 0x80 0x04) of literal data.
    const res = await fetch(`${server.url}/api/v1/write`, {
      method: 'POST',
      body: Buffer.from([0x80, 0x80, 0x80, 0x80, 0x04, 0x00]),
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toMatch(/too big/);
  });

  it('answers 400 to a snappy block holding a WriteRequest with a broken varint', async () => {
    // WriteRequest { timeseries { samples { timestamp: 11 bytes of 0xff } } }.
    const sample = [0x10, ...Array<number>(11).fill(0xff)];
    const series = [0x12, sample.length, ...sample];
    const request = Buffer.from([0x0a, series.length, ...series]);
    const res = await fetch(`${server.url}/api/v1/write`, {
      method: 'POST',
      body: Buffer.from(snappy.compress(request)),
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy' },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/invalid WriteRequest/);
  });
});

describe('statsd', () => {
  it('decodes counters with sample rates, gauge deltas, timers, sets and DogStatsD tags; reports bad lines', () => {
    const d = new StatsdDecoder();
    const { samples, errors } = d.decode(
      [
        'jobs.done:3|c|@0.5|#service:worker,env:prod',
        'queue.depth:10|g',
        'queue.depth:-4|g',
        'render:12.5|ms',
        'users:alice|s',
        'broken-line',
        'x:abc|c',
        'y:1|q',
      ].join('\n'),
      1000,
    );
    expect(samples.map((s) => [s['metric.name'], s['metric.type'], s['metric.value']])).toEqual([
      ['jobs.done', 'counter', 6],
      ['queue.depth', 'gauge', 10],
      ['queue.depth', 'gauge', 6],
      ['render', 'timer', 12.5],
      ['users', 'set', 1],
    ]);
    expect(samples[0]).toMatchObject({
      'service.name': 'worker',
      'labels.env': 'prod',
      'metric.sample_rate': 0.5,
    });
    expect(samples[4]!['metric.set_member']).toBe('alice');
    expect(errors.map((e) => e.line)).toEqual(['broken-line', 'x:abc|c', 'y:1|q']);
  });

  it('receives packets over a real UDP socket into the bus', async () => {
    const before = bus.read('metrics', 0, 1000).length;
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) =>
      socket.send(
        'api.latency:250|ms|#service:api\napi.errors:1|c',
        server.statsdPort,
        '127.0.0.1',
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    socket.close();
    const start = Date.now();
    while (bus.read('metrics', 0, 1000).length < before + 2 && Date.now() - start < 5000)
      await new Promise((r) => setTimeout(r, 20));
    const events = bus
      .read('metrics', 0, 1000)
      .slice(before)
      .map((m) => m.event);
    expect(events.map((e) => [e['metric.name'], e['metric.value'], e['service.name']])).toEqual([
      ['api.latency', 250, 'api'],
      ['api.errors', 1, undefined],
    ]);
    expect(metrics.some((m) => m.protocol === 'statsd' && m.events === 2)).toBe(true);
  });
});
