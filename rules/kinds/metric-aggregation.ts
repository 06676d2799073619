import type { Event } from '../../ingest/index.ts';
import { type Evaluation, NOT_HOLDING, RuleRunner } from '../runner.ts';
import type { MetricAggregationRule, MetricAggType } from '../types.ts';
import { Samples } from '../window.ts';

/**
 * The samples of one key with their aggregate kept up to date as samples enter and
 * leave: a running sum, and a sorted copy for min, max and percentiles (binary
 * insertion), so an in-order event costs a search and a short move, not a sort.
 */
class AggregateWindow {
  readonly samples = new Samples();
  sum = 0;
  readonly sorted: number[] | undefined;
  private drops = 0;

  constructor(type: MetricAggType) {
    this.sorted = type === 'sum' || type === 'avg' || type === 'count' ? undefined : [];
  }

  add(t: number, v: number): void {
    this.samples.add(t, v);
    this.sum += v;
    if (this.sorted) insertSorted(this.sorted, v);
  }

  dropThrough(t: number): void {
    const { samples, sorted } = this;
    let n = 0;
    while (n < samples.length && samples.times.at(n) <= t) {
      const v = samples.valueAt(n);
      this.sum -= v;
      if (sorted) removeSorted(sorted, v);
      n++;
    }
    if (n === 0) return;
    samples.dropThrough(t);
    // A running sum drifts with floating-point error: recompute it now and then.
    this.drops += n;
    if (samples.length === 0) this.sum = 0;
    else if (this.drops > 4096) {
      this.drops = 0;
      this.sum = 0;
      for (let i = 0; i < samples.length; i++) this.sum += samples.valueAt(i);
    }
  }

  /** The aggregate of everything held (the window, when events come in order). */
  current(type: MetricAggType): number | undefined {
    const n = this.samples.length;
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

interface KeyState {
  window: AggregateWindow;
  sample: Event | undefined;
}

/**
 * The aggregate of `metric_agg_key` over (t−tf, t] for a key, evaluated as each of its
 * events arrives; fires when it crosses `max_threshold` or `min_threshold` (exclusive).
 * Percentiles are nearest-rank over the samples in the window.
 */
export class MetricAggregationRunner extends RuleRunner<MetricAggregationRule, KeyState> {
  onEvent(event: Event, key: string, t: number): void {
    const v = event[this.spec.metric_agg_key];
    if (typeof v !== 'number' || Number.isNaN(v)) return;
    let state = this.keys.get(key);
    if (!state) {
      state = { window: new AggregateWindow(this.spec.metric_agg_type), sample: undefined };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    const inOrder = t >= (state.window.samples.times.newest() ?? Number.NEGATIVE_INFINITY);
    state.window.add(t, v);
    if (inOrder) {
      state.window.dropThrough(t - this.spec.timeframe);
      state.sample = event;
      this.condition(
        key,
        t,
        this.judge(
          state.window.current(this.spec.metric_agg_type),
          state.window.samples.length,
          event,
        ),
      );
    } else {
      this.condition(key, t, this.evaluateAt(state, t, event));
    }
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateAt(state, t, state.sample) : NOT_HOLDING;
  }

  /** The aggregate over (t−tf, t] computed from scratch: for late events and `for` checks. */
  private evaluateAt(state: KeyState, t: number, sample: Event | undefined): Evaluation {
    const { samples } = state.window;
    const lo = samples.times.upperBound(t - this.spec.timeframe);
    const hi = samples.times.upperBound(t);
    const values: number[] = [];
    for (let i = lo; i < hi; i++) values.push(samples.valueAt(i));
    return this.judge(aggregate(this.spec.metric_agg_type, values), values.length, sample);
  }

  private judge(value: number | undefined, n: number, sample: Event | undefined): Evaluation {
    const s = this.spec;
    if (value === undefined) return NOT_HOLDING;
    const above = s.max_threshold !== undefined && value > s.max_threshold;
    if (!above && !(s.min_threshold !== undefined && value < s.min_threshold)) return NOT_HOLDING;
    const figures: Record<string, unknown> = {
      value,
      metric_agg_type: s.metric_agg_type,
      metric_agg_key: s.metric_agg_key,
      samples: n,
      timeframe_ms: s.timeframe,
    };
    if (above) figures.max_threshold = s.max_threshold;
    else figures.min_threshold = s.min_threshold;
    return { holds: true, figures, sample, discriminator: above ? 'above' : 'below' };
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    for (const [key, state] of this.keys) {
      state.window.dropThrough(watermark - this.spec.timeframe);
      if (state.window.samples.length === 0) this.forgetKey(key);
    }
  }

  keyBytes(state: KeyState): number {
    return (
      state.window.samples.times.bytes() +
      state.window.samples.values.length * 8 * (state.window.sorted ? 2 : 1) +
      64
    );
  }
  protected encodeKey(s: KeyState): unknown {
    return {
      times: s.window.samples.times.toArray(),
      values: s.window.samples.live(),
      sample: s.sample,
    };
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as { times: number[]; values: number[]; sample: Event | undefined };
    const window = new AggregateWindow(this.spec.metric_agg_type);
    for (let i = 0; i < d.times.length; i++) window.add(d.times[i]!, d.values[i]!);
    return { window, sample: d.sample };
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
