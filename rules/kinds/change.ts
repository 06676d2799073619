import type { Event } from '../../ingest/model/index.ts';
import { RuleRunner } from '../runner.ts';
import type { ChangeRule } from '../types.ts';
import { parseDuration } from '../duration.ts';
import { type KindDescriptor, toList } from './kind.ts';

interface KeyState {
  value: string;
  values: Record<string, unknown>;
  t: number;
}

/**
 * The compared value for a key differs from its previous value (within `timeframe`
 * when set). With `ignore_null`, events missing a compare field are skipped; without
 * it, a missing field is the value null.
 */
export class ChangeRunner extends RuleRunner<ChangeRule, KeyState> {
  protected override readonly resolution = 'after';
  /**
   * Spec values read per event, copied onto the runner: at 1,000 rules the spec object
   * is out of cache between a rule's events, and reading it cost a miss per event.
   */
  private readonly compareKey = this.spec.compare_key;
  private readonly ignoreNull = this.spec.ignore_null;

  onEvent(event: Event, key: string, t: number): void {
    const fields = this.compareKey;
    let value: string;
    if (fields.length === 1) {
      // The common case costs no allocation: a single field, usually a string.
      const v = event[fields[0]!] ?? null;
      if (v === null && this.ignoreNull) return;
      value = typeof v === 'string' ? v : `\u0001${JSON.stringify(v)}`;
    } else {
      value = '';
      for (const f of fields) {
        const v = event[f] ?? null;
        if (v === null && this.spec.ignore_null) return;
        value += `${JSON.stringify(v)}\u0000`;
      }
    }
    const previous = this.keys.get(key);
    if (!previous) {
      this.rememberKey(key, event);
      this.keys.set(key, { value, values: this.valuesOf(event), t });
      return;
    }
    if (t < previous.t) return; // an event out of order does not rewrite history
    if (previous.value === value) {
      previous.t = t;
      return;
    }
    if (this.isLate(t)) {
      // Its instant is decided: no alert, but later events compare with it.
      this.keys.set(key, { value, values: this.valuesOf(event), t });
      return;
    }
    const old = previous.values;
    const tf = this.spec.timeframe;
    const withinTimeframe = tf === undefined || t - previous.t <= tf;
    const values = this.valuesOf(event);
    this.keys.set(key, { value, values, t });
    if (!withinTimeframe) return;
    this.fire(key, t, {
      figures: {
        compare_key: fields,
        old_value: unwrap(old),
        new_value: unwrap(values),
        previous_at: new Date(previous.t).toISOString(),
      },
      sample: event,
      discriminator: value,
    });
  }

  private valuesOf(event: Event): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const f of this.spec.compare_key) values[f] = event[f] ?? null;
    return values;
  }

  override sweepSpan(): number {
    return this.spec.timeframe ?? Number.POSITIVE_INFINITY;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const tf = this.spec.timeframe;
    if (tf === undefined) return; // without a timeframe every key's last value matters
    // An event at the watermark still compares with one exactly a timeframe before it.
    for (const [key, state] of this.keys) if (state.t < watermark - tf) this.forgetKey(key);
  }

  keyBytes(): number {
    return 96;
  }
  protected encodeKey(s: KeyState): unknown {
    return s;
  }
  protected decodeKey(data: unknown): KeyState {
    return data as KeyState;
  }
}

/** A single compare field reports its bare value; a list reports an object. */
function unwrap(values: Record<string, unknown>): unknown {
  const keys = Object.keys(values);
  return keys.length === 1 ? values[keys[0]!] : values;
}

export const changeKind: KindDescriptor<'change'> = {
  type: 'change',
  options: { compare_key: 'value', ignore_null: 'value', timeframe: 'duration' },
  required: ['compare_key'],
  condition: false,
  build: (raw, common) => ({
    ...common,
    type: 'change',
    compare_key: toList(raw.compare_key),
    ignore_null: raw.ignore_null !== false,
    ...(raw.timeframe !== undefined && { timeframe: parseDuration(raw.timeframe) }),
  }),
  runner: (spec, ctx) => new ChangeRunner(spec, ctx),
};
