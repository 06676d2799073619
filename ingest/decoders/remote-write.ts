/**
 * Prometheus remote_write: a snappy-compressed `WriteRequest`. Each sample becomes a
 * metric event: `__name__` is the metric name, the other labels `labels.*` fields, with
 * `job` and `instance` filling service and host when the series has none. NaN samples
 * are staleness markers, not values, and are skipped.
 */

import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import snappy from 'snappyjs';

const root = protobuf.parse(
  readFileSync(new URL('../otlp/otlp.proto', import.meta.url), 'utf8'),
).root;
const WriteRequest = root.lookupType('opentelemetry.proto.WriteRequest');

export class RemoteWriteDecodeError extends Error {}

interface Series {
  labels?: Array<{ name?: string; value?: string }>;
  samples?: Array<{ value?: number; timestamp?: string }>;
}

export function decodeRemoteWrite(
  body: Buffer,
  maxBytes: number,
): { samples: Record<string, unknown>[]; stale: number } {
  let raw: Uint8Array;
  try {
    raw = snappy.uncompress(body, maxBytes);
  } catch (err) {
    throw new RemoteWriteDecodeError(`invalid snappy block: ${(err as Error).message}`);
  }
  let request: { timeseries?: Series[] };
  try {
    request = WriteRequest.toObject(WriteRequest.decode(raw), {
      longs: String,
      defaults: false,
    });
  } catch (err) {
    throw new RemoteWriteDecodeError(`invalid WriteRequest: ${(err as Error).message}`);
  }
  const samples: Record<string, unknown>[] = [];
  let stale = 0;
  for (const series of request.timeseries ?? []) {
    const fields: Record<string, unknown> = {};
    let name: string | undefined;
    for (const { name: k = '', value = '' } of series.labels ?? []) {
      if (k === '__name__') name = value;
      else fields[`labels.${k}`] = value;
    }
    if (fields['labels.job'] !== undefined) fields['service.name'] = fields['labels.job'];
    if (fields['labels.instance'] !== undefined) fields['host.name'] = fields['labels.instance'];
    const type = name && /(_total|_count|_sum|_bucket)$/.test(name) ? 'counter' : 'gauge';
    for (const s of series.samples ?? []) {
      const value = s.value ?? 0;
      if (Number.isNaN(value)) {
        stale++;
        continue;
      }
      samples.push({
        ...fields,
        'metric.name': name ?? '',
        'metric.value': value,
        'metric.type': type,
        '@timestamp': Number(s.timestamp ?? 0),
      });
    }
  }
  return { samples, stale };
}

export function encodeRemoteWrite(request: { timeseries: Series[] }): Buffer {
  return Buffer.from(
    snappy.compress(WriteRequest.encode(WriteRequest.fromObject(request)).finish()),
  );
}
