import type { Event } from '../../ingest/index.ts';
import type { MetricAggType, RuleSpec } from '../../rules/index.ts';

/**
 * A slow, plain evaluator of the rule semantics of docs/time.md, written from the
 * definitions, for the differential test. It keeps every event it was given and
 * recomputes each window from scratch. No timers, no pruning, no incremental state.
 *
 * Time: the watermark before the i-th arrival is max(earlier times) − lateness. An event
 * whose time is below it is late. An instant D is decided when the watermark passes it
 * (or, at the end, when D ≤ the newest time). What is decided at D sees exactly the
 * events that arrived before. Event-evaluated conditions are evaluated at each on-time
 * event's own time, when it arrives; instant-evaluated ones at the instants each kind
 * names, when the watermark passes them, in time order, before the arriving event.
 */

export interface RefAlert {
  rule: string;
  key: string;
  at: number;
  discriminator: string;
  figures: Record<string, unknown>;
}

interface Arrived {
  t: number;
  event: Event;
}

const NONE = Number.NEGATIVE_INFINITY;

export function referenceAlerts(
  rule: RuleSpec,
  events: Event[],
  options: { lateness: number },
): RefAlert[] {
  const alerts: RefAlert[] = [];
  const arrived: Arrived[] = [];
  const silences = new Map<string, number>();
  let maxT = NONE;
  let observedFrom: number | undefined;
  /** Flatline: the instant each key may first be low (from its first event, or expect). */
  const flatFrom = new Map<string, number>();
  /** Expiry: instants already fired per key (a silence fires once). */
  const expired = new Set<string>();

  const keyOf = (e: Record<string, unknown>): string | undefined => {
    const parts: string[] = [];
    for (const f of rule.query_key) {
      const v = e[f];
      if (v === undefined || v === null) return undefined;
      parts.push(JSON.stringify(v));
    }
    return parts.join('|');
  };
  const matches = (e: Event) => keyOf(e) !== undefined;
  const ofKey = (key: string) => arrived.filter((a) => keyOf(a.event) === key);
  const inWindow = (list: Arrived[], from: number, to: number) =>
    list.filter((a) => a.t > from && a.t <= to);

  /** Realert: one alert per silence key per `realert`. */
  const fire = (
    key: string,
    at: number,
    discriminator: string,
    figures: Record<string, unknown>,
    silenceKey = key,
  ): boolean => {
    const until = silences.get(silenceKey) ?? NONE;
    if (at < until) return false;
    if (rule.realert > 0) silences.set(silenceKey, at + rule.realert);
    alerts.push({ rule: rule.name, key, at, discriminator, figures });
    return true;
  };

  const keys = () => {
    const set = new Set<string>();
    for (const a of arrived) {
      const k = keyOf(a.event);
      if (k !== undefined) set.add(k);
    }
    if (rule.type === 'flatline') for (const k of flatFrom.keys()) set.add(k);
    return [...set];
  };

  // --- what each kind decides at an instant D, over the events arrived so far ---

  const flatlineLow = (key: string, D: number): boolean => {
    if (rule.type !== 'flatline') return false;
    const from = flatFrom.get(key);
    if (from === undefined || D < from) return false;
    return inWindow(ofKey(key), D - rule.timeframe, D).length < rule.threshold;
  };

  const cardinalityAt = (key: string, D: number) => {
    if (rule.type !== 'cardinality') return undefined;
    const values = new Set<string>();
    for (const a of inWindow(ofKey(key), D - rule.timeframe, D)) {
      const v = a.event[rule.cardinality_field];
      if (v !== undefined && v !== null) values.add(JSON.stringify(v));
    }
    const n = values.size;
    if (rule.max_cardinality !== undefined && n > rule.max_cardinality) return ['max', n] as const;
    const full = observedFrom !== undefined && D - observedFrom >= rule.timeframe;
    if (rule.min_cardinality !== undefined && n < rule.min_cardinality && full)
      return ['min', n] as const;
    return undefined;
  };

  const spikeAt = (key: string, D: number) => {
    if (rule.type !== 'spike') return undefined;
    const list = ofKey(key);
    const tf = rule.timeframe;
    const cur = inWindow(list, D - tf, D).length;
    const ref = inWindow(list, D - 2 * tf, D - tf).length;
    if (cur < rule.threshold_cur || ref < rule.threshold_ref) return undefined;
    if (rule.spike_type !== 'down' && cur >= rule.spike_height * ref)
      return ['up', cur, ref] as const;
    if (rule.spike_type !== 'up' && cur <= ref / rule.spike_height)
      return ['down', cur, ref] as const;
    return undefined;
  };

  /** Instants at which an instant-evaluated kind looks, from the events arrived so far. */
  const instants = (key: string): number[] => {
    const out = new Set<number>();
    const list = ofKey(key);
    switch (rule.type) {
      case 'flatline': {
        const from = flatFrom.get(key);
        if (from !== undefined) out.add(from);
        for (const a of list) out.add(a.t + rule.timeframe);
        const until = silences.get(key);
        if (until !== undefined) out.add(until);
        break;
      }
      case 'expiry':
        for (const a of list) out.add(a.t + rule.ttl);
        break;
      case 'cardinality':
        // The instants a value leaves the window: covered just before, not at it.
        if (rule.min_cardinality !== undefined) {
          const field = rule.cardinality_field;
          const valueOf = (a: Arrived) => JSON.stringify(a.event[field] ?? null);
          for (const a of list) {
            if (a.event[field] === undefined || a.event[field] === null) continue;
            const D = a.t + rule.timeframe;
            const again = list.some((o) => valueOf(o) === valueOf(a) && o.t > a.t && o.t <= D);
            if (!again) out.add(D);
          }
        }
        break;
      case 'spike':
        if (rule.spike_type !== 'up')
          for (const a of list) {
            out.add(a.t + rule.timeframe);
            out.add(a.t + 2 * rule.timeframe);
          }
        break;
      default:
    }
    return [...out];
  };

  /** Decides one instant D of one key. */
  const decide = (key: string, D: number) => {
    switch (rule.type) {
      case 'flatline':
        if (flatlineLow(key, D)) {
          const count = inWindow(ofKey(key), D - rule.timeframe, D).length;
          if (fire(key, D, '', { count })) flatFrom.set(key, Math.max(D + 1, D + rule.realert));
        }
        break;
      case 'expiry': {
        // Silent since its newest event at or before D, which lies exactly ttl before D.
        let newest = NONE;
        for (const a of ofKey(key)) if (a.t <= D && a.t > newest) newest = a.t;
        if (newest + rule.ttl === D && !expired.has(`${key}\n${D}`)) {
          expired.add(`${key}\n${D}`);
          fire(key, D, '', {});
        }
        break;
      }
      case 'cardinality': {
        const c = cardinalityAt(key, D);
        if (c) fire(key, D, c[0], { cardinality: c[1] });
        break;
      }
      case 'spike': {
        const sp = spikeAt(key, D);
        if (sp) fire(key, D, sp[0], { spike_count: sp[1], reference_count: sp[2] });
        break;
      }
      default:
    }
  };

  /** Decides every instant in [from, to) (or [from, to] when `inclusive`), in time order. */
  const decideRange = (from: number, to: number, inclusive: boolean) => {
    const done = new Set<string>();
    for (;;) {
      let best: [number, string] | undefined;
      for (const key of keys()) {
        for (const D of instants(key)) {
          if (D < from || D > to || (!inclusive && D === to)) continue;
          if (done.has(`${key}\n${D}`)) continue;
          if (!best || D < best[0] || (D === best[0] && key < best[1])) best = [D, key];
        }
      }
      if (!best) return;
      done.add(`${best[1]}\n${best[0]}`);
      decide(best[1], best[0]);
    }
  };

  /** What an on-time event decides at its own instant. */
  const onTime = (key: string, e: Event, t: number, earlier: Arrived[]) => {
    const list = earlier.filter((a) => keyOf(a.event) === key);
    switch (rule.type) {
      case 'any':
        fire(key, t, '', {});
        break;
      case 'frequency': {
        const n = inWindow([...list, { t, event: e }], t - rule.timeframe, t).length;
        if (n >= rule.num_events) fire(key, t, '', {});
        break;
      }
      case 'metric_aggregation': {
        const values: number[] = [];
        for (const a of inWindow([...list, { t, event: e }], t - rule.timeframe, t)) {
          const v = a.event[rule.metric_agg_key];
          if (typeof v === 'number') values.push(v);
        }
        const value = agg(rule.metric_agg_type, values);
        if (value === undefined) break;
        if (rule.max_threshold !== undefined && value > rule.max_threshold)
          fire(key, t, 'above', { value, samples: values.length });
        else if (rule.min_threshold !== undefined && value < rule.min_threshold)
          fire(key, t, 'below', { value, samples: values.length });
        break;
      }
      case 'new_term': {
        const term: unknown[] = [];
        for (const f of rule.fields) {
          const v = e[f];
          if (v === undefined || v === null) {
            if (rule.alert_on_missing_field)
              fire(key, t, `missing:${f}`, { missing_field: f }, `${key}\u0003${f}`);
            return;
          }
          term.push(v);
        }
        const id = JSON.stringify(term);
        const seen = list.some(
          (a) =>
            rule.fields.every((f) => a.event[f] !== undefined && a.event[f] !== null) &&
            JSON.stringify(rule.fields.map((f) => a.event[f])) === id &&
            a.t > t - rule.terms_window_size,
        );
        if (!seen) fire(key, t, id, {}, `${key}\u0002${id}`);
        break;
      }
      case 'change': {
        const valueOf = (ev: Event) => rule.compare_key.map((f) => ev[f] ?? null);
        const counts = (ev: Event) => !rule.ignore_null || valueOf(ev).every((v) => v !== null);
        // The previous value: the newest earlier arrival (the latest to arrive on a tie).
        let previous: Arrived | undefined;
        for (const a of list) if (counts(a.event) && (!previous || a.t >= previous.t)) previous = a;
        if (!previous || t < previous.t) break;
        const before = JSON.stringify(valueOf(previous.event));
        const now = JSON.stringify(valueOf(e));
        if (before === now) break;
        if (rule.timeframe !== undefined && t - previous.t > rule.timeframe) break;
        fire(key, t, now, { old: before, new: now });
        break;
      }
      case 'cardinality': {
        const c = cardinalityAt(key, t);
        if (c) fire(key, t, c[0], { cardinality: c[1] });
        break;
      }
      case 'spike': {
        const sp = spikeAt(key, t);
        if (sp) fire(key, t, sp[0], { spike_count: sp[1], reference_count: sp[2] });
        break;
      }
      default:
    }
  };

  /** Whether an event takes part in the rule at all (kinds skip events lacking their field). */
  const relevant = (e: Event): boolean => {
    switch (rule.type) {
      case 'cardinality':
        return e[rule.cardinality_field] !== undefined && e[rule.cardinality_field] !== null;
      case 'metric_aggregation':
        return typeof e[rule.metric_agg_key] === 'number';
      case 'change':
        return !rule.ignore_null || rule.compare_key.every((f) => (e[f] ?? null) !== null);
      default:
        return true;
    }
  };

  for (const e of events) {
    const t = e['@timestamp'];
    const wmBefore = maxT - options.lateness;
    const late = t < wmBefore;
    if (!late && t > maxT) maxT = t;
    const wmAfter = maxT - options.lateness;
    if (observedFrom === undefined) {
      observedFrom = t;
      if (rule.type === 'flatline')
        for (const values of rule.expect)
          flatFrom.set(keyOf(values)!, observedFrom + rule.timeframe);
    }
    if (wmAfter > wmBefore) decideRange(wmBefore, wmAfter, false);
    const key = keyOf(e);
    if (key === undefined || !matches(e) || !relevant(e)) continue;
    const earlier = [...arrived];
    if (rule.type === 'flatline' && !flatFrom.has(key))
      flatFrom.set(key, Math.max(t + rule.timeframe, wmAfter, observedFrom + rule.timeframe));
    arrived.push({ t, event: e });
    if (!late) onTime(key, e, t, earlier);
  }
  if (maxT > NONE) decideRange(maxT - options.lateness, maxT, true);
  return alerts;
}

function agg(type: MetricAggType, values: number[]): number | undefined {
  if (type === 'count') return values.length;
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  switch (type) {
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'avg':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'min':
      return sorted[0];
    case 'max':
      return sorted[sorted.length - 1];
    default: {
      const p = Number(type.slice(1)) / 100;
      return sorted[Math.max(0, Math.ceil(p * values.length) - 1)];
    }
  }
}
