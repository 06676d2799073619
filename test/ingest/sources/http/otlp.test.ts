import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import { encodeOtlpRequest } from '../../../../ingest/sources/decoders/otlp.ts';
import { createIngestServer, type IngestServer } from '../../../../ingest/sources/http/index.ts';

let bus: EmbeddedBus;
let server: IngestServer;
beforeAll(async () => {
  bus = openEmbeddedBus({ path: join(mkdtempSync(join(tmpdir(), 'drover-otlp-')), 'bus.db') });
  server = await createIngestServer({ bus, port: 0, statsd: false });
});
afterAll(async () => {
  await server.close();
  await bus.close();
});

const resource = {
  attributes: [
    { key: 'service.name', value: { stringValue: 'checkout' } },
    { key: 'host.name', value: { stringValue: 'co-1' } },
  ],
};
const T = '1714557600123456789'; // 2024-05-01T10:00:00.123Z

describe('OTLP/HTTP', () => {
  it('logs in protobuf, gzipped: resource and attributes become fields, severity and ids map', async () => {
    const request = {
      resourceLogs: [
        {
          resource,
          scopeLogs: [
            {
              scope: { name: 'checkout-logger' },
              logRecords: [
                {
                  timeUnixNano: T,
                  severityNumber: 17,
                  severityText: 'ERROR',
                  body: { stringValue: 'card declined' },
                  attributes: [{ key: 'order.id', value: { intValue: 42 } }],
                  traceId: Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex'),
                  spanId: Buffer.from('b7ad6b7169203331', 'hex'),
                },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(`${server.url}/v1/logs`, {
      method: 'POST',
      body: gzipSync(encodeOtlpRequest('logs', request)),
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-protobuf');
    expect((await res.arrayBuffer()).byteLength).toBe(0); // full success: no partial_success
    const e = bus.read('logs', 0, 100).at(-1)!.event;
    expect(e).toMatchObject({
      '@timestamp': Date.parse('2024-05-01T10:00:00.123Z'),
      'service.name': 'checkout',
      'host.name': 'co-1',
      'log.level': 'error',
      message: 'card declined',
      'order.id': 42,
      'trace.id': '0af7651916cd43dd8448eb211c80319c',
      'span.id': 'b7ad6b7169203331',
      'otel.scope.name': 'checkout-logger',
    });
  });

  it('metrics in JSON: gauge, monotonic sum and histogram data points become metric samples', async () => {
    const request = {
      resourceMetrics: [
        {
          resource,
          scopeMetrics: [
            {
              metrics: [
                {
                  name: 'cpu.utilization',
                  unit: '1',
                  gauge: { dataPoints: [{ timeUnixNano: T, asDouble: 0.75 }] },
                },
                {
                  name: 'http.requests',
                  sum: {
                    isMonotonic: true,
                    aggregationTemporality: 2,
                    dataPoints: [
                      {
                        timeUnixNano: T,
                        asInt: '1200',
                        attributes: [{ key: 'http.route', value: { stringValue: '/pay' } }],
                      },
                    ],
                  },
                },
                {
                  name: 'http.duration',
                  unit: 'ms',
                  histogram: {
                    dataPoints: [
                      {
                        timeUnixNano: T,
                        count: '4',
                        sum: 1000,
                        min: 100,
                        max: 500,
                        bucketCounts: ['1', '3'],
                        explicitBounds: [200],
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(`${server.url}/v1/metrics`, {
      method: 'POST',
      body: JSON.stringify(request),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({});
    const samples = bus
      .read('metrics', 0, 100)
      .map((m) => m.event)
      .slice(-3);
    expect(samples.map((s) => [s['metric.name'], s['metric.type'], s['metric.value']])).toEqual([
      ['cpu.utilization', 'gauge', 0.75],
      ['http.requests', 'counter', 1200],
      ['http.duration', 'histogram', 250],
    ]);
    expect(samples[1]!['http.route']).toBe('/pay');
    expect(samples[2]).toMatchObject({
      'metric.count': 4,
      'metric.sum': 1000,
      'metric.min': 100,
      'metric.max': 500,
      'service.name': 'checkout',
    });
  });

  it('reports partial_success for records it rejects, in the request encoding', async () => {
    const request = {
      resourceMetrics: [
        {
          resource,
          scopeMetrics: [
            {
              metrics: [
                { name: 'no.value', gauge: { dataPoints: [{ timeUnixNano: T }] } },
                { name: 'ok', gauge: { dataPoints: [{ timeUnixNano: T, asDouble: 1 }] } },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(`${server.url}/v1/metrics`, {
      method: 'POST',
      body: encodeOtlpRequest('metrics', request),
      headers: { 'content-type': 'application/x-protobuf' },
    });
    expect(res.status).toBe(200);
    const root = protobuf.parse(
      `syntax = "proto3"; message R { P partial_success = 1; } message P { int64 rejected_data_points = 1; string error_message = 2; }`,
    ).root;
    const decoded = root
      .lookupType('R')
      .toObject(root.lookupType('R').decode(new Uint8Array(await res.arrayBuffer())), {
        longs: Number,
      }) as { partialSuccess: { rejectedDataPoints: number; errorMessage: string } };
    expect(decoded.partialSuccess.rejectedDataPoints).toBe(1);
    expect(decoded.partialSuccess.errorMessage).toMatch(/metric.value must be a number/);
  });

  it('answers 400 to a body that is not OTLP', async () => {
    const res = await fetch(`${server.url}/v1/logs`, {
      method: 'POST',
      body: Buffer.from([0xff, 0xff, 0xff]),
      headers: { 'content-type': 'application/x-protobuf' },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/invalid OTLP protobuf/);
  });
});
