// The straightforward normalize the optimized one in ingest/ replaced, kept as the
// reference it is tested against (as json-rules-engine is for compiled filters).
import type { Event, Level } from '../../../ingest/model/event.ts';
import { fingerprint, parseStack } from '../../../ingest/model/fingerprint.ts';
// The leaf readers are shared: what is tested here is the walk and the mapping.
import {
  levelFromNumber,
  levelFromOtlpSeverity,
  levelFromString,
  checkEventTime,
  MAX_NESTING,
  nestingError,
  NormalizeError,
  toEpochMs,
} from '../../../ingest/model/normalize.ts';

/**
 * Normalizes one decoded JSON object into the event model
 * (docs/architecture.md#event-model). The same function serves every ingest protocol and
 * the backtest, so a rule sees the same event whichever way it arrived.
 */
export interface NormalizeOptions {
  /** Receipt time, used when the object carries no time of its own. */
  receivedAt?: number;
  /** Fills `service.name` when the object has none (e.g. `?service=` on /ingest). */
  service?: string;
}

function toLevel(v: unknown): Level | undefined {
  if (typeof v === 'number') return levelFromNumber(v);
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return levelFromNumber(Number(v));
    return levelFromString(v);
  }
  return undefined;
}

/**
 * Flattens nested objects into dotted keys. Arrays are values, not objects: their
 * elements are kept as sent. A key written both nested and dotted keeps the later one.
 */
export function flatten(
  obj: Record<string, unknown>,
  out: Record<string, unknown> = {},
  prefix = '',
  depth = 1,
) {
  if (depth > MAX_NESTING) throw new NormalizeError(nestingError());
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    const name = prefix === '' ? key : `${prefix}.${key}`;
    if (
      value !== null &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      !(value instanceof Date)
    ) {
      const keys = Object.keys(value);
      if (keys.length === 0) continue;
      flatten(value as Record<string, unknown>, out, name, depth + 1);
    } else if (value !== undefined) {
      out[name] = value instanceof Date ? value.toISOString() : value;
    }
  }
  return out;
}

/** No nested object and nothing flatten would drop or convert: read it as it is. */
function isFlat(obj: Record<string, unknown>): boolean {
  for (const key in obj) {
    const value = obj[key];
    if (value === undefined) return false;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return false;
  }
  return true;
}

const TIME_FIELDS = ['@timestamp', 'time', 'timeUnixNano', 'timestamp'];
const MESSAGE_FIELDS = ['message', 'msg'];
const SERVICE_FIELDS = ['service.name', 'name', 'resource.service.name'];
const HOST_FIELDS = ['host.name', 'hostname', 'resource.host.name', 'host.hostname'];
const ERROR_TYPE_FIELDS = ['error.type', 'err.type', 'exception.type'];
const ERROR_MESSAGE_FIELDS = ['error.message', 'err.message', 'exception.message'];
const ERROR_STACK_FIELDS = [
  'error.stack_trace',
  'err.stack',
  'error.stack',
  'exception.stacktrace',
];

/** The first of `sources` that is present and non-empty. */
function take(flat: Record<string, unknown>, sources: string[]): unknown {
  for (const s of sources) {
    const v = flat[s];
    if (v !== undefined && v !== null && v !== '') {
      return v;
    }
  }
  return undefined;
}

/** Source fields normalize maps onto the model; they are not copied as sent. */
const CONSUMED = new Set([
  '@timestamp',
  'time',
  'timeUnixNano',
  'timestamp',
  'message',
  'msg',
  'level',
  'log.level',
  'severityNumber',
  'severityText',
  'name',
  'service.name',
  'resource.service.name',
  'hostname',
  'host.name',
  'resource.host.name',
  'error.type',
  'error.message',
  'error.stack_trace',
  'error.stack',
  'error.fingerprint',
  'metric.name',
  'metric.value',
  'metric.type',
]);

export function normalize(input: unknown, options: NormalizeOptions = {}): Event {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new NormalizeError(
      `expected a JSON object, got ${Array.isArray(input) ? 'an array' : input === null ? 'null' : typeof input}`,
    );
  }
  const flat = isFlat(input as Record<string, unknown>)
    ? (input as Record<string, unknown>)
    : flatten(input as Record<string, unknown>);
  // The result is built fresh, model fields first, rather than by deleting from the
  // input: deletes leave slow dictionary-mode objects, and the rules engine reads
  // fields of every event many times.

  // @timestamp: `@timestamp`, pino `time`, OTLP `timeUnixNano`, `timestamp`, receipt time.
  let ts: number | undefined;
  for (const s of TIME_FIELDS) {
    if (flat[s] === undefined) continue;
    ts = toEpochMs(flat[s]);
    if (ts !== undefined) {
      checkEventTime(ts, s, flat[s]);
      break;
    }
  }
  const event: Event = { '@timestamp': ts ?? options.receivedAt ?? Date.now() };

  // message: `message`, pino `msg`.
  const message = take(flat, MESSAGE_FIELDS);
  if (message !== undefined)
    event.message = typeof message === 'string' ? message : JSON.stringify(message);

  // log.level: `log.level`, pino numeric `level`, `level` string, OTLP severity.
  let level = toLevel(flat['log.level']) ?? toLevel(flat.level);
  if (level === undefined && flat.severityNumber !== undefined)
    level = levelFromOtlpSeverity(Number(flat.severityNumber));
  if (level === undefined && typeof flat.severityText === 'string')
    level = levelFromString(flat.severityText);
  if (level === undefined && typeof flat.severity === 'string')
    level = levelFromString(flat.severity);
  if (level !== undefined) event['log.level'] = level;

  // service.name / host.name: ECS, pino `name` / `hostname`, OTLP resource attributes.
  const service = take(flat, SERVICE_FIELDS);
  if (service !== undefined) event['service.name'] = String(service);
  else if (options.service !== undefined) event['service.name'] = options.service;
  const host = take(flat, HOST_FIELDS);
  if (host !== undefined) event['host.name'] = String(host);

  // error.*: ECS fields, pino `err`, OpenTelemetry `exception.*`.
  const errType = take(flat, ERROR_TYPE_FIELDS);
  const errMessage = take(flat, ERROR_MESSAGE_FIELDS);
  const errStack = take(flat, ERROR_STACK_FIELDS);
  if (errType !== undefined) event['error.type'] = String(errType);
  else if (errStack !== undefined) {
    const parsed = parseStack(String(errStack)).type;
    if (parsed !== undefined) event['error.type'] = parsed;
  }
  if (errMessage !== undefined) event['error.message'] = String(errMessage);
  if (errStack !== undefined) {
    event['error.stack_trace'] = String(errStack);
    event['error.fingerprint'] = fingerprint(event['error.stack_trace'], event['error.type']);
  } else if (flat['error.fingerprint'] !== undefined) {
    event['error.fingerprint'] = String(flat['error.fingerprint']);
  }

  // metric.*: an input object carrying `metric.name` and `metric.value`.
  if (flat['metric.name'] !== undefined) {
    event['metric.name'] = String(flat['metric.name']);
    const v = flat['metric.value'];
    const num =
      typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (Number.isNaN(num))
      throw new NormalizeError(`metric.value must be a number, got ${JSON.stringify(v)}`);
    event['metric.value'] = num;
    event['metric.type'] =
      flat['metric.type'] === undefined ? 'gauge' : String(flat['metric.type']);
  }

  // Everything else, kept as sent (pino's pid under its ECS name). pino's `hostname`
  // and `name` go only when they filled the model: a shipper's own host.name (Filebeat's
  // node) must not erase the app's hostname (its pod), which remediation may target.
  const keepHostname = flat['host.name'] !== undefined && flat.hostname !== event['host.name'];
  const keepName = flat['service.name'] !== undefined && flat.name !== event['service.name'];
  for (const k in flat) {
    if (k === 'hostname' && keepHostname) {
      event.hostname = flat.hostname;
      continue;
    }
    if (k === 'name' && keepName) {
      event.name = flat.name;
      continue;
    }
    if (CONSUMED.has(k) || k.startsWith('err.') || k.startsWith('exception.')) continue;
    if (k === 'pid' && typeof flat.pid === 'number' && flat['process.pid'] === undefined)
      event['process.pid'] = flat.pid;
    else event[k] = flat[k];
  }
  return event;
}
