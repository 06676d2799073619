import type { Event } from '../../ingest/model/index.ts';
import { RuleRunner } from '../runner.ts';
import type { NewTermRule } from '../types.ts';
import { durationOr, type KindDescriptor, toList } from './kind.ts';

/**
 * A value (or tuple of values, for composite `fields`) never seen within
 * `terms_window_size`. Terms live in a Map — a set, not ElastAlert's top-50 list —
 * scoped per query_key when one is given, and pruned once they age out of the window.
 */
export class NewTermRunner extends RuleRunner<NewTermRule, never> {
  /**
   * scope key + term → last seen (event time). Bounded by maxTerms; the per-term and
   * per-missing-field realert silences are bounded by it too.
   */
  readonly terms = new Map<string, number>();
  /**
   * A lower bound of the oldest last-seen time of the terms held (-Infinity: not known,
   * after a restore): a sweep whose horizon is below it would drop none, and skips the walk.
   */
  private oldestSeen = Number.NEGATIVE_INFINITY;
  readonly maxTerms = this.spec.max_terms ?? this.ctx.maxTermsPerRule;
  /** New terms refused at maxTerms since this runner was built. */
  termsRefused = 0;
  protected override readonly resolution = 'after';
  /** Spec values read per event, copied onto the runner (the spec is cold at 1,000 rules). */
  private readonly fields = this.spec.fields;
  private readonly windowSize = this.spec.terms_window_size;
  private readonly alertOnMissing = this.spec.alert_on_missing_field;

  /** Its keys are not capped (terms are): firings are bounded by the term cap. */
  protected override get maxEpisodes(): number {
    return this.maxTerms;
  }

  /** Holds no state per key: what grows is terms, admitted by admitTerm. */
  override admit(): boolean {
    return true;
  }

  override admission(): ReturnType<RuleRunner['admission']> {
    return { ...super.admission(), cap: Number.POSITIVE_INFINITY };
  }

  /** A term (or missing-field silence) not held yet is refused once the rule holds maxTerms. */
  private admitTerm(term: string, silenceKey: string): boolean {
    // Below the cap (the usual case) no lookup: new terms are frequent.
    if (this.terms.size < this.maxTerms && this.silenceCount() < this.maxTerms) return true;
    if (this.terms.has(term) || this.isSilenced(silenceKey)) return true;
    this.termsRefused++;
    this.ctx.refused(this, 'term', this.maxTerms);
    return false;
  }

  onEvent(event: Event, key: string, t: number): void {
    // A late event teaches its term (windows still open will know it) but alerts nowhere.
    const late = this.isLate(t);
    const fields = this.fields;
    let term = key;
    for (const f of fields) {
      const v = event[f];
      if (v === undefined || v === null) {
        if (this.alertOnMissing && !late) {
          const silenceKey = `${key}\u0003${f}`;
          // Without realert nothing is kept per missing field.
          if (this.spec.realert > 0 && !this.admitTerm(silenceKey, silenceKey)) return;
          this.rememberKey(key, event);
          this.fire(
            key,
            t,
            { figures: { missing_field: f }, sample: event, discriminator: `missing:${f}` },
            silenceKey,
          );
        }
        return;
      }
      term += `\u0002${typeof v === 'string' ? v : JSON.stringify(v)}`;
    }
    const seen = this.terms.get(term);
    if (seen === undefined && !this.admitTerm(term, term)) return;
    if (!late && (seen === undefined || seen <= t - this.windowSize)) {
      // The term's values, made only when it alerts (most events lack the fields, or
      // carry a term already known): no object per event.
      const values: Record<string, unknown> = {};
      for (const f of fields) values[f] = event[f];
      this.rememberKey(key, event);
      this.fire(
        key,
        t,
        { figures: { term: values, fields }, sample: event, discriminator: term },
        term,
      );
    }
    if (seen === undefined || t > seen) {
      this.touched(term);
      this.terms.set(term, t);
      // A later time for a term held leaves the bound a bound.
      if (seen === undefined && t < this.oldestSeen) this.oldestSeen = t;
    }
  }

  /** Seeds terms learned elsewhere (the index, a previous run) without alerting. */
  seed(key: string, values: Record<string, unknown>, lastSeen: number): void {
    let term = key;
    for (const f of this.spec.fields) {
      const v = values[f];
      term += `\u0002${typeof v === 'string' ? v : JSON.stringify(v)}`;
    }
    const seen = this.terms.get(term);
    if (seen === undefined && !this.admitTerm(term, term)) return;
    if (seen === undefined || lastSeen > seen) {
      this.touched(term);
      this.terms.set(term, lastSeen);
      if (seen === undefined && lastSeen < this.oldestSeen) this.oldestSeen = lastSeen;
    }
  }

  override sweepSpan(): number {
    return this.spec.terms_window_size;
  }

  override sweep(watermark: number): void {
    super.sweep(watermark);
    const horizon = watermark - this.spec.terms_window_size;
    if (horizon >= this.oldestSeen) {
      let oldest = Number.POSITIVE_INFINITY;
      for (const [term, seen] of this.terms) {
        if (seen > horizon) {
          if (seen < oldest) oldest = seen;
          continue;
        }
        this.touched(term);
        this.terms.delete(term);
      }
      this.oldestSeen = oldest;
    }
    // Key objects are only needed while an alert is built.
    if (this.changed !== undefined) for (const key of this.keyValues.keys()) this.touched(key);
    this.keyValues.clear();
  }

  termCount(): number {
    return this.terms.size;
  }

  keyBytes(): number {
    return 0;
  }
  protected encodeKey(): unknown {
    return null;
  }
  protected decodeKey(): never {
    throw new Error('new_term rules hold terms, not key state');
  }
  protected override extraIds(): Iterable<string> {
    return this.terms.keys();
  }
  protected override encodeEntryExtra(id: string): unknown {
    return this.terms.get(id);
  }
  protected override decodeEntryExtra(id: string, data: unknown): void {
    this.terms.set(id, data as number);
    this.oldestSeen = Number.NEGATIVE_INFINITY;
  }
  protected override encodeExtra(): unknown {
    return [...this.terms];
  }
  protected override decodeExtra(data: unknown): void {
    this.terms.clear();
    for (const [term, seen] of (data as Array<[string, number]>) ?? []) this.terms.set(term, seen);
    this.oldestSeen = Number.NEGATIVE_INFINITY;
  }
}

export const newTermKind: KindDescriptor<'new_term'> = {
  type: 'new_term',
  options: {
    fields: 'value',
    terms_window_size: 'duration',
    alert_on_missing_field: 'value',
    max_terms: 'value',
  },
  required: ['fields'],
  condition: false,
  build: (raw, common) => ({
    ...common,
    type: 'new_term',
    fields: toList(raw.fields),
    terms_window_size: durationOr(raw.terms_window_size, 30 * 86_400_000),
    alert_on_missing_field: raw.alert_on_missing_field === true,
    ...(raw.max_terms !== undefined && { max_terms: raw.max_terms as number }),
  }),
  runner: (spec, ctx) => new NewTermRunner(spec, ctx),
};
