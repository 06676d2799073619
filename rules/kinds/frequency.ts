import type { Event } from '../../ingest/model/index.ts';
import { type EntryWriter, type Evaluation, NOT_HOLDING, RuleRunner } from '../runner.ts';
import type { FrequencyRule } from '../types.ts';
import { Timestamps } from '../window.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor } from './kind.ts';

/** Event times of one key a frequency rule keeps past the watermark (see onEvent). */
export const MAX_TIMES_AHEAD = 10_000;

/**
 * A key's event times with its newest sample: one object, so an event reaches the
 * times without a hop through a holder object (per event and rule, with many keys
 * the hop is a cache miss).
 */
class KeyState extends Timestamps {
  sample: Event | undefined = undefined;
}

/**
 * At least `num_events` events for a key within `timeframe`, evaluated at each event
 * (not at late ones: their instant is decided). An evaluation at an instant D ≥ the
 * watermark needs only the newest num_events timestamps at or before the watermark,
 * plus those after it — the latter bounded by the key's rate × the allowed lateness.
 */
export class FrequencyRunner extends RuleRunner<FrequencyRule, KeyState> {
  /**
   * A lower bound of the oldest time any key holds (-Infinity: not known, after a
   * restore): a sweep whose horizon is below it would drop nothing, and skips the walk.
   */
  private oldest = Number.NEGATIVE_INFINITY;
  /**
   * Spec values read per event, copied onto the runner: at 1,000 rules the spec object
   * is out of cache between a rule's events, and reading it cost a miss per event.
   */
  private readonly numEvents = this.spec.num_events;
  private readonly timeframe = this.spec.timeframe;

  onEvent(event: Event, key: string, t: number): void {
    let state = this.keys.get(key);
    if (!state) {
      state = new KeyState();
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    const inOrder = t >= (state.newest() ?? Number.NEGATIVE_INFINITY);
    // Times past the watermark are as many as the sender sends within the allowed
    // lateness: a key keeps at most MAX_TIMES_AHEAD of them (num_events if larger).
    // Past it, an event is still evaluated at its instant but its time is not kept.
    // Both searches are skipped while the key holds fewer times than they could trim.
    const times = state;
    const watermark = this.ctx.watermark;
    const n = this.numEvents;
    const aheadCap = Math.max(MAX_TIMES_AHEAD, n);
    if (
      t <= watermark ||
      times.length < aheadCap ||
      times.length - times.upperBound(watermark) < aheadCap
    )
      times.add(t);
    if (times.length > n) times.keepNewestThrough(n, watermark);
    if (times.length !== 0 && times.at(0) < this.oldest) this.oldest = times.at(0);
    if (this.isLate(t)) return;
    if (inOrder) state.sample = event;
    this.condition(key, t, this.evaluateState(state, t, event));
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateState(state, t, state.sample) : NOT_HOLDING;
  }

  protected override newestEvaluated(key: string): number {
    return this.keys.get(key)?.newest() ?? Number.NEGATIVE_INFINITY;
  }

  /**
   * With no further event, the count over (D−tf, D] falls under num_events when the
   * oldest of the newest num_events events in (t−tf, t] leaves the window.
   */
  protected override nextClear(key: string, t: number): number {
    const times = this.keys.get(key);
    if (!times) return Number.POSITIVE_INFINITY;
    const from = times.upperBound(t - this.spec.timeframe);
    const count = times.upperBound(t) - from;
    if (count < this.spec.num_events) return t + 1;
    return times.at(from + count - this.spec.num_events) + this.spec.timeframe;
  }

  private evaluateState(state: KeyState, t: number, sample: Event | undefined): Evaluation {
    const count = state.countIn(t - this.timeframe, t);
    if (count < this.numEvents) return NOT_HOLDING;
    return {
      holds: true,
      figures: { count, num_events: this.numEvents, timeframe_ms: this.timeframe },
      sample,
    };
  }

  override sweepSpan(): number {
    return this.spec.timeframe;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const horizon = watermark - this.timeframe;
    if (horizon < this.oldest) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [key, times] of this.keys) {
      if (times.length === 0) continue;
      if (times.at(0) > horizon) {
        if (times.at(0) < oldest) oldest = times.at(0);
        continue;
      }
      this.touched(key);
      times.dropThrough(horizon);
      if (times.length === 0) this.forgetIdleKey(key);
      else if (times.at(0) < oldest) oldest = times.at(0);
    }
    this.oldest = oldest;
  }

  keyBytes(state: KeyState): number {
    return state.bytes() + 64;
  }
  protected encodeKey(state: KeyState): unknown {
    return { times: state.toArray(), sample: state.sample };
  }
  /** encodeKey's object, written without making it or its times array (RuleRunner.writeEntry). */
  protected override writeKey(state: KeyState, w: EntryWriter): void {
    w.object(2, 1);
    w.key('times');
    const n = state.length;
    w.array(n, 2);
    for (let i = 0; i < n; i++) w.number(state.at(i));
    w.key('sample');
    w.value(state.sample, 2);
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as { times: number[]; sample: Event | undefined };
    this.oldest = Number.NEGATIVE_INFINITY;
    const state = new KeyState(Math.max(4, d.times.length));
    for (const v of d.times) state.add(v);
    state.sample = d.sample;
    return state;
  }
}

export const frequencyKind: KindDescriptor<'frequency'> = {
  type: 'frequency',
  options: { num_events: 'value', timeframe: 'duration' },
  required: ['num_events', 'timeframe'],
  condition: true,
  build: (raw, common) => ({
    ...common,
    type: 'frequency',
    num_events: raw.num_events as number,
    timeframe: parseDuration(raw.timeframe),
  }),
  runner: (spec, ctx) => new FrequencyRunner(spec, ctx),
};
