import type { Event } from '../../ingest/model/index.ts';
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

/** A firing's end: the key, the instant it resolved, and the instant of the alert that opened it. */
export interface RefResolution {
  key: string;
  at: number;
  since: number;
}

interface Arrived {
  t: number;
  event: Event;
  /** Arrival index. */
  i: number;
}

const NONE = Number.NEGATIVE_INFINITY;

export function referenceAlerts(
  rule: RuleSpec,
  events: Event[],
  options: { lateness: number; resolutions?: RefResolution[] },
): RefAlert[] {
  const alerts: RefAlert[] = [];
  const resolutions = options.resolutions ?? [];

  /*
   * Alert states, from docs/rules.md#alert-states. A firing opens with an announced alert
   * of a key that has none. It clears: condition kinds, at the first instant evaluated
   * (at an event, a `for` deadline, an instant of its own, or any window edge between
   * events) that finds the condition false; metric_aggregation between events only once
   * its window is empty; flatline and expiry, at a report of the key not before the
   * alert; any, new_term and change, resolve_after after their last occurrence (fired or
   * silenced). It resolves keep_firing_for after it cleared, unless the condition is
   * found holding (or, for flatline and expiry, fires) before. Only the newest instant
   * evaluated counts.
   */
  const K = rule.keep_firing_for ?? 0;
  const after = rule.resolve_after ?? rule.realert;
  const ends: 'condition' | 'report' | 'after' =
    rule.type === 'flatline' || rule.type === 'expiry'
      ? 'report'
      : rule.type === 'any' || rule.type === 'new_term' || rule.type === 'change'
        ? 'after'
        : 'condition';
  const firings = new Map<string, { since: number; seen: number; cleared: number }>();
  const resolveAt = (key: string, at: number) => {
    resolutions.push({ key, at, since: firings.get(key)!.since });
    firings.delete(key);
  };
  /** An instant of a condition kind evaluated: whether it holds. */
  const evaluatedAt = (key: string, t: number, holds: boolean) => {
    const f = firings.get(key);
    if (!f || t < f.seen) return;
    f.seen = t;
    if (holds) {
      if (f.cleared === Infinity) return;
      if (t < f.cleared + K) f.cleared = Infinity;
      else resolveAt(key, f.cleared + K);
      return;
    }
    if (f.cleared !== Infinity) return;
    f.cleared = t;
    if (K === 0) resolveAt(key, t);
  };
  /** An occurrence: `after` kinds last from their last one; a clearing report kind fires again. */
  const occurred = (key: string, t: number) => {
    const f = firings.get(key);
    if (!f) return;
    if (ends === 'report') f.seen = Math.max(f.seen, t);
    if (f.cleared !== Infinity && t >= f.cleared + K) return resolveAt(key, f.cleared + K);
    if (ends === 'after') f.cleared = Math.max(f.cleared, t + after);
    else if (f.cleared !== Infinity && t >= f.cleared) f.cleared = Infinity;
  };
  /** Instants between events at which a firing key is looked at, and resolution deadlines. */
  const firingInstants = (key: string): Array<[number, 'check' | 'due']> => {
    const f = firings.get(key);
    if (!f) return [];
    if (f.cleared !== Infinity)
      return ends === 'condition' && K === 0 ? [] : [[f.cleared + K, 'due']];
    if (ends !== 'condition') return [];
    const tf = (rule as { timeframe: number }).timeframe;
    const out: Array<[number, 'check' | 'due']> = [];
    for (const a of ofKey(key)) {
      out.push([a.t + tf, 'check']);
      if (rule.type === 'spike') out.push([a.t + 2 * tf, 'check']);
    }
    return out;
  };
  const decideFiring = (key: string, D: number, what: 'check' | 'due') => {
    const f = firings.get(key);
    if (!f) return;
    if (what === 'due') {
      if (f.cleared !== Infinity && f.cleared + K <= D) resolveAt(key, f.cleared + K);
      return;
    }
    if (f.cleared !== Infinity || D <= f.seen) return;
    if (rule.type === 'metric_aggregation') {
      const samples = inWindow(ofKey(key), D - rule.timeframe, D);
      if (samples.some((a) => typeof a.event[rule.metric_agg_key] === 'number')) {
        f.seen = D;
        return;
      }
    }
    evaluatedAt(key, D, heldAt(key, D) !== undefined);
  };
  const arrived: Arrived[] = [];
  /** Realert silences: until when, and the exponent of exponential_realert. */
  const silences = new Map<string, { until: number; exponent: number }>();
  /** `for`: since when each key's condition has held (from its first holding evaluation). */
  const pending = new Map<string, number>();
  /** flatline `forget_keys`: a fired key's events before this arrival index are forgotten. */
  const forgotten = new Map<string, number>();
  let maxT = NONE;
  let observedFrom: number | undefined;
  /** Flatline: the instant each key may first be low (from its first event, or expect). */
  const flatFrom = new Map<string, number>();
  /** Expiry: instants already fired per key (a silence fires once). */
  const expired = new Set<string>();
  /** Flatline: the keys in `expect` (never forgotten). */
  const expected = new Set<string>();

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
  const ofKey = (key: string) =>
    arrived.filter((a) => keyOf(a.event) === key && a.i >= (forgotten.get(key) ?? 0));
  /** expiry: an event's numeric, positive `ttl` field (seconds) overrides the rule's. */
  const ttlOf = (e: Event): number => {
    if (rule.type !== 'expiry') return 0;
    const v = e.ttl;
    return typeof v === 'number' && v > 0 ? v * 1000 : rule.ttl;
  };
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
    if (ends !== 'condition') occurred(key, at);
    const previous = silences.get(silenceKey);
    if (previous && at < previous.until) return false;
    if (rule.realert > 0) silences.set(silenceKey, nextSilence(previous, at));
    alerts.push({ rule: rule.name, key, at, discriminator, figures });
    if (!firings.has(key)) {
      firings.set(key, { since: at, seen: at, cleared: ends === 'after' ? at + after : Infinity });
      // An alert older than an instant the key was already evaluated at (an on-time event
      // out of order): its firing is evaluated at the newest such instant, with what is known now.
      const newest = lastEvaluated.get(key);
      if (ends === 'condition' && newest !== undefined && newest > at)
        evaluatedAt(key, newest, heldAt(key, newest) !== undefined);
    }
    return true;
  };
  /** Condition kinds: the newest instant each key was evaluated at. */
  const lastEvaluated = new Map<string, number>();

  /**
   * ElastAlert's exponential realert: each alert that comes within the current period of
   * the silence's end doubles the period, up to the ceiling; quiet time halves it back
   * once per period it spans.
   */
  const nextSilence = (previous: { until: number; exponent: number } | undefined, at: number) => {
    const r = rule.realert;
    const cap = rule.exponential_realert;
    if (cap === undefined) return { until: at + r, exponent: 0 };
    // A ceiling below realert caps every silence, the first too.
    if (!previous) return { until: at + Math.min(r, cap), exponent: 0 };
    let exponent = previous.exponent;
    let diff = at - previous.until;
    if (diff < r * 2 ** exponent) exponent++;
    else
      while (diff > r * 2 ** exponent && exponent > 0) {
        diff -= r * 2 ** exponent;
        exponent--;
      }
    if (r * 2 ** exponent >= cap) return { until: at + cap, exponent: Math.max(0, exponent - 1) };
    return { until: at + r * 2 ** exponent, exponent };
  };

  /**
   * A condition's value at instant t: without `for` a holding condition fires; with it,
   * it must hold from its first holding evaluation until `for` has passed, checked at
   * every evaluation and at the deadline (since + for, an instant of its own).
   */
  const condition = (
    key: string,
    t: number,
    held: readonly [string, Record<string, unknown>] | undefined,
  ) => {
    evaluatedAt(key, t, held !== undefined);
    if (held) {
      const since = pending.get(key);
      if (!rule.for) fire(key, t, held[0], held[1]);
      else if (since === undefined) pending.set(key, t);
      else if (t - since >= rule.for) fire(key, t, held[0], held[1]);
    } else pending.delete(key);
    lastEvaluated.set(key, Math.max(lastEvaluated.get(key) ?? NONE, t));
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
    // Without alert_on_new_data a key needs 2 × timeframe of history: its first event
    // (of those arrived so far) at least 2 tf before D.
    const first = Math.min(...list.map((a) => a.t));
    if (!rule.alert_on_new_data && D - first < 2 * tf) return undefined;
    if (cur < rule.threshold_cur || ref < rule.threshold_ref) return undefined;
    if (rule.spike_type !== 'down' && cur >= rule.spike_height * ref)
      return ['up', cur, ref] as const;
    if (rule.spike_type !== 'up' && cur <= ref / rule.spike_height)
      return ['down', cur, ref] as const;
    return undefined;
  };

  /** A condition kind's value at instant D (a discriminator and figures when it holds). */
  const heldAt = (key: string, D: number): [string, Record<string, unknown>] | undefined => {
    const list = ofKey(key);
    switch (rule.type) {
      case 'frequency':
        return inWindow(list, D - rule.timeframe, D).length >= rule.num_events
          ? ['', {}]
          : undefined;
      case 'metric_aggregation': {
        const values: number[] = [];
        for (const a of inWindow(list, D - rule.timeframe, D)) {
          const v = a.event[rule.metric_agg_key];
          if (typeof v === 'number') values.push(v);
        }
        const value = agg(rule.metric_agg_type, values);
        if (value === undefined) return undefined;
        if (rule.max_threshold !== undefined && value > rule.max_threshold)
          return ['above', { value, samples: values.length }];
        if (rule.min_threshold !== undefined && value < rule.min_threshold)
          return ['below', { value, samples: values.length }];
        return undefined;
      }
      case 'cardinality': {
        const c = cardinalityAt(key, D);
        return c ? [c[0], { cardinality: c[1] }] : undefined;
      }
      case 'spike': {
        const sp = spikeAt(key, D);
        return sp ? [sp[0], { spike_count: sp[1], reference_count: sp[2] }] : undefined;
      }
      default:
        return undefined;
    }
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
        const until = silences.get(key)?.until;
        if (until !== undefined) out.add(until);
        break;
      }
      case 'expiry':
        for (const a of list) out.add(a.t + ttlOf(a.event));
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
          if (fire(key, D, '', { count })) {
            if (rule.forget_keys && !expected.has(key)) {
              // Stops watching the key: a later report starts it afresh as a new key.
              forgotten.set(key, arrived.length);
              flatFrom.delete(key);
            } else flatFrom.set(key, Math.max(D + 1, silences.get(key)?.until ?? D + 1));
          }
        }
        break;
      case 'expiry': {
        // Silent since its newest event at or before D (the latest to arrive on a tie),
        // whose ttl ends exactly at D.
        let newest: Arrived | undefined;
        for (const a of ofKey(key)) if (a.t <= D && (!newest || a.t >= newest.t)) newest = a;
        if (newest && newest.t + ttlOf(newest.event) === D && !expired.has(`${key}\n${D}`)) {
          expired.add(`${key}\n${D}`);
          fire(key, D, '', {});
        }
        break;
      }
      default:
        // Condition kinds: a window edge of their own (spike, cardinality) or a `for`
        // deadline, at which the condition must still hold.
        condition(key, D, heldAt(key, D));
    }
  };

  /**
   * `for`: the deadline (first holding evaluation + for) is a check of its own, also when
   * the kind evaluates at the same instant (both see the same state and agree).
   */
  const decideDeadline = (key: string, D: number) => {
    if (rule.for && pending.get(key) === D - rule.for) condition(key, D, heldAt(key, D));
  };

  /** Decides every instant in [from, to) (or [from, to] when `inclusive`), in time order. */
  const decideRange = (from: number, to: number, inclusive: boolean) => {
    const done = new Set<string>();
    for (;;) {
      // Firings first: their instants (a deadline may lie before `from`: a late report
      // cleared it there) compete with the kinds' below.
      let firing: [number, string, 'check' | 'due'] | undefined;
      for (const key of firings.keys()) {
        for (const [D, what] of firingInstants(key)) {
          if ((what === 'check' && D < from) || D > to || (!inclusive && D === to)) continue;
          if (what === 'check' && done.has(`${key}\n${D}\ncheck`)) continue;
          if (!firing || D < firing[0] || (D === firing[0] && key < firing[1]))
            firing = [D, key, what];
        }
      }
      let best: [number, string, boolean] | undefined;
      for (const key of keys()) {
        const since = pending.get(key);
        const deadline = since !== undefined && rule.for ? [since + rule.for] : [];
        for (const [list, isDeadline] of [
          [instants(key), false],
          [deadline, true],
        ] as const) {
          for (const D of list) {
            if (D < from || D > to || (!inclusive && D === to)) continue;
            if (done.has(`${key}\n${D}\n${isDeadline}`)) continue;
            if (!best || D < best[0] || (D === best[0] && key < best[1]))
              best = [D, key, isDeadline];
          }
        }
      }
      // A resolution due at an instant comes before the kinds' decisions there: the
      // condition must hold again strictly before cleared + keep_firing_for to keep the
      // firing going (docs/rules.md#alert-states), and what fires at that instant opens a
      // firing of its own.
      if (
        firing &&
        (!best || firing[0] < best[0] || (firing[0] === best[0] && firing[2] === 'due'))
      ) {
        if (firing[2] === 'check') done.add(`${firing[1]}\n${firing[0]}\ncheck`);
        decideFiring(firing[1], firing[0], firing[2]);
        continue;
      }
      if (!best) return;
      done.add(`${best[1]}\n${best[0]}\n${best[2]}`);
      if (best[2]) decideDeadline(best[1], best[0]);
      else decide(best[1], best[0]);
    }
  };

  /** What an on-time event decides at its own instant. */
  const onTime = (key: string, e: Event, t: number, earlier: Arrived[]) => {
    const list = earlier.filter((a) => keyOf(a.event) === key);
    switch (rule.type) {
      case 'any':
        fire(key, t, '', {});
        break;
      case 'frequency':
      case 'metric_aggregation':
      case 'cardinality':
      case 'spike':
        condition(key, t, heldAt(key, t));
        break;
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
        for (const values of rule.expect) {
          flatFrom.set(keyOf(values)!, observedFrom + rule.timeframe);
          expected.add(keyOf(values)!);
        }
    }
    if (wmAfter > wmBefore) decideRange(wmBefore, wmAfter, false);
    const key = keyOf(e);
    if (key === undefined || !matches(e) || !relevant(e)) continue;
    const earlier = [...arrived];
    if (rule.type === 'flatline' && !flatFrom.has(key))
      flatFrom.set(key, Math.max(t + rule.timeframe, wmAfter, observedFrom + rule.timeframe));
    arrived.push({ t, event: e, i: arrived.length });
    if (ends === 'report') {
      // A report of a firing key not before its newest alert (fired again, silenced
      // or not) clears it.
      const f = firings.get(key);
      if (f && f.cleared === Infinity && t >= f.seen) {
        f.cleared = t;
        if (K === 0) resolveAt(key, t);
      }
    }
    if (!late) onTime(key, e, t, earlier);
    const f = firings.get(key);
    if (f && rule.type === 'cardinality') {
      // Behind the newest instant decided or evaluated (late, or on time out of order),
      // a value that counts there has the key's firing evaluated there at once.
      const at = Math.max(wmAfter, f.seen);
      if (t < at && t + rule.timeframe > at) evaluatedAt(key, at, heldAt(key, at) !== undefined);
    }
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
