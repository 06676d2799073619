/**
 * OTLP/HTTP logs and metrics, protobuf or JSON encoded, flattened into plain records
 * ready for `normalize`: resource attributes (service.name, host.name...) and record or
 * data-point attributes become fields, log bodies become `message`, data points become
 * metric samples. Both encodings go through one walker over camelCase objects; they
 * differ in how ids travel (bytes vs hex strings) and how int64s are written.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as ProtobufJs from 'protobufjs';
import type { Type } from 'protobufjs';
import { HttpError } from '../errors.ts';

// protobufjs and the parsed proto are loaded at the first protobuf request, not when
// Drover starts.
const requireLib = createRequire(import.meta.url);
let otlpTypes:
  Record<'LogsRequest' | 'LogsResponse' | 'MetricsRequest' | 'MetricsResponse', Type> | undefined;
function types() {
  if (otlpTypes) return otlpTypes;
  const protobuf = requireLib('protobufjs') as typeof ProtobufJs;
  const root = protobuf.parse(
    readFileSync(new URL('../otlp/otlp.proto', import.meta.url), 'utf8'),
    {
      keepCase: false,
    },
  ).root;
  return (otlpTypes = {
    LogsRequest: root.lookupType('opentelemetry.proto.ExportLogsServiceRequest'),
    LogsResponse: root.lookupType('opentelemetry.proto.ExportLogsServiceResponse'),
    MetricsRequest: root.lookupType('opentelemetry.proto.ExportMetricsServiceRequest'),
    MetricsResponse: root.lookupType('opentelemetry.proto.ExportMetricsServiceResponse'),
  });
}

export type OtlpSignal = 'logs' | 'metrics';

/** A request that is not OTLP, or past the decoder's bounds: 400, the exporter drops it. */
export class OtlpDecodeError extends HttpError {
  constructor(message: string, statusCode = 400, code = 'DROVER_OTLP_INVALID') {
    super(message, statusCode, code);
  }
}

type Obj = Record<string, unknown>;

const TO_OBJECT = {
  longs: String,
  enums: Number,
  bytes: Array,
  defaults: false,
  oneofs: false,
} as const;

export function decodeOtlp(signal: OtlpSignal, body: Buffer, contentType: string): Obj[] {
  let message: Obj;
  if (/json/i.test(contentType)) {
    try {
      message = JSON.parse(body.toString('utf8')) as Obj;
    } catch (err) {
      throw new OtlpDecodeError(`invalid OTLP JSON: ${(err as Error).message}`);
    }
  } else {
    try {
      const type = signal === 'logs' ? types().LogsRequest : types().MetricsRequest;
      message = type.toObject(type.decode(body), TO_OBJECT);
    } catch (err) {
      throw new OtlpDecodeError(`invalid OTLP protobuf: ${(err as Error).message}`);
    }
  }
  return signal === 'logs' ? logRecords(message) : metricPoints(message);
}

/** The response, in the request's encoding; partial_success only when something was rejected. */
export function encodeOtlpResponse(
  signal: OtlpSignal,
  json: boolean,
  rejected: number,
  errorMessage: string,
): { body: Buffer | string; contentType: string } {
  const partial =
    rejected > 0
      ? {
          partialSuccess:
            signal === 'logs'
              ? { rejectedLogRecords: rejected, errorMessage }
              : { rejectedDataPoints: rejected, errorMessage },
        }
      : {};
  if (json) return { body: JSON.stringify(partial), contentType: 'application/json' };
  const type = signal === 'logs' ? types().LogsResponse : types().MetricsResponse;
  return {
    body: Buffer.from(type.encode(type.fromObject(partial)).finish()),
    contentType: 'application/x-protobuf',
  };
}

/** Encodes a request (for tests and tools): the same schema the decoder reads. */
export function encodeOtlpRequest(signal: OtlpSignal, request: Obj): Buffer {
  const type = signal === 'logs' ? types().LogsRequest : types().MetricsRequest;
  // fromObject, not verify: it takes int64s as decimal strings, as OTLP JSON writes them.
  return Buffer.from(type.encode(type.fromObject(request)).finish());
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? (v as Obj[]) : [];
}

function anyValue(v: unknown): unknown {
  return anyValueAt(v, 0);
}

/**
 * Bounds on what one request may make the decoder build (the sender picks every count):
 * attributes per resource, scope, record or data point (OpenTelemetry SDKs' own default
 * limit), nesting of kvlist/array values, and fields over all records. Each record
 * carries its resource's attributes, so the work is records × attributes: past
 * MAX_FIELDS the request is refused (413: split the batch) before any is built.
 */
export const MAX_ATTRIBUTES = 128;
export const MAX_VALUE_DEPTH = 16;
export const MAX_FIELDS = 1_000_000;

/** A request beyond MAX_FIELDS: the exporter should send smaller batches. */
export class OtlpTooLargeError extends OtlpDecodeError {
  constructor(message: string) {
    super(message, 413, 'DROVER_OTLP_TOO_LARGE');
  }
}

function anyValueAt(v: unknown, depth: number): unknown {
  if (v === null || typeof v !== 'object') return v;
  const a = v as Obj;
  if ('stringValue' in a) return a.stringValue;
  if ('boolValue' in a) return a.boolValue;
  if ('intValue' in a) return Number(a.intValue);
  if ('doubleValue' in a) return Number(a.doubleValue);
  if (depth >= MAX_VALUE_DEPTH && ('arrayValue' in a || 'kvlistValue' in a))
    throw new OtlpDecodeError(`attribute values nested more than ${MAX_VALUE_DEPTH} levels deep`);
  if ('arrayValue' in a) {
    const values = list((a.arrayValue as Obj).values);
    if (values.length > MAX_FIELDS)
      throw new OtlpTooLargeError(`an array value of ${values.length} items (limit ${MAX_FIELDS})`);
    return values.map((x) => anyValueAt(x, depth + 1));
  }
  if ('kvlistValue' in a) return attributesAt((a.kvlistValue as Obj).values, depth + 1);
  if ('bytesValue' in a) return hex(a.bytesValue);
  return undefined;
}

function attributes(kvs: unknown): Obj {
  return attributesAt(kvs, 0);
}

function attributesAt(kvs: unknown, depth: number): Obj {
  const out: Obj = {};
  const all = list(kvs);
  if (all.length > MAX_ATTRIBUTES)
    throw new OtlpDecodeError(`${all.length} attributes in one list (limit ${MAX_ATTRIBUTES})`);
  for (const kv of all)
    if (typeof kv.key === 'string')
      // `__proto__` is data, never the object's prototype.
      Object.defineProperty(out, kv.key, {
        value: anyValueAt(kv.value, depth),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  return out;
}

/** Refuses a request whose records would carry more than MAX_FIELDS fields in all. */
function checkFields(records: number, perRecord: number, sofar: { fields: number }): void {
  sofar.fields += records * perRecord;
  if (sofar.fields > MAX_FIELDS)
    throw new OtlpTooLargeError(
      `the request would make more than ${MAX_FIELDS} fields (records × attributes); send smaller batches`,
    );
}

/** Ids are bytes in protobuf (here arrays) and hex strings in OTLP JSON. */
function hex(v: unknown): string | undefined {
  if (typeof v === 'string') return v === '' ? undefined : v.toLowerCase();
  if (Array.isArray(v) || v instanceof Uint8Array) {
    const s = Buffer.from(v as number[]).toString('hex');
    return s === '' || /^0+$/.test(s) ? undefined : s;
  }
  return undefined;
}

function nanos(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const s = String(v);
  return s === '0' || s === '' ? undefined : s;
}

function logRecords(request: Obj): Obj[] {
  const out: Obj[] = [];
  const sofar = { fields: 0 };
  for (const rl of list(request.resourceLogs)) {
    const resource = attributes((rl.resource as Obj | undefined)?.attributes);
    const resourceFields = Object.keys(resource).length;
    for (const sl of list(rl.scopeLogs)) {
      const scope = sl.scope as Obj | undefined;
      const records = list(sl.logRecords);
      // Before any is built: the resource's attributes go into each of them.
      checkFields(records.length, resourceFields + 10, sofar);
      for (const r of records) {
        const body = anyValue(r.body);
        const record: Obj = {
          ...resource,
          ...attributes(r.attributes),
          timeUnixNano: nanos(r.timeUnixNano) ?? nanos(r.observedTimeUnixNano),
          severityNumber: r.severityNumber,
          severityText: r.severityText,
          message: typeof body === 'string' || body === undefined ? body : JSON.stringify(body),
          'trace.id': hex(r.traceId),
          'span.id': hex(r.spanId),
          'otel.scope.name': scope?.name,
          'event.name': r.eventName,
        };
        for (const k of Object.keys(record))
          if (record[k] === undefined || record[k] === '') delete record[k];
        out.push(record);
      }
    }
  }
  return out;
}

function metricPoints(request: Obj): Obj[] {
  const out: Obj[] = [];
  const sofar = { fields: 0 };
  for (const rm of list(request.resourceMetrics)) {
    const resource = attributes((rm.resource as Obj | undefined)?.attributes);
    const resourceFields = Object.keys(resource).length;
    for (const sm of list(rm.scopeMetrics)) {
      for (const m of list(sm.metrics)) {
        const data = (m.gauge ?? m.sum ?? m.histogram ?? m.exponentialHistogram ?? m.summary) as
          Obj | undefined;
        // Before any is built: the resource's attributes go into each data point.
        checkFields(list(data?.dataPoints).length, resourceFields + 8, sofar);
        const base = {
          ...resource,
          'metric.name': m.name,
          ...(m.unit ? { 'metric.unit': m.unit } : {}),
        };
        const point = (p: Obj, type: string, value: number, extra: Obj = {}) =>
          out.push({
            ...base,
            ...attributes(p.attributes),
            timeUnixNano: nanos(p.timeUnixNano),
            'metric.type': type,
            'metric.value': value,
            ...extra,
          });
        if (m.gauge)
          for (const p of list((m.gauge as Obj).dataPoints)) point(p, 'gauge', numberValue(p));
        else if (m.sum) {
          const sum = m.sum as Obj;
          for (const p of list(sum.dataPoints))
            point(p, sum.isMonotonic ? 'counter' : 'sum', numberValue(p));
        } else if (m.histogram || m.exponentialHistogram) {
          for (const p of list(((m.histogram ?? m.exponentialHistogram) as Obj).dataPoints)) {
            // One sample per data point: the mean, with count, sum and extremes alongside.
            const count = Number(p.count ?? 0);
            const sum = p.sum === undefined ? Number.NaN : Number(p.sum);
            point(p, 'histogram', count > 0 && Number.isFinite(sum) ? sum / count : 0, {
              'metric.count': count,
              ...(p.sum !== undefined && { 'metric.sum': sum }),
              ...(p.min !== undefined && { 'metric.min': Number(p.min) }),
              ...(p.max !== undefined && { 'metric.max': Number(p.max) }),
            });
          }
        } else if (m.summary) {
          for (const p of list((m.summary as Obj).dataPoints)) {
            const count = Number(p.count ?? 0);
            const quantiles: Obj = {};
            for (const q of list(p.quantileValues))
              quantiles[String(q.quantile ?? 0)] = Number(q.value ?? 0);
            point(p, 'summary', count > 0 ? Number(p.sum ?? 0) / count : 0, {
              'metric.count': count,
              'metric.sum': Number(p.sum ?? 0),
              'metric.quantiles': quantiles,
            });
          }
        }
      }
    }
  }
  return out;
}

function numberValue(p: Obj): number {
  if (p.asDouble !== undefined) return Number(p.asDouble);
  if (p.asInt !== undefined) return Number(p.asInt);
  return Number.NaN;
}
