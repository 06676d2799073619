import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { type Event, normalize } from '../ingest/model/index.ts';
import { Engine } from './engine.ts';
import type { Alert, RuleSpec, StateChange } from './types.ts';

export interface BacktestOptions {
  rules: RuleSpec[];
  /**
   * Events before this build state without alerting; observation (a full timeframe
   * observed) still starts at the first event.
   */
  from?: number;
  /** Time stops here; later events are ignored. Default: the last event. */
  to?: number;
  allowedLatenessMs?: number;
  onAlert?: (alert: Alert) => void;
  /** State changes (pending, inactive, resolved), in order with the alerts. */
  onState?: (change: StateChange) => void;
  /** A line that could not be read: reported, and the rest goes on. */
  onBadLine?: (line: number, error: string) => void;
  onProgress?: (bytesRead: number) => void;
}

export interface BacktestSummary {
  alerts: Alert[];
  events: number;
  badLines: number;
  /**
   * Events whose time the watermark had passed when they arrived: they count only in
   * windows still open then (docs/time.md).
   */
  lateEvents: number;
  /** State changes by kind (docs/rules.md#alert-states). */
  states: Record<StateChange['state'], number>;
  first: number | undefined;
  last: number | undefined;
}

/**
 * Replays NDJSON through the rules. Each line is normalized exactly as ingest would
 * (pino, ECS, OTLP-style records, anything JSON); Elasticsearch `_bulk` action lines
 * are skipped, so a captured bulk body replays as is. The file is streamed, never
 * loaded whole.
 */
export async function backtest(
  input: Readable,
  options: BacktestOptions,
): Promise<BacktestSummary> {
  const [summary] = await backtestSets(
    input,
    { ...options, sets: [options.rules] },
    (_, alert) => options.onAlert?.(alert),
    (_, change) => options.onState?.(change),
  );
  return summary!;
}

/**
 * One read of the input, several engines fed the same events (`drover rules diff` runs a
 * base and a head rule set this way): one summary per rule set, in the order of `sets`.
 * Counts of events and bad lines are the same in each; alerts and late events are the
 * set's own.
 */
export async function backtestSets(
  input: Readable,
  options: Omit<BacktestOptions, 'rules' | 'onAlert'> & { sets: RuleSpec[][] },
  onAlert?: (set: number, alert: Alert) => void,
  onState?: (set: number, change: StateChange) => void,
): Promise<BacktestSummary[]> {
  const summaries: BacktestSummary[] = [];
  const engines = options.sets.map((rules, i) => {
    const alerts: Alert[] = [];
    const states = { pending: 0, inactive: 0, resolved: 0 };
    summaries.push({
      alerts,
      events: 0,
      badLines: 0,
      lateEvents: 0,
      states,
      first: undefined,
      last: undefined,
    });
    return new Engine(rules, {
      allowedLatenessMs: options.allowedLatenessMs,
      alertFrom: options.from,
      onAlert: (alert) => {
        alerts.push(alert);
        onAlert?.(i, alert);
      },
      onState: (change) => {
        states[change.state]++;
        onState?.(i, change);
      },
    });
  });
  const summary: Omit<BacktestSummary, 'alerts' | 'lateEvents' | 'states'> = {
    events: 0,
    badLines: 0,
    first: undefined,
    last: undefined,
  };
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  let bytes = 0;
  for await (const line of lines) {
    lineNo++;
    bytes += Buffer.byteLength(line) + 1;
    if (options.onProgress && (lineNo & 1023) === 0) options.onProgress(bytes);
    if (line.trim() === '') continue;
    let event: Event;
    try {
      const parsed: unknown = JSON.parse(line);
      if (isBulkAction(parsed)) continue;
      event = normalize(parsed, { receivedAt: Number.NaN });
      if (Number.isNaN(event['@timestamp']))
        throw new Error('event has no timestamp (@timestamp, time, timestamp)');
    } catch (err) {
      summary.badLines++;
      options.onBadLine?.(lineNo, (err as Error).message);
      continue;
    }
    const t = event['@timestamp'];
    if (options.to !== undefined && t > options.to) continue;
    // The engines only read the event (each may keep it, unchanged, as an alert sample).
    for (const engine of engines) engine.process(event);
    summary.events++;
    if (summary.first === undefined || t < summary.first) summary.first = t;
    if (summary.last === undefined || t > summary.last) summary.last = t;
  }
  options.onProgress?.(bytes);
  for (const [i, engine] of engines.entries()) {
    engine.finish(options.to);
    Object.assign(summaries[i]!, summary, { lateEvents: engine.lateEvents });
  }
  return summaries;
}

/** `{"index":{...}}` / `{"create":{...}}` lines of an Elasticsearch bulk body. */
function isBulkAction(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  return (
    keys.length === 1 &&
    (keys[0] === 'index' || keys[0] === 'create') &&
    typeof (v as Record<string, unknown>)[keys[0]] === 'object'
  );
}

export function openData(path: string): { stream: Readable; size: number | undefined } {
  if (path === '-') return { stream: process.stdin, size: undefined };
  return { stream: createReadStream(path), size: statSync(path).size };
}
