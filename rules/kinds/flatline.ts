import type { Event } from '../../ingest/model/index.ts';
import { type EngineContext, type EntryWriter, RuleRunner, TAG_KIND } from '../runner.ts';
import type { FlatlineRule } from '../types.ts';
import { Timestamps } from '../window.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor, toList } from './kind.ts';

interface KeyState {
  times: Timestamps;
  /** The timer this key waits on: at or before the instant its count next falls low. */
  deadline: number;
  /** No deadline before this: past instants are decided, realert silences the rest. */
  from: number;
  sample: Event | undefined;
  expected: boolean;
}

/**
 * Fewer than `threshold` events for a key within `timeframe`, once a full timeframe
 * has been observed. The count over (D−tf, D] is at least k exactly when D lies in
 * [tsᵢ, tsᵢ₋ₖ₊₁ + tf) for some i, so the next low instant is the first gap in that
 * union of intervals: an exact event-time deadline, found without polling. Keys in
 * `expect` are watched from the start, even if they never report.
 */
export class FlatlineRunner extends RuleRunner<FlatlineRule, KeyState> {
  /**
   * Spec values read per event and deadline, copied onto the runner: at 1,000 rules the
   * spec object is out of cache between a rule's events.
   */
  private readonly timeframe: number;
  private readonly threshold: number;

  constructor(spec: FlatlineRule, ctx: EngineContext) {
    super(spec, ctx);
    this.timeframe = spec.timeframe;
    this.threshold = spec.threshold;
  }

  /** Called once the engine knows when observation started. */
  start(): void {
    for (const values of this.spec.expect) {
      const key = this.keyOfValues(values);
      if (this.keys.has(key)) continue;
      this.touched(key);
      this.rememberKey(key, undefined, values);
      const state: KeyState = {
        times: new Timestamps(),
        deadline: Number.POSITIVE_INFINITY,
        from: Number.NEGATIVE_INFINITY,
        sample: undefined,
        expected: true,
      };
      this.keys.set(key, state);
      this.reschedule(key, state);
    }
  }

  private keyOfValues(values: Record<string, unknown>): string {
    const event = { '@timestamp': 0, ...values } as Event;
    return this.keyOf(event) ?? '';
  }

  protected override readonly resolution = 'report';

  onEvent(event: Event, key: string, t: number): void {
    this.reported(key, t); // a firing of the key resolves when it reports again
    let state = this.keys.get(key);
    if (!state) {
      // A key seen for the first time is observed from its first event: it cannot be
      // low before a full timeframe of it has passed (`expect` keys are watched from
      // the engine's observation start instead).
      state = {
        times: new Timestamps(),
        deadline: Number.POSITIVE_INFINITY,
        from: t + this.timeframe,
        sample: undefined,
        expected: false,
      };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    if (t >= (state.times.newest() ?? Number.NEGATIVE_INFINITY)) state.sample = event;
    state.times.add(t);
    // An event can only remove low instants, never add one: the pending timer, when
    // due, finds the deadline that moved on. A new key needs its first timer.
    if (state.deadline === Number.POSITIVE_INFINITY) this.reschedule(key, state);
    else if (state.from < this.silencedUntil(key)) {
      // A key looked at within its silence (nextLook) is looked at when this event leaves.
      const leaves = t + this.timeframe;
      if (leaves < state.deadline && leaves >= this.ctx.watermark && leaves >= state.from) {
        state.deadline = leaves;
        this.ctx.schedule(this, key, leaves, TAG_KIND);
      }
    }
  }

  override onTimer(key: string, at: number, tag: number): void {
    if (tag !== TAG_KIND) {
      super.onTimer(key, at, tag);
      return;
    }
    const state = this.keys.get(key);
    if (!state || state.deadline !== at) return;
    const due = this.firstLow(state.times, Math.max(state.from, at));
    if (due > at) {
      state.deadline = due;
      this.ctx.schedule(this, key, due, TAG_KIND);
      return;
    }
    state.deadline = Number.POSITIVE_INFINITY;
    const count = state.times.countIn(at - this.spec.timeframe, at);
    const fired = this.fire(key, at, {
      figures: { count, threshold: this.spec.threshold, timeframe_ms: this.spec.timeframe },
      sample: state.sample,
    });
    if (fired && this.spec.forget_keys && !state.expected) {
      this.forgetKey(key);
      return;
    }
    if (!fired) {
      // Silenced (a key forget_keys forgot, low again within the silence it left): it is
      // still looked at each instant an event leaves its window and at the silence's end,
      // since firing again, silenced or not, keeps its firing going (docs/rules.md#alert-states).
      this.nextLook(key, state, at);
      return;
    }
    // While it stays low, the next alert comes once realert has passed.
    state.from = Math.max(at + 1, this.silencedUntil(key));
    this.reschedule(key, state);
  }

  /** A silenced key's next look after t: the first event leaving its window, or the silence's end. */
  private nextLook(key: string, state: KeyState, t: number): void {
    const times = state.times;
    const i = times.upperBound(t - this.spec.timeframe);
    const leaves = i < times.length ? times.at(i) + this.spec.timeframe : Number.POSITIVE_INFINITY;
    const next = Math.min(leaves, this.silencedUntil(key));
    if (next === Number.POSITIVE_INFINITY) return;
    state.deadline = next;
    this.ctx.schedule(this, key, next, TAG_KIND);
  }

  private reschedule(key: string, state: KeyState): void {
    const from = Math.max(
      state.from,
      this.ctx.watermark,
      this.ctx.observedFrom + this.spec.timeframe,
    );
    const deadline = this.firstLow(state.times, from);
    if (deadline === state.deadline) return;
    state.deadline = deadline;
    this.ctx.schedule(this, key, deadline, TAG_KIND);
  }

  /** The first instant ≥ from at which fewer than threshold events lie in (D−tf, D]. */
  private firstLow(times: Timestamps, from: number): number {
    const k = this.threshold;
    const tf = this.timeframe;
    let cursor = from;
    for (let i = k - 1; i < times.length; i++) {
      const start = times.at(i);
      if (start > cursor) return cursor;
      const end = times.at(i - k + 1) + tf;
      if (end > cursor) cursor = end;
    }
    return cursor;
  }

  override sweepSpan(): number {
    return this.spec.timeframe;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    // Instants before the watermark are decided; events that old cannot cover later ones.
    const horizon = watermark - this.timeframe;
    for (const [key, state] of this.keys) {
      if (state.times.length === 0 || state.times.at(0) > horizon) continue;
      this.touched(key);
      state.times.dropThrough(horizon);
    }
  }

  keyBytes(state: KeyState): number {
    return state.times.bytes() + 96;
  }
  protected encodeKey(s: KeyState): unknown {
    return {
      times: s.times.toArray(),
      deadline: s.deadline,
      from: s.from,
      sample: s.sample,
      expected: s.expected,
    };
  }
  /** encodeKey's object, written without making it or its times array (RuleRunner.writeEntry). */
  protected override writeKey(s: KeyState, w: EntryWriter): void {
    w.object(5, 1);
    w.key('times');
    const n = s.times.length;
    w.array(n, 2);
    for (let i = 0; i < n; i++) w.number(s.times.at(i));
    w.key('deadline');
    w.value(s.deadline, 2);
    w.key('from');
    w.value(s.from, 2);
    w.key('sample');
    w.value(s.sample, 2);
    w.key('expected');
    w.value(s.expected, 2);
  }
  protected decodeKey(data: unknown): KeyState {
    const d = data as {
      times: number[];
      deadline: number | null;
      from: number | null;
      sample: Event;
      expected: boolean;
    };
    return {
      times: Timestamps.from(d.times),
      deadline: d.deadline ?? Number.POSITIVE_INFINITY,
      from: d.from ?? Number.NEGATIVE_INFINITY,
      sample: d.sample,
      expected: d.expected,
    };
  }
}

export const flatlineKind: KindDescriptor<'flatline'> = {
  type: 'flatline',
  options: { timeframe: 'duration', threshold: 'value', expect: 'value', forget_keys: 'value' },
  required: ['timeframe', 'threshold'],
  condition: false,
  build: (raw, common) => ({
    ...common,
    type: 'flatline',
    timeframe: parseDuration(raw.timeframe),
    threshold: raw.threshold as number,
    expect: ((raw.expect ?? []) as unknown[]).map((e) =>
      e !== null && typeof e === 'object'
        ? (e as Record<string, unknown>)
        : { [common.query_key[0]!]: e },
    ),
    forget_keys: raw.forget_keys === true,
  }),
  check: (raw, report) => {
    if (!Array.isArray(raw.expect)) return;
    const keyFields = toList(raw.query_key);
    (raw.expect as unknown[]).forEach((entry, i) => {
      if (keyFields.length === 0) {
        report(['expect', i], 'expect lists keys, so the rule needs a query_key');
        return;
      }
      if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) {
        const names = Object.keys(entry).sort();
        if (names.join() !== [...keyFields].sort().join()) {
          report(
            ['expect', i],
            `an expected key names exactly the query_key fields (${keyFields.join(', ')}), got ${names.join(', ') || 'none'}`,
          );
        }
      } else if (keyFields.length > 1) {
        report(
          ['expect', i],
          `with a compound query_key, an expected key is a mapping of ${keyFields.join(', ')}`,
        );
      }
    });
  },
  runner: (spec, ctx) => new FlatlineRunner(spec, ctx),
};
