import type { Event } from '../../ingest/model/index.ts';
import {
  type EntryWriter,
  type Evaluation,
  NOT_HOLDING,
  PART_STEP_BYTES,
  RuleRunner,
  TAG_KIND,
} from '../runner.ts';
import type { CardinalityRule } from '../types.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor } from './kind.ts';

/**
 * Distinct values one cardinality key holds by default (at least max_cardinality + 1
 * and min_cardinality): values are what the sender picks, and each event is evaluated
 * over all of them.
 */
export const MAX_CARDINALITY_VALUES = 10_000;

interface KeyState {
  /**
   * Distinct value → the instants it counts at, as sorted disjoint half-open intervals
   * [start, end) flattened: an event at t covers [t, t + timeframe). Only instants the
   * watermark has not passed are kept, so a value holds one interval, or a few when it
   * reported with gaps longer than the timeframe within the allowed lateness.
   */
  values: Map<string, number[]>;
  nextCheck: number;
  sample: Event | undefined;
}

/**
 * Distinct values of `cardinality_field` within (t−timeframe, t] for a key: above
 * `max_cardinality` at an event, or below `min_cardinality` (once a full timeframe
 * has been observed) at an event or at the instant a value
 * leaves the window. A value counts at t if it has any event in the window — not only
 * its newest, which may already lie after t. State is bounded by the distinct values
 * seen within the timeframe plus the allowed lateness (the per-rule key cap bounds keys).
 */
export class CardinalityRunner extends RuleRunner<CardinalityRule, KeyState> {
  /** Distinct values a key holds: MAX_CARDINALITY_VALUES, or what the rule's bounds need. */
  private get maxValues(): number {
    const { max_cardinality: max, min_cardinality: min } = this.spec;
    return Math.max(MAX_CARDINALITY_VALUES, (max ?? 0) + 1, min ?? 0);
  }
  /** New distinct values refused at maxValues since this runner was built. */
  termsRefused = 0;
  /**
   * A lower bound of the earliest end of any interval the keys hold (-Infinity: not
   * known, after a restore, or a key with no values is kept for its pending check). An
   * added interval only lowers it; a sweep at a watermark at or below it would drop
   * nothing, and returns at once (most sweeps: a value reporting within its timeframe
   * keeps one open interval).
   */
  private earliestEnd = Number.NEGATIVE_INFINITY;
  /** Spec values read per event, copied onto the runner (the spec is cold at 1,000 rules). */
  private readonly cardinalityField = this.spec.cardinality_field;
  private readonly timeframe = this.spec.timeframe;
  private readonly maxCardinality = this.spec.max_cardinality;
  private readonly minCardinality = this.spec.min_cardinality;

  onEvent(event: Event, key: string, t: number): void {
    const raw = event[this.cardinalityField];
    if (raw === undefined || raw === null) return;
    const late = this.isLate(t);
    // A late event's own window is decided; it can still cover instants from the watermark on.
    if (late && t + this.timeframe < this.ctx.watermark) return;
    const value = typeof raw === 'string' ? raw : JSON.stringify(raw);
    let state = this.keys.get(key);
    if (!state) {
      state = {
        values: new Map(),
        nextCheck: Number.POSITIVE_INFINITY,
        sample: undefined,
      };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    let cover = state.values.get(value);
    if (!cover) {
      // Past the cap a new value is refused (counted, reported as a refused term): the
      // values held keep working, and above max_cardinality the cap changes no alert.
      if (state.values.size >= this.maxValues) {
        this.termsRefused++;
        this.ctx.refused(this, 'term', this.maxValues);
        return;
      }
      cover = [];
      state.values.set(value, cover);
    }
    const end = t + this.timeframe;
    addCover(cover, t, end);
    if (end < this.earliestEnd) this.earliestEnd = end;
    if (late) {
      this.scheduleNext(key, state, this.ctx.watermark, true);
      this.evaluateBehind(key, t, end);
      return;
    }
    state.sample = event;
    this.condition(key, t, this.evaluateState(state, t));
    this.evaluateBehind(key, t, end);
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
    // A later report may have extended the cover that was to end here: no value leaves.
    let leaves = false;
    for (const cover of state.values.values())
      for (let i = 1; i < cover.length && !leaves; i += 2) leaves = cover[i] === at;
    if (leaves) this.condition(key, at, this.evaluateState(state, at));
    this.scheduleNext(key, state, at, false);
  }

  protected override evaluate(key: string, t: number): Evaluation | undefined {
    const state = this.keys.get(key);
    return state ? this.evaluateState(state, t) : NOT_HOLDING;
  }

  /** The newest event's time: a timeframe before the latest end of a value's cover. */
  protected override newestEvaluated(key: string): number {
    const state = this.keys.get(key);
    let end = Number.NEGATIVE_INFINITY;
    if (state) for (const cover of state.values.values()) end = Math.max(end, cover.at(-1)!);
    return end - this.spec.timeframe;
  }

  /**
   * Above max_cardinality the count falls only when a value's cover ends: the first end
   * after t (O(values held), as an evaluation is). Below min_cardinality it rises only
   * at events, which are evaluated.
   */
  protected override nextClear(key: string, t: number): number {
    const state = this.keys.get(key);
    let next = Number.POSITIVE_INFINITY;
    if (!state) return next;
    for (const cover of state.values.values())
      for (let i = 1; i < cover.length; i += 2)
        if (cover[i]! > t && cover[i]! < next) next = cover[i]!;
    return next;
  }

  private evaluateState(state: KeyState, t: number): Evaluation {
    const max = this.maxCardinality;
    const min = this.minCardinality;
    const timeframe = this.timeframe;
    // The count is at most the values the key holds: with no minimum and no more values
    // than the maximum, the condition cannot hold at any instant, and the walk (a read
    // of every value's cover, O(values) per event) is skipped. At 1,000 rules those
    // covers are out of cache between a key's events.
    if (min === undefined && (max === undefined || state.values.size <= max)) return NOT_HOLDING;
    let cardinality = 0;
    for (const cover of state.values.values()) if (covers(cover, t)) cardinality++;
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

  /**
   * With a minimum, the count can fall below it only when a value's cover ends: check
   * at the first end after t (at or after t when `inclusive`).
   */
  private scheduleNext(key: string, state: KeyState, t: number, inclusive: boolean): void {
    if (this.minCardinality === undefined) return;
    let next = Number.POSITIVE_INFINITY;
    for (const cover of state.values.values()) {
      for (let i = 1; i < cover.length; i += 2) {
        const end = cover[i]!;
        if ((end > t || (inclusive && end === t)) && end < next) next = end;
      }
    }
    if (next === Number.POSITIVE_INFINITY || next >= state.nextCheck) return;
    state.nextCheck = next;
    this.ctx.schedule(this, key, next, TAG_KIND);
  }

  override sweepSpan(): number {
    return this.spec.timeframe;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    // Nothing ends before the watermark: a walk would drop no interval and forget no key.
    if (watermark <= this.earliestEnd) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const [key, state] of this.keys) {
      let touched = false;
      for (const [value, cover] of state.values) {
        // Intervals ending before the watermark cover no instant still open (one ending
        // at it still marks the instant its value leaves).
        let drop = 0;
        while (drop < cover.length && cover[drop + 1]! < watermark) drop += 2;
        if (drop > 0 && !touched) {
          this.touched(key);
          touched = true;
        }
        if (drop === cover.length) state.values.delete(value);
        else {
          if (drop > 0) cover.splice(0, drop);
          if (cover[1]! < earliest) earliest = cover[1]!;
        }
      }
      if (state.values.size === 0) {
        if (state.nextCheck === Number.POSITIVE_INFINITY) this.forgetIdleKey(key);
        // Kept for its check: the next sweep walks again, to forget it once idle.
        else earliest = Number.NEGATIVE_INFINITY;
      }
    }
    this.earliestEnd = earliest;
  }

  keyBytes(state: KeyState): number {
    let bytes = 64;
    for (const cover of state.values.values()) bytes += 48 + cover.length * 8;
    return bytes;
  }
  protected encodeKey(s: KeyState): unknown {
    return { values: [...s.values], nextCheck: s.nextCheck, sample: s.sample };
  }
  /**
   * encodeKey's object, written without making it, its `values` array or a pair per
   * value (RuleRunner.writeEntry): the map is walked by `forEach` with a function made
   * once, not by an iterator of [value, intervals] pairs.
   */
  protected override writeKey(s: KeyState, w: EntryWriter): void {
    w.object(3, 1);
    w.key('values');
    w.array(s.values.size, 2);
    valuesWriter = w;
    try {
      s.values.forEach(writeValueIntervals);
    } finally {
      valuesWriter = undefined;
    }
    w.key('nextCheck');
    w.value(s.nextCheck, 2);
    w.key('sample');
    w.value(s.sample, 2);
  }
  protected override readonly keysInParts = true;
  /** A key of more than PART_VALUES values is written in steps (writeKeyParts). */
  protected override keyInParts(s: KeyState): boolean {
    return s.values.size > PART_VALUES;
  }
  /**
   * writeKey's bytes in steps: a yield once PART_STEP_BYTES more have been written since
   * the last, between two values (a value is at most an event's size). The map is walked
   * by its iterator, which the capture resumes: the state does not change between two
   * steps (an event about to change it has the rest written first).
   */
  protected override *writeKeyParts(s: KeyState, w: EntryWriter): Generator<void, void> {
    w.object(3, 1);
    w.key('values');
    w.array(s.values.size, 2);
    let mark = w.bytes();
    for (const [value, intervals] of s.values) {
      w.array(2, 3);
      w.value(value, 4);
      w.value(intervals, 4);
      if (w.bytes() - mark >= PART_STEP_BYTES) {
        yield;
        mark = w.bytes();
      }
    }
    w.key('nextCheck');
    w.value(s.nextCheck, 2);
    w.key('sample');
    w.value(s.sample, 2);
  }
  protected decodeKey(data: unknown, version: number): KeyState {
    const d = data as {
      values: Array<[string, number[] | number]>;
      nextCheck: number | null;
      sample: Event | undefined;
    };
    const tf = this.spec.timeframe;
    this.earliestEnd = Number.NEGATIVE_INFINITY;
    // Version 1 kept each value's newest event: it covers [seen, seen + tf).
    const values = new Map(
      d.values.map(([v, c]): [string, number[]] =>
        version === 1 && typeof c === 'number' ? [v, [c, c + tf]] : [v, c as number[]],
      ),
    );
    return {
      values,
      nextCheck: d.nextCheck ?? Number.POSITIVE_INFINITY,
      sample: d.sample,
    };
  }
}

/**
 * Values past which a key is written in steps (writeKeyParts): a few dozen values of a
 * few bytes cost less than a step's generator; past this, a sender's long values may not.
 */
const PART_VALUES = 64;

/** The writer CardinalityRunner.writeKey hands each value to (set only while it runs). */
let valuesWriter: EntryWriter | undefined;

/** One value and its intervals, as the pair `[value, intervals]` at depth 3 would be written. */
function writeValueIntervals(intervals: number[], value: string): void {
  const w = valuesWriter!;
  w.array(2, 3);
  w.value(value, 4);
  w.value(intervals, 4);
}

/** Whether instant t lies in one of the [start, end) intervals. */
function covers(cover: number[], t: number): boolean {
  for (let i = 0; i < cover.length; i += 2) if (cover[i]! <= t && t < cover[i + 1]!) return true;
  return false;
}

/** Adds [start, end) to sorted disjoint intervals, merging what it touches. */
function addCover(cover: number[], start: number, end: number): void {
  const n = cover.length;
  // The common case: in order, overlapping or after the last interval.
  if (n === 0 || start > cover[n - 1]!) {
    cover.push(start, end);
    return;
  }
  if (start >= cover[n - 2]!) {
    if (end > cover[n - 1]!) cover[n - 1] = end;
    return;
  }
  let lo = start;
  let hi = end;
  const kept: number[] = [];
  let placed = false;
  for (let i = 0; i < n; i += 2) {
    const a = cover[i]!;
    const b = cover[i + 1]!;
    if (b < lo) kept.push(a, b);
    else if (a > hi) {
      if (!placed) kept.push(lo, hi);
      placed = true;
      kept.push(a, b);
    } else {
      lo = Math.min(lo, a);
      hi = Math.max(hi, b);
    }
  }
  if (!placed) kept.push(lo, hi);
  cover.length = 0;
  for (const x of kept) cover.push(x);
}

export const cardinalityKind: KindDescriptor<'cardinality'> = {
  type: 'cardinality',
  options: {
    cardinality_field: 'value',
    timeframe: 'duration',
    max_cardinality: 'value',
    min_cardinality: 'value',
  },
  required: ['cardinality_field', 'timeframe'],
  oneOf: {
    options: ['max_cardinality', 'min_cardinality'],
    message: 'cardinality rules need max_cardinality or min_cardinality',
  },
  condition: true,
  build: (raw, common) => ({
    ...common,
    type: 'cardinality',
    cardinality_field: raw.cardinality_field as string,
    timeframe: parseDuration(raw.timeframe),
    ...(raw.max_cardinality !== undefined && { max_cardinality: raw.max_cardinality as number }),
    ...(raw.min_cardinality !== undefined && { min_cardinality: raw.min_cardinality as number }),
  }),
  check: (raw, report) => {
    if (
      typeof raw.max_cardinality === 'number' &&
      typeof raw.min_cardinality === 'number' &&
      raw.min_cardinality > raw.max_cardinality
    )
      report(
        ['min_cardinality'],
        'min_cardinality is above max_cardinality: the rule would always fire',
      );
  },
  runner: (spec, ctx) => new CardinalityRunner(spec, ctx),
};
