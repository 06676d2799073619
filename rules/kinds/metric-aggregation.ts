import type { Event } from '../../ingest/index.ts';
import { type Evaluation, RuleRunner } from '../runner.ts';
import type { MetricAggregationRule, MetricAggType } from '../types.ts';
import { Samples } from '../window.ts';

interface KeyState {
  samples: Samples;
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
      state = { samples: new Samples(), sample: undefined };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    const inOrder = t >= (state.samples.times.newest() ?? Number.NEGATIVE_INFINITY);
    state.samples.add(t, v);
    if (inOrder) {
      state.samples.dropThrough(t - this.spec.timeframe);
      state.sample = event;
    }
    this.condition(key, t, this.evaluateState(state, t, event));
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateState(state, t, state.sample) : { holds: false, figures: {} };
  }

  private evaluateState(state: KeyState, t: number, sample: Event | undefined): Evaluation {
    const s = this.spec;
    const { times } = state.samples;
    const lo = times.upperBound(t - s.timeframe);
    const hi = times.upperBound(t);
    const head = state.samples.values.length - times.length;
    const window = state.samples.values.slice(head + lo, head + hi);
    const value = aggregate(s.metric_agg_type, window);
    const figures: Record<string, unknown> = {
      value,
      metric_agg_type: s.metric_agg_type,
      metric_agg_key: s.metric_agg_key,
      samples: window.length,
      timeframe_ms: s.timeframe,
    };
    if (value === undefined) return { holds: false, figures };
    if (s.max_threshold !== undefined && value > s.max_threshold) {
      return {
        holds: true,
        figures: { ...figures, max_threshold: s.max_threshold },
        sample,
        discriminator: 'above',
      };
    }
    if (s.min_threshold !== undefined && value < s.min_threshold) {
      return {
        holds: true,
        figures: { ...figures, min_threshold: s.min_threshold },
        sample,
        discriminator: 'below',
      };
    }
    return { holds: false, figures };
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    for (const [key, state] of this.keys) {
      state.samples.dropThrough(watermark - this.spec.timeframe);
      if (state.samples.length === 0) this.forgetKey(key);
    }
  }

  keyBytes(state: KeyState): number {
    return state.samples.times.bytes() + state.samples.values.length * 8 + 64;
  }
  protected encodeKey(s: KeyState): unknown {
    return { times: s.samples.times.toArray(), values: s.samples.live(), sample: s.sample };
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as { times: number[]; values: number[]; sample: Event | undefined };
    const samples = new Samples();
    for (let i = 0; i < d.times.length; i++) samples.add(d.times[i]!, d.values[i]!);
    return { samples, sample: d.sample };
  }
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
      return values.reduce((a, b) => Math.min(b, a));
    case 'max':
      return values.reduce((a, b) => Math.max(b, a));
    default: {
      const p = Number(type.slice(1)) / 100;
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.max(0, Math.ceil(p * n) - 1)];
    }
  }
}
