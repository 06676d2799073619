import type { Event } from '../../ingest/index.ts';
import { type Evaluation, NOT_HOLDING, RuleRunner, TAG_KIND } from '../runner.ts';
import type { CardinalityRule } from '../types.ts';

interface KeyState {
  /** Distinct value → last seen. */
  values: Map<string, number>;
  nextCheck: number;
  sample: Event | undefined;
}

/**
 * Distinct values of `cardinality_field` within `timeframe` for a key: above
 * `max_cardinality` when an event brings a new value, or below `min_cardinality`
 * (once a full timeframe is observed) — checked at events and whenever a value ages out.
 */
export class CardinalityRunner extends RuleRunner<CardinalityRule, KeyState> {
  onEvent(event: Event, key: string, t: number): void {
    const raw = event[this.spec.cardinality_field];
    if (raw === undefined || raw === null) return;
    const value = typeof raw === 'string' ? raw : JSON.stringify(raw);
    let state = this.keys.get(key);
    if (!state) {
      state = { values: new Map(), nextCheck: Number.POSITIVE_INFINITY, sample: undefined };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    const seen = state.values.get(value);
    if (seen === undefined || t > seen) state.values.set(value, t);
    state.sample = event;
    this.condition(key, t, this.evaluateState(state, t));
    this.scheduleNext(key, state, t);
  }

  override onTimer(key: string, at: number, tag: number): void {
    if (tag !== TAG_KIND) {
      super.onTimer(key, at, tag);
      return;
    }
    const state = this.keys.get(key);
    if (!state || state.nextCheck !== at) return;
    state.nextCheck = Number.POSITIVE_INFINITY;
    this.condition(key, at, this.evaluateState(state, at));
    this.scheduleNext(key, state, at);
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateState(state, t) : NOT_HOLDING;
  }

  private evaluateState(state: KeyState, t: number): Evaluation {
    const { max_cardinality: max, min_cardinality: min, timeframe } = this.spec;
    let cardinality = 0;
    for (const seen of state.values.values()) if (seen > t - timeframe && seen <= t) cardinality++;
    if (max !== undefined && cardinality > max) {
      return {
        holds: true,
        figures: { cardinality, timeframe_ms: timeframe, max_cardinality: max },
        sample: state.sample,
        discriminator: 'max',
      };
    }
    const observedFullWindow = t - this.ctx.observedFrom >= timeframe;
    if (min !== undefined && cardinality < min && observedFullWindow) {
      return {
        holds: true,
        figures: { cardinality, timeframe_ms: timeframe, min_cardinality: min },
        sample: state.sample,
        discriminator: 'min',
      };
    }
    return NOT_HOLDING;
  }

  /** With a minimum, the count can fall below it only when a value ages out. */
  private scheduleNext(key: string, state: KeyState, t: number): void {
    if (this.spec.min_cardinality === undefined) return;
    let next = Number.POSITIVE_INFINITY;
    for (const seen of state.values.values()) {
      const out = seen + this.spec.timeframe;
      if (out > t && out < next) next = out;
    }
    if (next === Number.POSITIVE_INFINITY || next >= state.nextCheck) return;
    state.nextCheck = next;
    this.ctx.schedule(this, key, next, TAG_KIND);
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const horizon = watermark - this.spec.timeframe;
    for (const [key, state] of this.keys) {
      for (const [value, seen] of state.values) if (seen <= horizon) state.values.delete(value);
      if (state.values.size === 0 && state.nextCheck === Number.POSITIVE_INFINITY)
        this.forgetKey(key);
    }
  }

  keyBytes(state: KeyState): number {
    return 64 + state.values.size * 48;
  }
  protected encodeKey(s: KeyState): unknown {
    return { values: [...s.values], nextCheck: s.nextCheck, sample: s.sample };
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as {
      values: Array<[string, number]>;
      nextCheck: number | null;
      sample: Event | undefined;
    };
    return {
      values: new Map(d.values),
      nextCheck: d.nextCheck ?? Number.POSITIVE_INFINITY,
      sample: d.sample,
    };
  }
}
