import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';

/**
 * OTLP/HTTP logs and metrics, protobuf or JSON encoded, flattened into plain records
 * ready for `normalize`: resource attributes (service.name, host.name...) and record or
 * data-point attributes become fields, log bodies become `message`, data points become
 * metric samples. Both encodings go through one walker over camelCase objects; they
 * differ in how ids travel (bytes vs hex strings) and how int64s are written.
 */
const root = protobuf.parse(readFileSync(new URL('../otlp/otlp.proto', import.meta.url), 'utf8'), {
  keepCase: false,
}).root;
const LogsRequest = root.lookupType('opentelemetry.proto.ExportLogsServiceRequest');
const LogsResponse = root.lookupType('opentelemetry.proto.ExportLogsServiceResponse');
const MetricsRequest = root.lookupType('opentelemetry.proto.ExportMetricsServiceRequest');
const MetricsResponse = root.lookupType('opentelemetry.proto.ExportMetricsServiceResponse');

export type OtlpSignal = 'logs' | 'metrics';

export class OtlpDecodeError extends Error {}

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
      const type = signal === 'logs' ? LogsRequest : MetricsRequest;
      message = type.toObject(type.decode(body), TO_OBJECT) as Obj;
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
  const type = signal === 'logs' ? LogsResponse : MetricsResponse;
  return {
    body: Buffer.from(type.encode(type.fromObject(partial)).finish()),
    contentType: 'application/x-protobuf',
  };
}

/** Encodes a request (for tests and tools): the same schema the decoder reads. */
export function encodeOtlpRequest(signal: OtlpSignal, request: Obj): Buffer {
  const type = signal === 'logs' ? LogsRequest : MetricsRequest;
  // fromObject, not verify: it takes int64s as decimal strings, as OTLP JSON writes them.
  return Buffer.from(type.encode(type.fromObject(request)).finish());
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? (v as Obj[]) : [];
}

function anyValue(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  const a = v as Obj;
  if ('stringValue' in a) return a.stringValue;
  if ('boolValue' in a) return a.boolValue;
  if ('intValue' in a) return Number(a.intValue);
  if ('doubleValue' in a) return Number(a.doubleValue);
  if ('arrayValue' in a) return list((a.arrayValue as Obj).values).map(anyValue);
  if ('kvlistValue' in a) return attributes((a.kvlistValue as Obj).values);
  if ('bytesValue' in a) return hex(a.bytesValue);
  return undefined;
}

function attributes(kvs: unknown): Obj {
  const out: Obj = {};
  for (const kv of list(kvs)) if (typeof kv.key === 'string') out[kv.key] = anyValue(kv.value);
  return out;
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
  for (const rl of list(request.resourceLogs)) {
    const resource = attributes((rl.resource as Obj | undefined)?.attributes);
    for (const sl of list(rl.scopeLogs)) {
      const scope = sl.scope as Obj | undefined;
      for (const r of list(sl.logRecords)) {
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
  for (const rm of list(request.resourceMetrics)) {
    const resource = attributes((rm.resource as Obj | undefined)?.attributes);
    for (const sm of list(rm.scopeMetrics)) {
      for (const m of list(sm.metrics)) {
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
