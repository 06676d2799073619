/**
 * Normalizes one decoded JSON object into the event model
 * (docs/architecture.md#event-model). The same function serves every ingest protocol and
 * the backtest, so a rule sees the same event whichever way it arrived.
 */

import type { Event, Level } from './event.ts';
import { eventTimeError, isEventTime } from './event-time.ts';
import { fingerprint, parseStack } from './fingerprint.ts';
import { parseRfc3339 } from './iso-time.ts';

export interface NormalizeOptions {
  /** Receipt time, used when the object carries no time of its own. */
  receivedAt?: number;
  /** Fills `service.name` when the object has none (e.g. `?service=` on /ingest). */
  service?: string;
}

/**
 * Why an event is refused. It carries no stack trace: it is a message for the sender,
 * and capturing one cost more than normalizing the event (a body of refused lines).
 */
export class NormalizeError extends Error {
  constructor(message: string) {
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = stackTraceLimit;
  }
}

const PINO_LEVELS: Array<[number, Level]> = [
  [60, 'fatal'],
  [50, 'error'],
  [40, 'warn'],
  [30, 'info'],
  [20, 'debug'],
  [10, 'trace'],
];

/**
 * Level names, as sent (trimmed, lower case). A Map, not an object literal: a sender's
 * `constructor` or `__proto__` must not find Object.prototype's members.
 */
const LEVEL_ALIASES = new Map<string, Level>(
  Object.entries({
    trace: 'trace',
    finest: 'trace',
    finer: 'trace',
    debug: 'debug',
    fine: 'debug',
    verbose: 'debug',
    info: 'info',
    information: 'info',
    informational: 'info',
    notice: 'info',
    config: 'info',
    warn: 'warn',
    warning: 'warn',
    error: 'error',
    err: 'error',
    severe: 'error',
    fatal: 'fatal',
    critical: 'fatal',
    crit: 'fatal',
    alert: 'fatal',
    emerg: 'fatal',
    emergency: 'fatal',
    panic: 'fatal',
  } satisfies Record<string, Level>),
);

export function levelFromNumber(n: number): Level | undefined {
  for (const [min, name] of PINO_LEVELS) if (n >= min) return name;
  return n > 0 ? 'trace' : undefined;
}

/** OTLP SeverityNumber: 1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20 error, 21–24 fatal. */
export function levelFromOtlpSeverity(n: number): Level | undefined {
  if (!(n >= 1)) return undefined;
  const names: Level[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  return names[Math.min(5, Math.floor((n - 1) / 4))];
}

export function levelFromString(s: string): Level | undefined {
  // Most senders write a name as listed: no new string for trim and lower case then.
  return LEVEL_ALIASES.get(s) ?? LEVEL_ALIASES.get(s.trim().toLowerCase());
}

function toLevel(v: unknown): Level | undefined {
  if (typeof v === 'number') return levelFromNumber(v);
  if (typeof v === 'string') {
    // A name as listed is no number: found before the digits' regular expression runs.
    const listed = LEVEL_ALIASES.get(v);
    if (listed !== undefined) return listed;
    if (/^\d+$/.test(v)) return levelFromNumber(Number(v));
    return levelFromString(v);
  }
  return undefined;
}

/** Accepts epoch ms, epoch seconds (as pino's `time` never is but others are), ISO strings, ns strings. */
export function toEpochMs(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) {
    if (v > 1e17) return Math.floor(v / 1e6); // nanoseconds
    if (v > 1e14) return Math.floor(v / 1e3); // microseconds
    if (v < 1e11) return Math.round(v * 1000); // seconds
    return v;
  }
  if (typeof v === 'bigint') return Number(v / 1_000_000n);
  if (typeof v === 'string' && v !== '') {
    const rfc3339 = parseRfc3339(v);
    if (rfc3339 !== undefined) return rfc3339;
    if (/^\d+(\.\d+)?$/.test(v)) {
      // Past 24 digits no time is meant (nanoseconds reach 10^21 in year 33658), and
      // BigInt would read all of an attacker's megabyte of digits: it is out of range.
      if (v.length > 24 && !v.includes('.')) return Number.POSITIVE_INFINITY;
      if (v.length >= 18 && !v.includes('.')) return Number(BigInt(v) / 1_000_000n);
      return toEpochMs(Number(v));
    }
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/**
 * Refuses a time no event may carry (see event-time.ts): it would wedge the consumers
 * or pull the rules' watermark ahead of the wall clock.
 */
export function checkEventTime(ms: number, field: string, sent: unknown): void {
  if (!isEventTime(ms)) throw new NormalizeError(eventTimeError(field, sent, ms));
}

export function nestingError(): string {
  return `objects nested more than ${MAX_NESTING} levels deep`;
}

/** `__proto__` is data here, never the object's prototype. */
function setField(out: Record<string, unknown>, name: string, value: unknown): void {
  if (name === '__proto__')
    Object.defineProperty(out, name, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  else out[name] = value;
}

/**
 * The same string as a property key would be: a fresh concatenation used as a key is
 * hashed and looked up in V8's string table at every use, an internalized one is not.
 */
function internalize(name: string): string {
  return Object.keys({ [name]: 0 })[0]!;
}

// The source fields normalize maps onto the model, each with a slot in `found`.
const SOURCES = [
  '@timestamp',
  'time',
  'timeUnixNano',
  'timestamp',
  'message',
  'msg',
  'log.level',
  'level',
  'severityNumber',
  'severityText',
  'severity',
  'service.name',
  'name',
  'resource.service.name',
  'host.name',
  'hostname',
  'resource.host.name',
  'host.hostname',
  'error.type',
  'err.type',
  'exception.type',
  'error.message',
  'err.message',
  'exception.message',
  'error.stack_trace',
  'err.stack',
  'error.stack',
  'exception.stacktrace',
  'error.fingerprint',
  'metric.name',
  'metric.value',
  'metric.type',
  'pid',
  'process.pid',
] as const;
type Source = (typeof SOURCES)[number];
export const SOURCE_COUNT = SOURCES.length;
const SLOT = new Map<string, number>(SOURCES.map((s, i) => [s, i]));
const at = (s: Source) => SLOT.get(s)!;
export const TIME_SLOTS = (['@timestamp', 'time', 'timeUnixNano', 'timestamp'] as const).map(at);
export const MESSAGE_SLOTS = (['message', 'msg'] as const).map(at);
export const SERVICE_SLOTS = (['service.name', 'name', 'resource.service.name'] as const).map(at);
export const HOST_SLOTS = (
  ['host.name', 'hostname', 'resource.host.name', 'host.hostname'] as const
).map(at);
export const ERROR_TYPE_SLOTS = (['error.type', 'err.type', 'exception.type'] as const).map(at);
export const ERROR_MESSAGE_SLOTS = (
  ['error.message', 'err.message', 'exception.message'] as const
).map(at);
export const ERROR_STACK_SLOTS = (
  ['error.stack_trace', 'err.stack', 'error.stack', 'exception.stacktrace'] as const
).map(at);
const [LOG_LEVEL, LEVEL, SEVERITY_NUMBER, SEVERITY_TEXT, SEVERITY] = (
  ['log.level', 'level', 'severityNumber', 'severityText', 'severity'] as const
).map(at) as [number, number, number, number, number];
const [SERVICE_NAME, NAME, HOST_NAME, HOSTNAME] = (
  ['service.name', 'name', 'host.name', 'hostname'] as const
).map(at) as [number, number, number, number];
const [ERROR_FINGERPRINT, PID, PROCESS_PID] = (
  ['error.fingerprint', 'pid', 'process.pid'] as const
).map(at) as [number, number, number];
export const [METRIC_NAME, METRIC_VALUE, METRIC_TYPE] = (
  ['metric.name', 'metric.value', 'metric.type'] as const
).map(at) as [number, number, number];

/**
 * Source fields that are also kept as sent (the rest are mapped, not copied), and how:
 * pino's `hostname` and `name` only when they did not fill the model, `pid` under its
 * ECS name.
 */
export const KEPT = 1;
const KEPT_IF_HOSTNAME_DIFFERS = 2;
const KEPT_IF_NAME_DIFFERS = 3;
const KEPT_AS_PROCESS_PID = 4;
export const DROPPED = -1;
const KEEP: number[] = SOURCES.map(() => DROPPED);
KEEP[SEVERITY] = KEPT;
KEEP[at('host.hostname')] = KEPT;
KEEP[HOSTNAME] = KEPT_IF_HOSTNAME_DIFFERS;
KEEP[NAME] = KEPT_IF_NAME_DIFFERS;
KEEP[PID] = KEPT_AS_PROCESS_PID;
KEEP[PROCESS_PID] = KEPT;

/**
 * What normalize needs to know of a field, worked out once per (parent, key): its
 * dotted name, its source slot, whether it is kept. Shippers send the same few shapes
 * over and over, so a walk costs one lookup per field. Bounded, so that a stream of
 * ever-new keys costs time, not memory.
 */
export interface Field {
  readonly name: string;
  /** Writes the field into an event. */
  readonly set: Setter;
  /** Its slot among SOURCES, or -1. */
  readonly slot: number;
  /** DROPPED, AS_SENT, or one of the KEPT modes. */
  readonly how: number;
  /** The fields of an object nested under this one. */
  children: FieldTable | undefined;
  /** False past FIELDS_LIMIT: the field is made anew at every use. */
  readonly cached: boolean;
  /** Shared by every field of the same dotted name (a flat and a nested spelling). */
  readonly same: { stamp: number };
  /**
   * The byte path's (normalize-json.ts): the key's UTF-8 bytes, the field's name as a
   * JSON key after a comma (`,"name":`), the line that last saw it, and its children by
   * key bytes.
   */
  keyBytes: DataView | undefined;
  nameJson: DataView | undefined;
  stamp: number;
  childBytes: ByteTable | undefined;
  /** The key that followed this one last time, and the first key of its object. */
  nextKey: Field | undefined;
  firstKey: Field | undefined;
  /**
   * The object path's (collect): the key under its parent, the key that followed it
   * last time, and the first key of its object. Only cached fields are linked, so the
   * links hold nothing the tables do not.
   */
  readonly key: string;
  nextObjKey: Field | undefined;
  firstObjKey: Field | undefined;
}
export type FieldTable = Map<string, Field>;
/** Fields by the hash of their key's bytes (see normalize-json.ts). */
export type ByteTable = Map<number, Field[]>;
const AS_SENT = 0;
export const ROOT: FieldTable = new Map();
export const ROOT_BYTES: ByteTable = new Map();
/** Fields of the same name share one of these. */
const NAMES = new Map<string, { stamp: number }>();
/**
 * Bounds on what the cache keeps of the field names senders choose: at most
 * FIELDS_LIMIT fields, none with a name longer than CACHED_NAME_CHARS, and
 * NAME_BUDGET_CHARS of names in all (each name is held in the tables, NAMES and a
 * compiled setter: a few times its size). Past them a field is made anew at every use:
 * ever-new or huge keys cost time, linear in their size, not memory.
 */
const FIELDS_LIMIT = 20_000;
const CACHED_NAME_CHARS = 256;
const NAME_BUDGET_CHARS = 1 << 20;
let fieldsKnown = 0;
let nameChars = 0;
/**
 * Objects nested deeper than this (the event itself is 1) are refused: the walk is
 * recursive, and each level's names repeat the ones above it. The byte path takes no
 * line nested deeper either (normalize-json.ts).
 */
export const MAX_NESTING = 64;

type Setter = (event: Record<string, unknown>, value: unknown) => void;

/**
 * A setter that writes one named field: `o["name"] = v` compiled as a named store.
 * V8 turns an object that gains more than about a dozen properties through keyed
 * stores (`o[name] = v`) into a slow dictionary; through named stores it stays fast up
 * to a hundred or so, and wide documents (Filebeat's carry 20 to 40 fields) are
 * serialized and read twice as fast. The name is embedded as a JSON string literal,
 * which is a valid JavaScript one.
 */
function setterFor(name: string): Setter {
  if (name === '__proto__') return (event, value) => setField(event, name, value);
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the name is JSON.stringify'd: a string literal, not code
  return new Function('o', 'v', `o[${JSON.stringify(name)}] = v;`) as Setter;
}

export function fieldOf(table: FieldTable, parent: string, key: string): Field {
  const known = table.get(key);
  if (known !== undefined) return known;
  const name = parent === '' ? key : internalize(`${parent}.${key}`);
  const cached =
    fieldsKnown < FIELDS_LIMIT &&
    name.length <= CACHED_NAME_CHARS &&
    nameChars + name.length <= NAME_BUDGET_CHARS;
  const slot = SLOT.get(name) ?? -1;
  const how =
    slot >= 0
      ? KEEP[slot]!
      : name.startsWith('err.') || name.startsWith('exception.')
        ? DROPPED
        : AS_SENT;
  // Past the limit, fields are not kept, and compiling a setter for each would cost more
  // than it saves.
  const set: Setter = cached ? setterFor(name) : (event, value) => setField(event, name, value);
  let same = NAMES.get(name);
  if (same === undefined) {
    same = { stamp: 0 };
    if (cached) NAMES.set(name, same);
  }
  const field: Field = {
    name,
    set,
    slot,
    how,
    children: undefined,
    cached,
    same,
    keyBytes: undefined,
    nameJson: undefined,
    stamp: 0,
    childBytes: undefined,
    nextKey: undefined,
    firstKey: undefined,
    key,
    nextObjKey: undefined,
    firstObjKey: undefined,
  };
  if (cached) {
    table.set(key, field);
    fieldsKnown++;
    nameChars += name.length;
  }
  return field;
}

const PROCESS_PID_FIELD = fieldOf(ROOT, '', 'process.pid');

// One event at a time (normalize is synchronous), so the walk's output lives in
// reused arrays instead of an intermediate flat object per event.
const found: unknown[] = new Array(SOURCES.length).fill(undefined);
/**
 * The slots of `found` this event filled, each once (a slot is listed when it goes from
 * undefined to a value): at most SOURCE_COUNT, cleared after the event instead of all
 * of `found`.
 */
const filled: number[] = new Array<number>(SOURCES.length).fill(0);
let filledCount = 0;
const restFields: Field[] = [];
const restValues: unknown[] = [];
let rest = 0;
/** The first key of the last top-level object walked (see Field.nextObjKey). */
let rootFirstObjKey: Field | undefined;

/**
 * Walks the input once: source fields into `found`, everything else into the rest.
 * Shippers send the same shapes, so each key is first checked against the one that
 * followed the previous key last time: one comparison instead of a table lookup.
 */
function collect(
  obj: Record<string, unknown>,
  table: FieldTable,
  parent: string,
  depth: number,
  owner: Field | undefined,
): void {
  let expected = owner === undefined ? rootFirstObjKey : owner.firstObjKey;
  let previous: Field | undefined;
  for (const key in obj) {
    // An empty object this deep is dropped, as everywhere else, not refused.
    if (depth > MAX_NESTING) throw new NormalizeError(nestingError());
    let value = obj[key];
    if (value === undefined) continue;
    let field: Field;
    if (expected !== undefined && expected.key === key) field = expected;
    else {
      field = fieldOf(table, parent, key);
      // Links only among cached fields: a field made anew each time is not held.
      if (field.cached) {
        if (previous !== undefined) previous.nextObjKey = field;
        else if (owner !== undefined) owner.firstObjKey = field;
        else rootFirstObjKey = field;
      }
    }
    previous = field.cached ? field : undefined;
    expected = field.nextObjKey;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      if (!(value instanceof Date)) {
        collect(
          value as Record<string, unknown>,
          (field.children ??= new Map<string, Field>()),
          field.name,
          depth + 1,
          field,
        );
        continue;
      }
      value = value.toISOString();
    }
    const slot = field.slot;
    if (slot >= 0) {
      if (found[slot] === undefined) filled[filledCount++] = slot;
      found[slot] = value;
    }
    if (field.how === DROPPED) continue;
    restFields[rest] = field;
    restValues[rest] = value;
    rest++;
  }
}

/** The first of `slots` that is present and non-empty. */
function first(found: unknown[], slots: readonly number[]): unknown {
  for (const s of slots) {
    const v = found[s];
    if (v !== undefined && v !== null && v !== '') return v;
  }
  return undefined;
}

export function normalize(input: unknown, options: NormalizeOptions = {}): Event {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new NormalizeError(
      `expected a JSON object, got ${Array.isArray(input) ? 'an array' : input === null ? 'null' : typeof input}`,
    );
  }
  rest = 0;
  filledCount = 0;
  try {
    collect(input as Record<string, unknown>, ROOT, '', 1, undefined);
    return build(modelOf(found, options));
  } finally {
    // Nothing of this event stays reachable from the scratch arrays: the slots it
    // filled are cleared, not all of them (a loop over `found` cost a sixth of the
    // walk). (Loops: fill() on an array is a call into the runtime.)
    for (let i = 0; i < filledCount; i++) found[filled[i]!] = undefined;
    for (let i = 0; i < rest; i++) restValues[i] = undefined;
  }
}

/**
 * The model fields of an event (docs/architecture.md#event-model), worked out from its
 * source fields, in the order the event carries them; and which kept source fields go out
 * and how. One object reused: normalize is synchronous.
 */
export interface Model {
  timestamp: number;
  message: string | undefined;
  level: Level | undefined;
  service: string | undefined;
  host: string | undefined;
  errorType: string | undefined;
  errorMessage: string | undefined;
  errorStack: string | undefined;
  fingerprint: string | undefined;
  metricName: string | undefined;
  metricValue: number;
  metricType: string | undefined;
  keepHostname: boolean;
  keepName: boolean;
  pidAsProcessPid: boolean;
}

const model: Model = {
  timestamp: 0,
  message: undefined,
  level: undefined,
  service: undefined,
  host: undefined,
  errorType: undefined,
  errorMessage: undefined,
  errorStack: undefined,
  fingerprint: undefined,
  metricName: undefined,
  metricValue: 0,
  metricType: undefined,
  keepHostname: false,
  keepName: false,
  pidAsProcessPid: false,
};

/** The model of the event whose source fields are `found` (indexed by SOURCES). */
export function modelOf(found: unknown[], options: NormalizeOptions): Model {
  const m = model;
  // @timestamp: `@timestamp`, pino `time`, OTLP `timeUnixNano`, `timestamp`, receipt time.
  let ts: number | undefined;
  for (const s of TIME_SLOTS) {
    if (found[s] === undefined) continue;
    ts = toEpochMs(found[s]);
    if (ts !== undefined) {
      checkEventTime(ts, SOURCES[s]!, found[s]);
      break;
    }
  }
  m.timestamp = ts ?? options.receivedAt ?? Date.now();

  // message: `message`, pino `msg`.
  const message = first(found, MESSAGE_SLOTS);
  m.message =
    message === undefined || typeof message === 'string' ? message : JSON.stringify(message);

  // log.level: `log.level`, pino numeric `level`, `level` string, OTLP severity.
  let level = toLevel(found[LOG_LEVEL]) ?? toLevel(found[LEVEL]);
  if (level === undefined && found[SEVERITY_NUMBER] !== undefined)
    level = levelFromOtlpSeverity(Number(found[SEVERITY_NUMBER]));
  if (level === undefined && typeof found[SEVERITY_TEXT] === 'string')
    level = levelFromString(found[SEVERITY_TEXT]);
  if (level === undefined && typeof found[SEVERITY] === 'string')
    level = levelFromString(found[SEVERITY]);
  m.level = level;

  // service.name / host.name: ECS, pino `name` / `hostname`, OTLP resource attributes.
  const service = first(found, SERVICE_SLOTS);
  m.service = service !== undefined ? String(service) : options.service;
  const host = first(found, HOST_SLOTS);
  m.host = host !== undefined ? String(host) : undefined;

  // error.*: ECS fields, pino `err`, OpenTelemetry `exception.*`.
  const errType = first(found, ERROR_TYPE_SLOTS);
  const errMessage = first(found, ERROR_MESSAGE_SLOTS);
  const errStack = first(found, ERROR_STACK_SLOTS);
  m.errorType =
    errType !== undefined
      ? String(errType)
      : errStack !== undefined
        ? parseStack(String(errStack)).type
        : undefined;
  m.errorMessage = errMessage !== undefined ? String(errMessage) : undefined;
  m.errorStack = errStack !== undefined ? String(errStack) : undefined;
  m.fingerprint =
    m.errorStack !== undefined
      ? fingerprint(m.errorStack, m.errorType)
      : found[ERROR_FINGERPRINT] !== undefined
        ? String(found[ERROR_FINGERPRINT])
        : undefined;

  // metric.*: an input object carrying `metric.name` and `metric.value`.
  m.metricName = undefined;
  m.metricType = undefined;
  if (found[METRIC_NAME] !== undefined) {
    m.metricName = String(found[METRIC_NAME]);
    const v = found[METRIC_VALUE];
    const num =
      typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (Number.isNaN(num))
      throw new NormalizeError(`metric.value must be a number, got ${JSON.stringify(v)}`);
    m.metricValue = num;
    m.metricType = found[METRIC_TYPE] === undefined ? 'gauge' : String(found[METRIC_TYPE]);
  }

  // Everything else is kept as sent. pino's `hostname` and `name` go only when they
  // filled the model: a shipper's own host.name (Filebeat's node) must not erase the
  // app's hostname (its pod), which remediation may target.
  m.keepHostname = found[HOST_NAME] !== undefined && found[HOSTNAME] !== m.host;
  m.keepName = found[SERVICE_NAME] !== undefined && found[NAME] !== m.service;
  m.pidAsProcessPid = typeof found[PID] === 'number' && found[PROCESS_PID] === undefined;
  return m;
}

/**
 * The field a kept source field goes out as, or undefined when it does not: pino's
 * `hostname` / `name` only when they did not fill the model, `pid` as process.pid.
 */
export function keptAs(field: Field, m: Model): Field | undefined {
  switch (field.how) {
    case KEPT_IF_HOSTNAME_DIFFERS:
      return m.keepHostname ? field : undefined;
    case KEPT_IF_NAME_DIFFERS:
      return m.keepName ? field : undefined;
    case KEPT_AS_PROCESS_PID:
      return m.pidAsProcessPid ? PROCESS_PID_FIELD : field;
    default:
      return field;
  }
}

/**
 * The event, built fresh with the model fields first rather than by deleting from the
 * input: deletes leave slow dictionary-mode objects, and the rules engine reads fields
 * of every event many times.
 */
function build(m: Model): Event {
  const event: Event = { '@timestamp': m.timestamp };
  if (m.message !== undefined) event.message = m.message;
  if (m.level !== undefined) event['log.level'] = m.level;
  if (m.service !== undefined) event['service.name'] = m.service;
  if (m.host !== undefined) event['host.name'] = m.host;
  if (m.errorType !== undefined) event['error.type'] = m.errorType;
  if (m.errorMessage !== undefined) event['error.message'] = m.errorMessage;
  if (m.errorStack !== undefined) event['error.stack_trace'] = m.errorStack;
  if (m.fingerprint !== undefined) event['error.fingerprint'] = m.fingerprint;
  if (m.metricName !== undefined) {
    event['metric.name'] = m.metricName;
    event['metric.value'] = m.metricValue;
    event['metric.type'] = m.metricType;
  }
  for (let i = 0; i < rest; i++) {
    const field = restFields[i]!;
    const out = field.how > KEPT ? keptAs(field, m) : field;
    if (out !== undefined) out.set(event, restValues[i]);
  }
  return event;
}
