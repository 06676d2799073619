import type { Event } from '../../ingest/model/index.ts';
import { type EntryWriter, type Evaluation, NOT_HOLDING, RuleRunner } from '../runner.ts';
import type { MetricAggregationRule, MetricAggType } from '../types.ts';
import { Samples } from '../window.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor } from './kind.ts';

/**
 * The samples of one key, and the aggregate of those after `windowStart` (the window
 * (newest − tf, newest]) kept up to date as samples enter and leave it: a running sum,
 * and a sorted copy for min, max and percentiles (binary insertion), so an in-order
 * event costs a search and a short move, not a sort. Samples before the window stay
 * held while an event still on time (at or after the watermark) may need them.
 */
class AggregateWindow {
  readonly samples = new Samples();
  sum = 0;
  /** Samples in the window. */
  n = 0;
  windowStart = Number.NEGATIVE_INFINITY;
  readonly sorted: number[] | undefined;
  private drops = 0;
  /** The key's newest in-order event (the key's state is this window: no holder object). */
  sample: Event | undefined = undefined;

  constructor(type: MetricAggType) {
    this.sorted = type === 'sum' || type === 'avg' || type === 'count' ? undefined : [];
  }

  add(t: number, v: number): void {
    this.samples.add(t, v);
    if (t <= this.windowStart) return;
    this.n++;
    this.sum += v;
    if (this.sorted) insertSorted(this.sorted, v);
  }

  /** Moves the window's start up to `to`: samples ≤ it leave the aggregate. */
  slide(to: number): void {
    if (to <= this.windowStart) return;
    const { samples, sorted } = this;
    // Samples after windowStart are the window's n, at the end of the sorted times; those
    // leaving are found by a scan, which costs what removing them does.
    const times = samples.times;
    const from = times.length - this.n;
    let through = from;
    while (through < times.length && times.at(through) <= to) through++;
    for (let i = from; i < through; i++) {
      const v = samples.valueAt(i);
      this.sum -= v;
      if (sorted) removeSorted(sorted, v);
    }
    const n = through - from;
    this.windowStart = to;
    this.n -= n;
    // A running sum drifts with floating-point error: recompute it now and then.
    this.drops += n;
    if (this.n === 0) this.sum = 0;
    else if (this.drops > 4096) {
      this.drops = 0;
      this.sum = 0;
      for (let i = through; i < samples.length; i++) this.sum += samples.valueAt(i);
    }
  }

  /** Forgets samples ≤ t (at most the window's start). */
  prune(t: number): void {
    this.samples.dropThrough(Math.min(t, this.windowStart));
  }

  /** The aggregate of the window. */
  current(type: MetricAggType): number | undefined {
    const n = this.n;
    if (type === 'count') return n;
    if (n === 0) return undefined;
    if (type === 'sum') return this.sum;
    if (type === 'avg') return this.sum / n;
    const sorted = this.sorted!;
    if (type === 'min') return sorted[0];
    if (type === 'max') return sorted[n - 1];
    return sorted[nearestRank(type, n)];
  }
}

type KeyState = AggregateWindow;

/**
 * The aggregate of `metric_agg_key` over (t−tf, t] for a key, evaluated as each of its
 * events arrives; fires when it crosses `max_threshold` or `min_threshold` (exclusive).
 * Percentiles are nearest-rank over the samples in the window.
 */
export class MetricAggregationRunner extends RuleRunner<MetricAggregationRule, KeyState> {
  /**
   * Spec values read per event, copied onto the runner: at 1,000 rules the spec object
   * is out of cache between a rule's events, and reading it cost a miss per event.
   */
  private readonly aggKey = this.spec.metric_agg_key;
  private readonly aggType = this.spec.metric_agg_type;
  private readonly timeframe = this.spec.timeframe;
  private readonly maxThreshold = this.spec.max_threshold;
  private readonly minThreshold = this.spec.min_threshold;

  onEvent(event: Event, key: string, t: number): void {
    const v = event[this.aggKey];
    if (typeof v !== 'number' || Number.isNaN(v)) return;
    let state = this.keys.get(key);
    if (!state) {
      state = new AggregateWindow(this.aggType);
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    const window = state;
    const inOrder = t >= (window.samples.times.newest() ?? Number.NEGATIVE_INFINITY);
    window.add(t, v);
    if (this.isLate(t)) return; // counts from the watermark on, alerts at no decided instant
    if (inOrder) {
      window.slide(t - this.timeframe);
      window.prune(this.ctx.watermark - this.timeframe);
      state.sample = event;
      this.condition(key, t, this.judge(window.current(this.aggType), window.n, event));
    } else {
      // Out of order but on time: from scratch over its own window (rare; bounded by
      // the samples within timeframe + allowed lateness).
      this.condition(key, t, this.evaluateAt(state, t, event));
    }
  }

  /**
   * A key the sweep forgot had no samples left: its window is empty, and is judged as
   * such (a count of 0, under a `min_threshold`, holds), exactly as with its state still
   * held, so when a sweep runs (before a re-check at its own instant, or not, which a
   * restore can change) never moves a verdict.
   */
  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state
      ? this.evaluateAt(state, t, state.sample)
      : this.judge(aggregate(this.aggType, []), 0, undefined);
  }

  /**
   * Between events the aggregate is the one its last event saw (it is evaluated at
   * events), until the window empties: the re-check is then, a timeframe after the
   * sample that starts the first gap longer than the timeframe from t on. Samples after
   * t lie within the allowed lateness, so the walk takes at most lateness / tf + 1 steps
   * of a binary search; one re-check per timeframe at most while the key reports.
   */
  protected override nextClear(key: string, t: number): number {
    const times = this.keys.get(key)?.samples.times;
    if (!times || times.length === 0) return Number.POSITIVE_INFINITY;
    const tf = this.spec.timeframe;
    const i = times.upperBound(t) - 1;
    let s = i >= 0 ? times.at(i) : times.at(0);
    for (;;) {
      const j = times.upperBound(s + tf) - 1;
      if (j < 0 || !(times.at(j) > s)) break;
      s = times.at(j);
    }
    return s + tf > t ? s + tf : Number.POSITIVE_INFINITY;
  }

  protected override newestEvaluated(key: string): number {
    return this.keys.get(key)?.samples.times.newest() ?? Number.NEGATIVE_INFINITY;
  }

  /** Between events only an empty window decides (see nextClear). */
  protected override holdsBetween(key: string, at: number): boolean {
    const times = this.keys.get(key)?.samples.times;
    if (times && times.countIn(at - this.spec.timeframe, at) > 0) return true;
    return super.holdsBetween(key, at);
  }

  /** The aggregate over (t−tf, t] computed from scratch: for late events and `for` checks. */
  private evaluateAt(state: KeyState, t: number, sample: Event | undefined): Evaluation {
    const { samples } = state;
    const lo = samples.times.upperBound(t - this.spec.timeframe);
    const hi = samples.times.upperBound(t);
    const values: number[] = [];
    for (let i = lo; i < hi; i++) values.push(samples.valueAt(i));
    return this.judge(aggregate(this.spec.metric_agg_type, values), values.length, sample);
  }

  private judge(value: number | undefined, n: number, sample: Event | undefined): Evaluation {
    if (value === undefined) return NOT_HOLDING;
    const max = this.maxThreshold;
    const min = this.minThreshold;
    const above = max !== undefined && value > max;
    if (!above && !(min !== undefined && value < min)) return NOT_HOLDING;
    const figures: Record<string, unknown> = {
      value,
      metric_agg_type: this.aggType,
      metric_agg_key: this.aggKey,
      samples: n,
      timeframe_ms: this.timeframe,
    };
    if (above) figures.max_threshold = max;
    else figures.min_threshold = min;
    return { holds: true, figures, sample, discriminator: above ? 'above' : 'below' };
  }

  override sweepSpan(): number {
    return this.spec.timeframe;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const start = watermark - this.timeframe;
    for (const [key, state] of this.keys) {
      // The window's start moves at every sweep: each key changes (not incremental).
      if (start > state.windowStart) this.touched(key);
      state.slide(start);
      state.prune(start);
      if (state.samples.length === 0) this.forgetIdleKey(key);
    }
  }

  keyBytes(state: KeyState): number {
    return (
      state.samples.times.bytes() + state.samples.values.length * 8 * (state.sorted ? 2 : 1) + 64
    );
  }
  protected encodeKey(s: KeyState): unknown {
    return {
      times: s.samples.times.toArray(),
      values: s.samples.live(),
      windowStart: s.windowStart,
      sample: s.sample,
    };
  }
  /**
   * encodeKey's object, written without making it or its `times` and `values` arrays
   * (RuleRunner.writeEntry).
   */
  protected override writeKey(s: KeyState, w: EntryWriter): void {
    w.object(4, 1);
    w.key('times');
    const times = s.samples.times;
    const n = times.length;
    w.array(n, 2);
    for (let i = 0; i < n; i++) w.number(times.at(i));
    w.key('values');
    const samples = s.samples;
    const m = samples.length;
    w.array(m, 2);
    for (let i = 0; i < m; i++) w.value(samples.valueAt(i), 3);
    w.key('windowStart');
    w.value(s.windowStart, 2);
    w.key('sample');
    w.value(s.sample, 2);
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as {
      times: number[];
      values: number[];
      windowStart?: number | null;
      sample: Event | undefined;
    };
    const window = new AggregateWindow(this.spec.metric_agg_type);
    for (let i = 0; i < d.times.length; i++) window.add(d.times[i]!, d.values[i]!);
    if (typeof d.windowStart === 'number') window.slide(d.windowStart);
    window.sample = d.sample;
    return window;
  }
}

// Hand-written moves: Array#splice allocates its result on every call.
function insertSorted(sorted: number[], v: number): void {
  let i = sorted.length;
  const at = lowerBound(sorted, v);
  sorted.push(v);
  while (i > at) {
    sorted[i] = sorted[i - 1]!;
    i--;
  }
  sorted[at] = v;
}

function removeSorted(sorted: number[], v: number): void {
  const at = lowerBound(sorted, v);
  for (let i = at; i < sorted.length - 1; i++) sorted[i] = sorted[i + 1]!;
  sorted.pop();
}

function lowerBound(sorted: number[], v: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function nearestRank(type: MetricAggType, n: number): number {
  return Math.max(0, Math.ceil((Number(type.slice(1)) / 100) * n) - 1);
}

export function aggregate(type: MetricAggType, values: number[]): number | undefined {
  const n = values.length;
  if (type === 'count') return n;
  if (n === 0) return undefined;
  switch (type) {
    case 'sum':
    case 'avg': {
      let sum = 0;
      for (const v of values) sum += v;
      return type === 'sum' ? sum : sum / n;
    }
    case 'min':
      return values.reduce((a, b) => Math.min(a, b));
    case 'max':
      return values.reduce((a, b) => Math.max(a, b));
    default:
      return [...values].sort((a, b) => a - b)[nearestRank(type, n)];
  }
}

export const metricAggregationKind: KindDescriptor<'metric_aggregation'> = {
  type: 'metric_aggregation',
  options: {
    metric_agg_key: 'value',
    metric_agg_type: 'value',
    timeframe: 'duration',
    max_threshold: 'value',
    min_threshold: 'value',
  },
  required: ['metric_agg_key', 'metric_agg_type', 'timeframe'],
  oneOf: {
    options: ['max_threshold', 'min_threshold'],
    message: 'metric_aggregation rules need max_threshold or min_threshold',
  },
  condition: true,
  build: (raw, common) => ({
    ...common,
    type: 'metric_aggregation',
    metric_agg_key: raw.metric_agg_key as string,
    metric_agg_type: raw.metric_agg_type as MetricAggType,
    timeframe: parseDuration(raw.timeframe),
    ...(raw.max_threshold !== undefined && { max_threshold: raw.max_threshold as number }),
    ...(raw.min_threshold !== undefined && { min_threshold: raw.min_threshold as number }),
  }),
  check: (raw, report) => {
    if (
      typeof raw.max_threshold === 'number' &&
      typeof raw.min_threshold === 'number' &&
      raw.min_threshold > raw.max_threshold
    )
      report(['min_threshold'], 'min_threshold is above max_threshold: the rule would always fire');
  },
  runner: (spec, ctx) => new MetricAggregationRunner(spec, ctx),
};
