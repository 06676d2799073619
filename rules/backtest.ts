import { createReadStream, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { type Event, normalize } from '../ingest/model/index.ts';
import { Engine } from './engine.ts';
import type { Alert, RuleSpec, StateChange } from './types.ts';
import { DEFAULT_MAX_LINE_CHARS, lineBatches } from './ndjson-lines.ts';

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
  /** Bytes read of NDJSON; events read of a `pages` input. */
  onProgress?: (read: number) => void;
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
/**
 * What a backtest reads: NDJSON (a file or standard input), or events already made,
 * a page at a time, in the order they are to be processed (Elasticsearch and Kafka
 * sources). Pages are taken one after the other, so memory is one page.
 */
export type BacktestInput = Readable | { pages: AsyncIterable<Event[]> };

export async function backtest(
  input: BacktestInput,
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
  input: BacktestInput,
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
  const feed = (event: Event) => {
    const t = event['@timestamp'];
    if (options.to !== undefined && t > options.to) return;
    // The engines only read the event (each may keep it, unchanged, as an alert sample).
    for (const engine of engines) engine.process(event);
    summary.events++;
    if (summary.first === undefined || t < summary.first) summary.first = t;
    if (summary.last === undefined || t > summary.last) summary.last = t;
  };
  if ('pages' in input) {
    // Events read back from a store: the ordinal stands for the line number.
    let n = 0;
    for await (const page of input.pages) {
      for (const event of page) {
        n++;
        if (!Number.isFinite(event['@timestamp'])) {
          summary.badLines++;
          options.onBadLine?.(n, 'event has no timestamp (@timestamp)');
          continue;
        }
        feed(event);
      }
      options.onProgress?.(n);
    }
    return finish();
  }
  let lineNo = 0;
  let bytes = 0;
  const onProgress = options.onProgress;
  for await (const batch of lineBatches(input)) {
    for (const line of batch) {
      lineNo++;
      if (typeof line !== 'string') {
        bytes += line.tooLong + 1;
        summary.badLines++;
        options.onBadLine?.(
          lineNo,
          `line of ${line.tooLong} characters is longer than the limit of ${DEFAULT_MAX_LINE_CHARS}`,
        );
        continue;
      }
      // Bytes are counted only for a progress bar (a second pass over each line otherwise).
      if (onProgress) bytes += Buffer.byteLength(line) + 1;
      // Blank lines are skipped; trim() (a new string) only for lines that start blank.
      if (line.length === 0 || (line.charCodeAt(0) <= 0x20 && line.trim() === '')) continue;
      let event: Event;
      try {
        const parsed: unknown = JSON.parse(line);
        if (isBulkAction(parsed)) continue;
        event = normalize(parsed, NO_RECEIPT);
        if (Number.isNaN(event['@timestamp']))
          throw new Error('event has no timestamp (@timestamp, time, timestamp)');
      } catch (err) {
        summary.badLines++;
        options.onBadLine?.(lineNo, (err as Error).message);
        continue;
      }
      feed(event);
    }
    onProgress?.(bytes);
  }
  onProgress?.(bytes);
  return finish();

  function finish(): BacktestSummary[] {
    for (const [i, engine] of engines.entries()) {
      engine.finish(options.to);
      Object.assign(summaries[i]!, summary, { lateEvents: engine.lateEvents });
    }
    return summaries;
  }
}

/** A line's time is its own: no receipt time stands in for a missing one. */
const NO_RECEIPT = { receivedAt: Number.NaN } as const;

/** `{"index":{...}}` / `{"create":{...}}` lines of an Elasticsearch bulk body. */
function isBulkAction(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  // Most lines are events: no own `index` or `create` (JSON.parse gives plain objects, and
  // Object.prototype has neither), so no key list is made for them.
  const o = v as Record<string, unknown>;
  if (o.index === undefined && o.create === undefined) return false;
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

/**
 * How much history before `--from` a rule needs so that its state at `--from` is what a
 * run over all the history would hold: its longest window (frequency, flatline,
 * cardinality, metric_aggregation and change: `timeframe`; spike: the reference and the
 * current window, 2 × `timeframe`; new_term: `terms_window_size`; expiry: `ttl`; any:
 * nothing), plus `for`. A change rule without a timeframe compares with the last value
 * however old: Infinity. Realert silences are not counted: an alert held back by one
 * that began before the warm-up may fire in the backtest.
 */
export function warmupNeedMs(rule: RuleSpec): number {
  let window: number;
  switch (rule.type) {
    case 'any':
      window = 0;
      break;
    case 'spike':
      window = 2 * rule.timeframe;
      break;
    case 'new_term':
      window = rule.terms_window_size;
      break;
    case 'expiry':
      window = rule.ttl;
      break;
    case 'change':
      window = rule.timeframe ?? Number.POSITIVE_INFINITY;
      break;
    default:
      window = rule.timeframe;
  }
  return window + (rule.for ?? 0);
}

/** The warm-up a backtest reads by default: the longest finite need of its rules. */
export function defaultWarmupMs(rules: RuleSpec[]): number {
  let most = 0;
  for (const r of rules) {
    if (!r.enabled) continue;
    const need = warmupNeedMs(r);
    if (Number.isFinite(need) && need > most) most = need;
  }
  return most;
}

export interface WarmupEntry {
  rule: string;
  /** warmupNeedMs of the rule (Infinity: all history). */
  needMs: number;
  /**
   * History the rule saw before `from`: from − the first event read, at most needMs (0
   * without `from`, or when no event came before it).
   */
  gotMs: number;
}

/** Per enabled rule, the warm-up it needed and got, `first` being the earliest event read. */
export function warmupReport(
  rules: RuleSpec[],
  from: number | undefined,
  first: number | undefined,
): WarmupEntry[] {
  const had = from === undefined || first === undefined ? 0 : Math.max(0, from - first);
  return rules
    .filter((r) => r.enabled)
    .map((r) => {
      const needMs = warmupNeedMs(r);
      return { rule: r.name, needMs, gotMs: Math.min(had, needMs) };
    });
}
