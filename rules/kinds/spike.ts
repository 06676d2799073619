import type { Event } from '../../ingest/model/index.ts';
import { type EntryWriter, type Evaluation, NOT_HOLDING, RuleRunner, TAG_KIND } from '../runner.ts';
import type { SpikeRule } from '../types.ts';
import { Timestamps } from '../window.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor } from './kind.ts';

interface KeyState {
  times: Timestamps;
  firstSeen: number;
  /** The next instant an event leaves a window, when a down spike may appear. */
  nextCheck: number;
  sample: Event | undefined;
}

/**
 * Current window (t−tf, t] against the reference window (t−2tf, t−tf]. Evaluated at
 * every event of the key and, for down spikes, whenever an event leaves a window —
 * a count can only fall then — so a key that goes quiet still trips a down spike.
 */
export class SpikeRunner extends RuleRunner<SpikeRule, KeyState> {
  /**
   * Spec values read per evaluation, copied onto the runner: at 1,000 rules the spec
   * object is out of cache between a rule's events.
   */
  private readonly timeframe = this.spec.timeframe;
  private readonly spikeHeight = this.spec.spike_height;
  private readonly spikeType = this.spec.spike_type;
  private readonly thresholdCur = this.spec.threshold_cur;
  private readonly thresholdRef = this.spec.threshold_ref;
  private readonly alertOnNewData = this.spec.alert_on_new_data;

  onEvent(event: Event, key: string, t: number): void {
    let state = this.keys.get(key);
    if (!state) {
      state = {
        times: new Timestamps(),
        firstSeen: t,
        nextCheck: Number.POSITIVE_INFINITY,
        sample: event,
      };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    if (t < state.firstSeen) state.firstSeen = t;
    if (t >= (state.times.newest() ?? Number.NEGATIVE_INFINITY)) state.sample = event;
    state.times.add(t);
    if (this.isLate(t)) {
      // Decided instants stay decided; a count it changes later is checked then.
      this.scheduleNext(key, state, this.ctx.watermark, true);
      this.recheckAfterLate(key);
      return;
    }
    this.condition(key, t, this.evaluateState(state, t, event));
    this.scheduleNext(key, state, t, false);
  }

  override onTimer(key: string, at: number, tag: number): void {
    if (tag !== TAG_KIND) {
      super.onTimer(key, at, tag);
      return;
    }
    const state = this.keys.get(key);
    if (!state || state.nextCheck !== at) return;
    state.nextCheck = Number.POSITIVE_INFINITY;
    this.condition(key, at, this.evaluateState(state, at, state.sample));
    this.scheduleNext(key, state, at, false);
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateState(state, t, state.sample) : NOT_HOLDING;
  }

  protected override newestEvaluated(key: string): number {
    return this.keys.get(key)?.times.newest() ?? Number.NEGATIVE_INFINITY;
  }

  /** Counts change between events only when one crosses t−tf or t−2tf: the first such instant. */
  protected override nextClear(key: string, t: number): number {
    const times = this.keys.get(key)?.times;
    if (!times) return Number.POSITIVE_INFINITY;
    const tf = this.spec.timeframe;
    const iCur = times.upperBound(t - tf);
    const iRef = times.upperBound(t - 2 * tf);
    let next = Number.POSITIVE_INFINITY;
    if (iCur < times.length) next = times.at(iCur) + tf;
    if (iRef < times.length) next = Math.min(next, times.at(iRef) + 2 * tf);
    return next;
  }

  private evaluateState(state: KeyState, t: number, sample: Event | undefined): Evaluation {
    const tf = this.timeframe;
    const height = this.spikeHeight;
    const cur = state.times.countIn(t - tf, t);
    const ref = state.times.countIn(t - 2 * tf, t - tf);
    const figures = {
      spike_count: cur,
      reference_count: ref,
      spike_height: height,
      timeframe_ms: tf,
    };
    const enoughHistory = this.alertOnNewData || t - state.firstSeen >= 2 * tf;
    if (!enoughHistory || cur < this.thresholdCur || ref < this.thresholdRef)
      return { holds: false, figures };
    if (this.spikeType !== 'down' && cur >= height * ref) {
      return { holds: true, figures: { ...figures, direction: 'up' }, sample, discriminator: 'up' };
    }
    if (this.spikeType !== 'up' && cur <= ref / height) {
      return {
        holds: true,
        figures: { ...figures, direction: 'down' },
        sample,
        discriminator: 'down',
      };
    }
    return NOT_HOLDING;
  }

  /**
   * Counts fall only when an event crosses t−tf or t−2tf; check at the first such
   * instant after t (at or after t when `inclusive`).
   */
  private scheduleNext(key: string, state: KeyState, t: number, inclusive: boolean): void {
    if (this.spikeType === 'up') return;
    const tf = this.timeframe;
    const times = state.times;
    const iCur = inclusive ? times.lowerBound(t - tf) : times.upperBound(t - tf);
    const iRef = inclusive ? times.lowerBound(t - 2 * tf) : times.upperBound(t - 2 * tf);
    let next = Number.POSITIVE_INFINITY;
    if (iCur < times.length) next = times.at(iCur) + tf;
    if (iRef < times.length) next = Math.min(next, times.at(iRef) + 2 * tf);
    if (next < t || (next === t && !inclusive) || next >= state.nextCheck) return;
    state.nextCheck = next;
    this.ctx.schedule(this, key, next, TAG_KIND);
  }

  override sweepSpan(): number {
    return 2 * this.spec.timeframe;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const horizon = watermark - 2 * this.spec.timeframe;
    for (const [key, state] of this.keys) {
      if (state.times.length !== 0 && state.times.at(0) <= horizon) this.touched(key);
      state.times.dropThrough(horizon);
      // A pending check still decides an instant (a down spike to nothing). Without
      // alert_on_new_data a key's history runs from its first event, so a quiet key keeps
      // its first-seen time (about 80 bytes; keys are bounded by max_keys): dropping it
      // would make a returning key new again, depending on when the sweep ran.
      if (
        state.times.length === 0 &&
        state.nextCheck === Number.POSITIVE_INFINITY &&
        this.spec.alert_on_new_data
      )
        this.forgetIdleKey(key);
    }
  }

  keyBytes(state: KeyState): number {
    return state.times.bytes() + 80;
  }
  protected encodeKey(s: KeyState): unknown {
    return {
      times: s.times.toArray(),
      firstSeen: s.firstSeen,
      nextCheck: s.nextCheck,
      sample: s.sample,
    };
  }
  /** encodeKey's object, written without making it or its times array (RuleRunner.writeEntry). */
  protected override writeKey(s: KeyState, w: EntryWriter): void {
    w.object(4, 1);
    w.key('times');
    const n = s.times.length;
    w.array(n, 2);
    for (let i = 0; i < n; i++) w.number(s.times.at(i));
    w.key('firstSeen');
    w.value(s.firstSeen, 2);
    w.key('nextCheck');
    w.value(s.nextCheck, 2);
    w.key('sample');
    w.value(s.sample, 2);
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as {
      times: number[];
      firstSeen: number;
      nextCheck: number | null;
      sample: Event | undefined;
    };
    return {
      times: Timestamps.from(d.times),
      firstSeen: d.firstSeen,
      nextCheck: d.nextCheck ?? Number.POSITIVE_INFINITY,
      sample: d.sample,
    };
  }
}

export const spikeKind: KindDescriptor<'spike'> = {
  type: 'spike',
  options: {
    timeframe: 'duration',
    spike_height: 'value',
    spike_type: 'value',
    threshold_cur: 'value',
    threshold_ref: 'value',
    alert_on_new_data: 'value',
  },
  required: ['timeframe', 'spike_height', 'spike_type'],
  condition: true,
  build: (raw, common) => ({
    ...common,
    type: 'spike',
    timeframe: parseDuration(raw.timeframe),
    spike_height: raw.spike_height as number,
    spike_type: raw.spike_type as 'up' | 'down' | 'both',
    threshold_cur: (raw.threshold_cur as number | undefined) ?? 1,
    threshold_ref: (raw.threshold_ref as number | undefined) ?? 1,
    alert_on_new_data: raw.alert_on_new_data === true,
  }),
  runner: (spec, ctx) => new SpikeRunner(spec, ctx),
};
