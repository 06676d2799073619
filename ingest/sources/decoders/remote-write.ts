/**
 * Prometheus remote_write: a snappy-compressed `WriteRequest`. Each sample becomes a
 * metric event: `__name__` is the metric name, the other labels `labels.*` fields, with
 * `job` and `instance` filling service and host when the series has none. NaN samples
 * are staleness markers, not values, and are skipped.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as ProtobufJs from 'protobufjs';
import type { Type } from 'protobufjs';
import snappy from 'snappyjs';
import { HttpError } from '../errors.ts';

// protobufjs and the parsed proto are loaded at the first remote_write request.
const requireLib = createRequire(import.meta.url);
let writeRequestType: Type | undefined;
function writeRequest(): Type {
  return (writeRequestType ??= (requireLib('protobufjs') as typeof ProtobufJs)
    .parse(readFileSync(new URL('../otlp/otlp.proto', import.meta.url), 'utf8'))
    .root.lookupType('opentelemetry.proto.WriteRequest'));
}

/** A body that is not a snappy WriteRequest (400), or one that inflates past the limit (413). */
export class RemoteWriteDecodeError extends HttpError {
  constructor(message: string, statusCode = 400, code = 'DROVER_REMOTE_WRITE_INVALID') {
    super(message, statusCode, code);
  }
}

/**
 * The uncompressed length a snappy block declares (its leading varint), as snappyjs
 * reads it; -1 when it cannot be read. At most 5 bytes are looked at.
 */
function declaredLength(block: Buffer): number {
  let result = 0;
  for (let i = 0, shift = 0; i < block.length && shift < 32; i++, shift += 7) {
    const c = block[i]!;
    const val = c & 0x7f;
    if ((val << shift) >>> shift !== val) return -1;
    result |= val << shift;
    if (c < 128) return result >>> 0;
  }
  return -1;
}

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
    const message = `invalid snappy block: ${(err as Error).message}`;
    if (declaredLength(body) > maxBytes)
      throw new RemoteWriteDecodeError(message, 413, 'DROVER_BODY_TOO_LARGE');
    throw new RemoteWriteDecodeError(message);
  }
  let request: { timeseries?: Series[] };
  try {
    request = writeRequest().toObject(writeRequest().decode(raw), {
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
    snappy.compress(writeRequest().encode(writeRequest().fromObject(request)).finish()),
  );
}
