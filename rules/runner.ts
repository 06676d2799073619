import { hash } from 'node:crypto';
import type { Event } from '../ingest/model/index.ts';
import type { IdSet } from './id-set.ts';
import type { Alert, RuleSpec, StateChange } from './types.ts';

/** What a rule runner needs from the engine: time, timers and the alert sink. */
export interface EngineContext {
  /** Highest event time seen minus the allowed lateness (or the live clock's). */
  readonly watermark: number;
  /** Event time from which the engine has been observing (for "a full timeframe observed"). */
  readonly observedFrom: number;
  /** Alerts before this event time update state but are not emitted (backtest `--from`). */
  readonly alertFrom: number;
  schedule(runner: RuleRunner, key: string, at: number, tag: number): void;
  emit(alert: Alert): void;
  /** A state change (docs/rules.md#alert-states), after alertFrom only. */
  transition(change: StateChange): void;
  /**
   * Which changes are built at all: a pending or inactive change costs a hash, and a
   * flapping `for` condition can make one per event, so without a listener for them
   * none is built.
   */
  readonly announce: 'all' | 'resolved' | 'none';
  /** Caps for rules that set no max_keys / max_terms of their own. */
  readonly maxKeysPerRule: number;
  readonly maxTermsPerRule: number;
  /** A new key or term was refused at the rule's cap. */
  refused(runner: RuleRunner, what: 'key' | 'term', cap: number): void;
}

interface Silence {
  until: number;
  exponent: number;
}

/**
 * The empty map and set every runner's rarely used maps start as (see RuleRunner's
 * `silences`): shared, so never stored into; reads, deletes and clears leave them empty.
 */
const NONE = new Map<string, never>();
const none = <V>(): Map<string, V> => NONE as Map<string, unknown> as Map<string, V>;
const NONE_SET: Set<string> = new Set();
const NO_DECISIONS = { at: Number.NEGATIVE_INFINITY, keys: NONE_SET };

/** Timer tags shared by all runners; kinds use TAG_KIND for their own deadlines. */
export const TAG_FOR = 1;
export const TAG_KIND = 2;
/** A firing's resolution deadline (Episode.due). */
export const TAG_RESOLVE = 3;
/** A firing condition's next re-check between events (Episode.check). */
export const TAG_CHECK = 4;

/**
 * One firing of a rule and key, from the alert that opened it until it resolves
 * (docs/rules.md#alert-states). Held in `episodes`, at most `maxEpisodes` of them, and
 * deleted when it resolves: what a firing costs ends with it.
 */
interface Episode {
  /** The alert that opened it, its instant, and the key object (the key's own state may be gone). */
  alert: string;
  at: number;
  key: Record<string, unknown>;
  /**
   * The newest instant it was evaluated at: older evaluations (out of order) change
   * nothing. flatline, expiry: the newest instant it fired (again), before which a report
   * is older news than the key being found silent, and clears nothing.
   */
  seen: number;
  /**
   * The instant its condition cleared (+Infinity while it holds): it resolves at
   * cleared + keep_firing_for unless the condition holds again before. Event kinds
   * (any, new_term, change) clear resolve_after after their last occurrence.
   */
  cleared: number;
  /** The pending resolution timer (+Infinity: none); one per episode, moved lazily. */
  due: number;
  /** The pending re-check timer of a condition kind (+Infinity: none). */
  check: number;
}

/** How a kind's firing ends (docs/rules.md#alert-states). */
export type Resolution = 'condition' | 'report' | 'after';

export interface Evaluation {
  holds: boolean;
  figures: Record<string, unknown>;
  sample?: Event;
  /** Distinguishes alerts of one key at one instant (e.g. spike up vs down). */
  discriminator?: string;
}

/** A condition that does not hold carries no figures: one shared object, no garbage per event. */
export const NOT_HOLDING: Evaluation = Object.freeze({
  holds: false,
  figures: Object.freeze({}),
});

/**
 * One class per rule type extends this. The base owns what every type shares: keys,
 * `realert` / `exponential_realert`, `for`, alert ids, and the plain-data snapshot of
 * that shared state. Kinds own their windows.
 */
export abstract class RuleRunner<S extends RuleSpec = RuleSpec, K = unknown> {
  declare readonly keys: Map<string, K>;
  /** Key string → key object for the alert (`{ 'service.name': 'web' }`). */
  declare protected readonly keyValues: Map<string, Record<string, unknown>>;
  /**
   * This map and the rarely used ones below (pendingSince, episodes, quietPending) start
   * as a shared empty one (NONE) and get a map of their own at their first store (the
   * `own*` methods; every store goes through one): most rules never fire or hold a `for`,
   * and these empty maps and sets (forDecided's too) were 38% of a new engine's heap
   * (a 1,000-rule engine's 2.5 MB before any event, 1.5 MB without them), allocated and
   * then copied by the young generation's collections with the rest of a new engine.
   * Reads, deletes and clears need no map of their own.
   */
  declare private silences: Map<string, Silence>;
  /**
   * `silences.size`, kept in step at each change of it: the engine reads it per event
   * and rule from the runner (already in cache for the call) instead of the map.
   */
  declare silencesHeld: number;
  /**
   * No silence is dropped by a sweep at a watermark below this (a lower bound of the
   * earliest end of what silences hold; -Infinity: not known, after a restore). A sweep
   * below it skips the walk over them: most sweeps of most rules find none to drop.
   */
  declare private silencesEnd: number;
  declare private pendingSince: Map<string, number>;
  /**
   * The sizes of pendingSince, episodes and quietPending, kept in step at each change of
   * them (see `held`): a condition's evaluation and an event kind's occurrence test them
   * per event and rule, and reading them here, on the runner, leaves the maps untouched
   * while they are empty (most rules, most of the time). With 1,000 rules the maps are
   * not in cache between a rule's events: each size read was a miss.
   */
  declare private pendingHeld: number;
  declare private episodesHeld: number;
  declare private quietHeld: number;
  /**
   * Firing keys (see Episode). Keyed by the key string, a value the sender picks: bounded
   * by maxEpisodes (a firing past it is announced but not tracked, counted in
   * untrackedFirings), and each entry is deleted when it resolves.
   */
  declare private episodes: Map<string, Episode>;
  /**
   * Keys in pendingSince whose end is not announced as `inactive`: their pending fired,
   * or began while they were firing. A subset of pendingSince's keys, deleted with them.
   */
  declare private quietPending: Set<string>;
  /**
   * The `for` deadlines decided at the latest instant one was (see onTimer). The shared
   * initial value is replaced before any key is added: a timer's instant is finite.
   */
  declare private forDecided: { at: number; keys: Set<string> };
  /** Firings not tracked (no resolution will follow) because the rule held maxEpisodes. */
  declare untrackedFirings: number;
  /** How this kind's firings end; set by the kind. */
  declare protected readonly resolution: Resolution;
  declare private readonly keyFields: string[];
  /** The only query_key field, or undefined with none or several (keyOf per event). */
  declare private readonly keyField: string | undefined;
  declare lastAlertAt: string | undefined;
  declare alertCount: number;
  /** Keys most of the rule's state is keyed by: `max_keys`, or the engine's default. */
  declare readonly maxKeys: number;
  /**
   * `for`, copied from the spec: each evaluation reads it, and at 1,000 rules the spec
   * object is out of cache between a rule's events (a miss per evaluation).
   */
  declare private readonly hold: number | undefined;
  /** New keys refused at maxKeys since this runner was built. */
  declare keysRefused: number;
  /**
   * Incremental snapshots (rules/changes.ts): the entries (see `entry`) touched since the
   * last capture began; undefined while changes are not tracked (backtest, tests).
   */
  declare changed: IdSet | undefined;
  /**
   * An empty IdSet for the next capture's `changed` (the last incremental capture's
   * pending set, drained), so a capture makes none per rule.
   */
  declare spareChanged: IdSet | undefined;
  /** While a capture runs: called with an entry before it changes (copy-on-write). */
  declare beforeChange: ((id: string) => void) | undefined;

  declare readonly spec: S;
  declare protected readonly ctx: EngineContext;

  /**
   * Fields are assigned here, not declared with initializers: the kinds' nine classes
   * share this constructor, and a class field's definition on instances of that many
   * classes took a slow path (about 3 µs per runner against 0.3 for assignments).
   */
  constructor(spec: S, ctx: EngineContext) {
    this.spec = spec;
    this.ctx = ctx;
    this.keys = new Map<string, K>();
    this.keyValues = new Map<string, Record<string, unknown>>();
    this.silences = none<Silence>();
    this.silencesHeld = 0;
    this.silencesEnd = Number.NEGATIVE_INFINITY;
    this.pendingSince = none<number>();
    this.pendingHeld = 0;
    this.episodesHeld = 0;
    this.quietHeld = 0;
    this.episodes = none<Episode>();
    this.quietPending = NONE_SET;
    this.forDecided = NO_DECISIONS;
    this.untrackedFirings = 0;
    this.resolution = 'condition';
    this.keyFields = spec.query_key;
    this.keyField = spec.query_key.length === 1 ? spec.query_key[0] : undefined;
    this.lastAlertAt = undefined;
    this.alertCount = 0;
    this.maxKeys = spec.max_keys ?? ctx.maxKeysPerRule;
    this.hold = spec.for;
    this.keysRefused = 0;
    this.changed = undefined;
    this.spareChanged = undefined;
    this.beforeChange = undefined;
  }

  /** Firings held at most: maxKeys (new_term: its term cap, since its keys are not capped). */
  protected get maxEpisodes(): number {
    return this.maxKeys;
  }

  /** Firing keys held now, for stats and tests. */
  get firingCount(): number {
    return this.episodes.size;
  }

  /**
   * Key admission, before `onEvent`: keys are values the sender picks, so a rule holds
   * state for at most maxKeys of them. `keys` (windows) and `silences` (realert, which
   * outlive a forgotten key's window) are each bounded by it; `keyValues` and
   * `pendingSince` hold only keys that are in one of them. A key already held is always
   * admitted. Past the cap a new key is refused, not made room for: evicting the least
   * recently seen key would let a flood of new keys push out the keys that matter
   * (and, for flatline, fire a false alert for each key evicted).
   */
  admit(key: string): boolean {
    // Below the cap (the usual case) no lookup: this runs per event and rule.
    if (this.keys.size < this.maxKeys && this.silences.size < this.maxKeys) return true;
    if (this.keys.has(key) || this.silences.has(key)) return true;
    this.keysRefused++;
    this.ctx.refused(this, 'key', this.maxKeys);
    return false;
  }

  /**
   * What `admit` bounds, for the engine to test below the cap without a call per event
   * and rule (a call on runners of nine kinds cannot be inlined): admit needs calling
   * only once `keys` holds `cap` entries or `silencesHeld` reaches it.
   */
  admission(): { keys: Map<string, unknown>; cap: number } {
    return { keys: this.keys, cap: this.maxKeys };
  }

  /** Silences held (new_term bounds its per-term silences with its term cap). */
  protected silenceCount(): number {
    return this.silences.size;
  }

  protected isSilenced(silenceKey: string): boolean {
    return this.silences.has(silenceKey);
  }

  /** The key string of an event, or undefined when it lacks a query_key field. */
  keyOf(event: Event): string | undefined {
    const field = this.keyField;
    if (field !== undefined) {
      const v = event[field];
      if (v === undefined || v === null) return undefined;
      return typeof v === 'string' ? v : `\u0001${JSON.stringify(v)}`;
    }
    const fields = this.keyFields;
    if (fields.length === 0) return '';
    let key = '';
    for (let i = 0; i < fields.length; i++) {
      const v = event[fields[i]!];
      if (v === undefined || v === null) return undefined;
      key += (i === 0 ? '' : '\u0000') + (typeof v === 'string' ? v : `\u0001${JSON.stringify(v)}`);
    }
    return key;
  }

  protected rememberKey(
    key: string,
    event: Event | undefined,
    values?: Record<string, unknown>,
  ): void {
    if (this.keyValues.has(key)) return;
    if (values) {
      this.keyValues.set(key, values);
      return;
    }
    const obj: Record<string, unknown> = {};
    for (const f of this.keyFields) obj[f] = event?.[f];
    this.keyValues.set(key, obj);
  }

  /**
   * The sweep's forgetKey, for a key whose windows have emptied. A key whose `for`
   * condition is pending keeps its state: the condition is checked at evaluations only,
   * so it stays pending until one finds it false, and dropping it would make the next
   * evaluation depend on when the sweep ran. Such keys stay bounded by max_keys.
   */
  protected forgetIdleKey(key: string): void {
    if (this.pendingSince.has(key)) return;
    this.forgetKey(key);
  }

  protected forgetKey(key: string): void {
    this.touched(key);
    this.keys.delete(key);
    this.keyValues.delete(key);
    if (this.pendingHeld !== 0 || this.quietHeld !== 0) {
      this.pendingSince.delete(key);
      this.quietPending.delete(key);
      this.held();
    }
  }

  /** The runner's own silences map, made at its first store (see `silences`). */
  private ownSilences(): Map<string, Silence> {
    if (this.silences === NONE) this.silences = new Map();
    return this.silences;
  }

  private ownPending(): Map<string, number> {
    if (this.pendingSince === NONE) this.pendingSince = new Map();
    return this.pendingSince;
  }

  private ownEpisodes(): Map<string, Episode> {
    if (this.episodes === NONE) this.episodes = new Map();
    return this.episodes;
  }

  private ownQuiet(): Set<string> {
    if (this.quietPending === NONE_SET) this.quietPending = new Set();
    return this.quietPending;
  }

  /** Brings pendingHeld, episodesHeld and quietHeld in step with their maps' sizes. */
  private held(): void {
    this.pendingHeld = this.pendingSince.size;
    this.episodesHeld = this.episodes.size;
    this.quietHeld = this.quietPending.size;
  }

  /**
   * An event that passed the filter, with its key and event time. When the watermark
   * has already passed t (`isLate`), the event may only change what instants still
   * open will see: no evaluation, no alert at t.
   */
  abstract onEvent(event: Event, key: string, t: number): void;

  /** Whether instant t has already been decided: the watermark passed it. */
  protected isLate(t: number): boolean {
    return t < this.ctx.watermark;
  }

  /** A deadline this runner scheduled has been passed by the watermark. */
  onTimer(key: string, at: number, tag: number): void {
    if (tag === TAG_RESOLVE || tag === TAG_CHECK) {
      this.onEpisodeTimer(key, at, tag);
      return;
    }
    if (tag !== TAG_FOR) return;
    const since = this.pendingSince.get(key);
    if (since === undefined || since + this.spec.for! !== at) return;
    // A pending that ended and began again at the same instant (evaluated out of order)
    // set its deadline twice: an instant is decided once. Timers of one instant all run
    // in one pass, so this needs no snapshot.
    if (this.forDecided.at !== at) this.forDecided = { at, keys: new Set() };
    else if (this.forDecided.keys.has(key)) return;
    this.forDecided.keys.add(key);
    const evaluation = this.evaluate(key, at);
    if (evaluation) this.condition(key, at, evaluation);
  }

  /** Condition types re-evaluate at a given time for `for`. */
  protected evaluate(_key: string, _t: number): Evaluation | undefined {
    return undefined;
  }

  /**
   * Reports a condition's value at time t. Without `for` a holding condition fires;
   * with it, the condition must hold from its first holding evaluation until `for`
   * has passed, checked at every event and at the deadline.
   */
  protected condition(key: string, t: number, e: Evaluation): void {
    // Without a firing key (the usual case) this costs one size test per evaluation.
    const firing = this.episodesHeld !== 0 && this.evaluated(key, t, e.holds);
    if (!e.holds) {
      // Most keys have no pending `for`: a size test, not a lookup, per evaluation.
      if (this.pendingHeld !== 0 && this.pendingSince.delete(key)) {
        // A pending that fired, or started while the key was firing, ends without a word.
        const quiet = this.quietHeld !== 0 && this.quietPending.delete(key);
        this.held();
        if (!quiet && !firing && this.ctx.announce === 'all')
          this.announce(key, t, 'inactive', alertId(this.spec.name, key, t, 'inactive'));
      }
      return;
    }
    const hold = this.hold;
    if (!hold) {
      this.fire(key, t, e);
      return;
    }
    const since = this.pendingSince.get(key);
    if (since === undefined) {
      this.ownPending().set(key, t);
      this.ctx.schedule(this, key, t + hold, TAG_FOR);
      if (this.episodes.has(key)) this.ownQuiet().add(key);
      else if (this.ctx.announce === 'all')
        this.announce(key, t, 'pending', alertId(this.spec.name, key, t, 'pending'));
      this.held();
      return;
    }
    if (t - since >= hold) {
      const fired = this.fire(key, t, {
        ...e,
        figures: { ...e.figures, pending_since: new Date(since).toISOString() },
      });
      if (fired) {
        this.ownQuiet().add(key);
        this.held();
      }
    }
  }

  /**
   * Emits an alert unless `realert` silences it. The silence is per rule and key by
   * default; new_term silences per term (`silenceKey`). Returns whether it fired.
   */
  protected fire(key: string, t: number, e: Omit<Evaluation, 'holds'>, silenceKey = key): boolean {
    // An occurrence, announced or silenced: event kinds' firings last from their last one,
    // and a presence kind's clearing ends when it fires again.
    if (this.resolution !== 'condition' && this.episodesHeld !== 0) this.occurred(key, t);
    const silence = this.silences.get(silenceKey);
    if (silence && t < silence.until) return false;
    if (this.spec.realert > 0) {
      if (silenceKey !== key) this.touched(silenceKey);
      const next = this.nextSilence(silence, t);
      this.ownSilences().set(silenceKey, next);
      this.silencesHeld = this.silences.size;
      const end = next.until + this.remembered(next);
      if (end < this.silencesEnd) this.silencesEnd = end;
    }
    const id = alertId(this.spec.name, silenceKey, t, e.discriminator ?? '');
    const opened = !this.episodes.has(key) && this.open(key, t, id);
    if (t < this.ctx.alertFrom) {
      if (opened) this.evaluateOpened(key, t);
      return true;
    }
    const at = new Date(t).toISOString();
    const alert: Alert = {
      id,
      rule: this.spec.name,
      type: this.spec.type,
      key: this.keyValues.get(key) ?? {},
      at,
      figures: e.figures,
      labels: this.spec.labels,
      actions: this.spec.actions,
    };
    if (this.spec.description !== undefined) alert.description = this.spec.description;
    if (e.sample !== undefined) alert.sample = e.sample;
    this.lastAlertAt = at;
    this.alertCount++;
    this.ctx.emit(alert);
    if (opened) this.evaluateOpened(key, t);
    return true;
  }

  // --- alert states (docs/rules.md#alert-states) ---

  /** keep_firing_for, 0 without. */
  private get keep(): number {
    return this.spec.keep_firing_for ?? 0;
  }

  /** An announced alert opens a firing for a key that has none (false: past the cap, untracked). */
  private open(key: string, t: number, id: string): boolean {
    if (this.episodes.size >= this.maxEpisodes) {
      this.untrackedFirings++;
      return false;
    }
    const ep: Episode = {
      alert: id,
      at: t,
      key: this.keyValues.get(key) ?? {},
      seen: t,
      cleared: Number.POSITIVE_INFINITY,
      due: Number.POSITIVE_INFINITY,
      check: Number.POSITIVE_INFINITY,
    };
    this.ownEpisodes().set(key, ep);
    this.held();
    if (this.resolution === 'after') this.occurred(key, t);
    return true;
  }

  /**
   * A condition kind's new firing, once its alert is out. An on-time event out of order
   * fires at an instant older than one the key was already evaluated at: the firing is
   * evaluated there at once (it may no longer hold), then goes on forward from there.
   */
  private evaluateOpened(key: string, t: number): void {
    if (this.resolution !== 'condition') return;
    const ep = this.episodes.get(key)!;
    const newest = this.newestEvaluated(key);
    if (newest > t) this.evaluated(key, newest, this.evaluate(key, newest)?.holds ?? true);
    else this.scheduleCheck(key, ep, t);
  }

  /**
   * Condition kinds: the newest instant the key was evaluated at (its newest on-time
   * event: instants decided between events all lie before the watermark).
   */
  protected newestEvaluated(_key: string): number {
    return Number.NEGATIVE_INFINITY;
  }

  /**
   * A condition kind's evaluation of a key at t (events, `for` deadlines, kind timers,
   * re-checks). Only the newest instant counts: an on-time event out of order does not
   * rewrite what a later one decided.
   */
  private evaluated(key: string, t: number, holds: boolean): boolean {
    const ep = this.episodes.get(key);
    if (!ep) return false;
    if (t < ep.seen) {
      // An on-time event out of order: its instant is decided, but it may leave a window
      // after the newest one evaluated, and before the pending re-check.
      this.recheckFrom(key, ep, ep.seen);
      return true;
    }
    ep.seen = t;
    if (holds) {
      if (ep.cleared === Number.POSITIVE_INFINITY) {
        // An event that entered a window may leave it: with no re-check pending (the
        // condition held with no event left to leave), the next one is from here.
        this.scheduleCheck(key, ep, t);
        return true;
      }
      // Held again: within keep_firing_for the firing goes on, past it the firing
      // resolved at its deadline (the timer had not run yet) and this is a new one.
      if (t < ep.cleared + this.keep) {
        ep.cleared = Number.POSITIVE_INFINITY;
        this.scheduleCheck(key, ep, t);
      } else this.resolve(key, ep, ep.cleared + this.keep);
      return true;
    }
    if (ep.cleared === Number.POSITIVE_INFINITY) this.clear(key, ep, t);
    return true;
  }

  /** event kinds: an occurrence (fired or silenced); presence kinds: the key is absent again. */
  private occurred(key: string, t: number): void {
    const ep = this.episodes.get(key);
    if (!ep) return;
    if (this.resolution === 'after') {
      const after = this.spec.resolve_after ?? this.spec.realert;
      if (ep.cleared !== Number.POSITIVE_INFINITY && t >= ep.cleared + this.keep) {
        this.resolve(key, ep, ep.cleared + this.keep);
        return;
      }
      if (t + after > ep.cleared || ep.cleared === Number.POSITIVE_INFINITY) {
        ep.cleared = t + after;
        this.scheduleDue(key, ep);
      }
      return;
    }
    if (t > ep.seen) ep.seen = t;
    if (ep.cleared === Number.POSITIVE_INFINITY || t < ep.cleared) return;
    if (t < ep.cleared + this.keep) ep.cleared = Number.POSITIVE_INFINITY;
    else this.resolve(key, ep, ep.cleared + this.keep);
  }

  /**
   * flatline, expiry: the key reported at t. A report not before the firing's newest
   * alert clears it (a late report from before the key was last found silent does not).
   */
  protected reported(key: string, t: number): void {
    if (this.episodesHeld === 0) return;
    const ep = this.episodes.get(key);
    if (!ep || t < ep.seen || ep.cleared !== Number.POSITIVE_INFINITY) return;
    this.clear(key, ep, t);
  }

  private clear(key: string, ep: Episode, t: number): void {
    ep.cleared = t;
    if (this.keep === 0) this.resolve(key, ep, t);
    else this.scheduleDue(key, ep);
  }

  /** One resolution timer per firing: set when none is pending, moved on when it runs early. */
  private scheduleDue(key: string, ep: Episode): void {
    if (ep.due !== Number.POSITIVE_INFINITY) return;
    ep.due = ep.cleared + this.keep;
    this.ctx.schedule(this, key, ep.due, TAG_RESOLVE);
  }

  /** A condition kind's next re-check, at the first instant after t its condition may stop holding. */
  private scheduleCheck(key: string, ep: Episode, t: number): void {
    if (ep.check !== Number.POSITIVE_INFINITY) return;
    const next = this.nextClear(key, t);
    if (!(next > t) || next === Number.POSITIVE_INFINITY) return;
    ep.check = next;
    this.ctx.schedule(this, key, next, TAG_CHECK);
  }

  private onEpisodeTimer(key: string, at: number, tag: number): void {
    const ep = this.episodes.get(key);
    if (!ep) return;
    if (tag === TAG_RESOLVE) {
      if (ep.due !== at) return;
      ep.due = Number.POSITIVE_INFINITY;
      if (ep.cleared === Number.POSITIVE_INFINITY) return; // held again meanwhile
      if (ep.cleared + this.keep > at) this.scheduleDue(key, ep);
      else this.resolve(key, ep, at);
      return;
    }
    if (ep.check !== at) return;
    ep.check = Number.POSITIVE_INFINITY;
    if (ep.cleared !== Number.POSITIVE_INFINITY) return;
    // This instant or a later one was evaluated already: check again after it.
    if (at <= ep.seen) {
      this.scheduleCheck(key, ep, ep.seen);
      return;
    }
    if (this.holdsBetween(key, at)) {
      ep.seen = at;
      this.scheduleCheck(key, ep, at);
    } else this.evaluated(key, at, false);
  }

  /** The condition's value at a re-check between events. */
  protected holdsBetween(key: string, at: number): boolean {
    return this.evaluate(key, at)?.holds ?? true;
  }

  /**
   * A late event (kinds whose condition it can end at an instant not decided yet): the
   * re-check moves to the first such instant from the watermark on, if earlier.
   */
  protected recheckAfterLate(key: string): void {
    if (this.episodesHeld === 0) return;
    const ep = this.episodes.get(key);
    if (ep) this.recheckFrom(key, ep, Math.max(this.ctx.watermark - 1, ep.seen));
  }

  /**
   * An event behind the newest instant decided or evaluated (late, or on time out of
   * order) that changes the condition at that instant (cardinality: its value counts over
   * [t, until)): the key's firing is evaluated there at once, with it. Between events a
   * firing is re-checked only where the state it already holds may change.
   */
  protected evaluateBehind(key: string, t: number, until: number): void {
    if (this.episodesHeld === 0) return;
    const ep = this.episodes.get(key);
    if (!ep) return;
    const at = Math.max(this.ctx.watermark, ep.seen);
    if (t >= at || until <= at) return;
    this.evaluated(key, at, this.evaluate(key, at)?.holds ?? true);
  }

  /** Moves a holding firing's re-check to the first instant after t it may clear at, if earlier. */
  private recheckFrom(key: string, ep: Episode, t: number): void {
    if (ep.cleared !== Number.POSITIVE_INFINITY) return;
    const next = this.nextClear(key, t);
    if (!(next < ep.check) || !(next > ep.seen)) return;
    ep.check = next;
    this.ctx.schedule(this, key, next, TAG_CHECK);
  }

  /**
   * Condition kinds: the first instant after t at which, with no further event, the
   * condition may stop holding (an event leaving a window); +Infinity when only an event
   * can end it. The re-check there evaluates the condition (alerts are not affected).
   */
  protected nextClear(_key: string, _t: number): number {
    return Number.POSITIVE_INFINITY;
  }

  /** The firing of a key ended at t: announced, and its state dropped. */
  private resolve(key: string, ep: Episode, t: number): void {
    this.episodes.delete(key);
    this.held();
    if (this.ctx.announce === 'none') return;
    this.announce(
      key,
      t,
      'resolved',
      alertId(this.spec.name, key, ep.at, `resolved\u0000${ep.alert}`),
      ep,
    );
  }

  private announce(
    key: string,
    t: number,
    state: StateChange['state'],
    id: string,
    ep?: Episode,
  ): void {
    if (t < this.ctx.alertFrom) return;
    const change: StateChange = {
      id,
      rule: this.spec.name,
      type: this.spec.type,
      key: ep?.key ?? this.keyValues.get(key) ?? {},
      state,
      at: new Date(t).toISOString(),
      labels: this.spec.labels,
      actions: this.spec.actions,
    };
    if (ep) {
      change.alert = ep.alert;
      change.firing_since = new Date(ep.at).toISOString();
    }
    this.ctx.transition(change);
  }

  /** End of the realert silence of a key, or -Infinity. */
  protected silencedUntil(silenceKey: string): number {
    return this.silences.get(silenceKey)?.until ?? Number.NEGATIVE_INFINITY;
  }

  /**
   * ElastAlert's next_alert_time: the silence doubles while alerts keep coming, up to the
   * cap. A cap below realert caps every silence, the first too, and the exponent never
   * goes below zero: a silence dropped by the sweep and one kept then give the same next.
   */
  private nextSilence(previous: Silence | undefined, t: number): Silence {
    const realert = this.spec.realert;
    const cap = this.spec.exponential_realert;
    if (cap === undefined) return { until: t + realert, exponent: 0 };
    if (!previous) return { until: t + Math.min(realert, cap), exponent: 0 };
    let exponent = previous.exponent;
    let diff = t - previous.until;
    if (diff < realert * 2 ** exponent) exponent++;
    else {
      while (diff > realert * 2 ** exponent && exponent > 0) {
        diff -= realert * 2 ** exponent;
        exponent--;
      }
    }
    const wait = realert * 2 ** exponent;
    if (wait >= cap) return { until: t + cap, exponent: Math.max(0, exponent - 1) };
    return { until: t + wait, exponent };
  }

  /**
   * How far back in event time the state a sweep drops reaches (the kind's longest
   * window), which sets how often the engine sweeps the rule (engine.ts, sweepTurns).
   * Here only silences, kept about a realert period: no span of its own.
   */
  sweepSpan(): number {
    return Number.POSITIVE_INFINITY;
  }

  /** Drops state the watermark has made irrelevant. Kinds extend it for their windows. */
  sweep(watermark: number): void {
    if (watermark < this.silencesEnd || this.silences.size === 0) return;
    let end = Number.POSITIVE_INFINITY;
    for (const [key, s] of this.silences) {
      const until = s.until + this.remembered(s);
      if (until <= watermark) {
        this.touched(key);
        this.silences.delete(key);
      } else if (until < end) end = until;
    }
    this.silencesEnd = end;
    this.silencesHeld = this.silences.size;
  }

  /**
   * How long past its end a silence is kept: with exponential realert a past silence
   * still sets the next one's length, until enough quiet time has passed for its
   * exponent to decay back to zero.
   */
  private remembered(s: Silence): number {
    const cap = this.spec.exponential_realert;
    return cap === undefined ? 0 : this.spec.realert * (2 ** (s.exponent + 1) - 1);
  }

  /** Approximate bytes per key, for the memory report. */
  abstract keyBytes(key: K): number;

  // --- snapshots: plain JSON data, versioned by the engine ---

  protected abstract encodeKey(state: K): unknown;
  /** `version`: the engine snapshot's, for kinds whose state format changed. */
  protected abstract decodeKey(data: unknown, version: number): K;
  /** Kind-level state beyond keys (new_term's terms, flatline's expected keys...). */
  protected encodeExtra(): unknown {
    return undefined;
  }
  protected decodeExtra(_data: unknown): void {}

  // --- incremental snapshots (rules/changes.ts): state as entries, one per key string ---

  /**
   * An entry is about to change (or was created): recorded for the next capture, and
   * copied first if a capture running now has not taken it yet. The engine calls it
   * for the key of each event and timer; kinds for what else they change (sweeps,
   * terms, silences kept under another string).
   */
  touched(id: string): void {
    const changed = this.changed;
    if (changed === undefined) return;
    if (this.beforeChange !== undefined) this.beforeChange(id);
    changed.add(id);
  }

  /**
   * Every entry id held now, map by map: live views of the maps (entries added later
   * are touched first). Iterators of Maps and Sets, not one generator over them: a
   * loop over such an iterator makes no result object per id once optimized.
   */
  idSources(): Iterator<string>[] {
    return [
      this.keys.keys(),
      this.keyValues.keys(),
      this.silences.keys(),
      this.pendingSince.keys(),
      this.episodes.keys(),
      this.quietPending.values(),
      this.extraIds()[Symbol.iterator](),
    ];
  }

  /**
   * What the runner holds under one string, as plain data (undefined: nothing, a
   * deletion). The parts are the full snapshot's, split by key.
   */
  entry(id: string): RunnerEntry | undefined {
    let e: RunnerEntry | undefined;
    const state = this.keys.get(id);
    if (state !== undefined) (e ??= {}).k = this.encodeKey(state);
    const values = this.keyValues.get(id);
    if (values !== undefined) (e ??= {}).v = values;
    const silence = this.silences.get(id);
    if (silence !== undefined) (e ??= {}).s = [silence.until, silence.exponent];
    const since = this.pendingSince.get(id);
    if (since !== undefined) (e ??= {}).p = since;
    const ep = this.episodes.get(id);
    if (ep !== undefined) (e ??= {}).e = { ...ep };
    if (this.quietPending.has(id)) (e ??= {}).q = 1;
    const extra = this.encodeEntryExtra(id);
    if (extra !== undefined) (e ??= {}).x = extra;
    return e;
  }

  /**
   * What `entry(id)` gives, written by `w` as it would encode that value, without making
   * it: false (nothing written) when it would be undefined. A checkpoint takes every
   * entry this way (rules/changes.ts). The objects `entry` makes for one share their
   * allocation sites with the full snapshot's (`snapshot`, `encodeKey`): once a snapshot
   * of many keys has kept them alive, V8 allocates what those sites make in its old
   * generation, and each window array such an object points at then outlives every
   * young-generation collection until the next full one (at 1.1 M keys, after one
   * snapshot: ~3.3 MB kept per collection, scavenges of 6-23 ms through a full
   * checkpoint, against 1.5-3 ms). Kinds write their window state themselves
   * (`writeKey`); the default encodes `encodeKey`'s value.
   */
  writeEntry(id: string, w: EntryWriter): boolean {
    const state = this.keys.get(id);
    const values = this.keyValues.get(id);
    const silence = this.silences.get(id);
    const since = this.pendingSince.get(id);
    const ep = this.episodes.get(id);
    const quiet = this.quietPending.has(id);
    const extra = this.encodeEntryExtra(id);
    const fields = entryFields(state, values, silence, since, ep, quiet, extra);
    if (fields === 0) return false;
    // The fields in `entry`'s order, each value at depth 1 (the entry is at 0).
    w.object(fields, 0);
    if (state !== undefined) {
      w.key('k');
      this.writeKey(state, w);
    }
    writeEntryRest(w, values, silence, since, ep, quiet, extra);
    return true;
  }

  /** `encodeKey(state)` written by `w` at depth 1 (writeEntry), without making it. */
  protected writeKey(state: K, w: EntryWriter): void {
    w.value(this.encodeKey(state), 1);
  }

  /**
   * Whether the entry under `id` is written in steps (writeEntryParts): a key whose state
   * a sender can make large (a cardinality key's values) and holds more than a few items.
   * False for every kind whose `writeKeyParts` is the default.
   */
  entryInParts(id: string): boolean {
    if (!this.keysInParts) return false;
    const state = this.keys.get(id);
    return state !== undefined && this.keyInParts(state);
  }

  /** Whether the kind writes some keys in steps (keyInParts); no lookup per entry if not. */
  protected readonly keysInParts: boolean = false;

  /** See entryInParts: a kind that writes its key state in steps says when. */
  protected keyInParts(_state: K): boolean {
    return false;
  }

  /**
   * `writeKey(state, w)` in steps: the same bytes, with a `yield` where the kind may stop,
   * about every PART_STEP_BYTES written (`w.bytes()`). The default writes it in one.
   */
  // eslint-disable-next-line require-yield -- in one step: the default has no place to stop
  protected *writeKeyParts(state: K, w: EntryWriter): Generator<void, void> {
    this.writeKey(state, w);
  }

  /**
   * writeEntry's bytes, the entry's key state written in steps (writeKeyParts): a capture
   * resumes it step after step, so no step encodes more than about PART_STEP_BYTES of
   * it (and one item: a value, or the sample event, each bounded by an event's size).
   * Between two steps the state must not change: an event about to change it first has
   * the rest written at once (rules/changes.ts, copy-on-write), as an entry not yet taken.
   */
  *writeEntryParts(id: string, w: EntryWriter): Generator<void, boolean> {
    const state = this.keys.get(id);
    const values = this.keyValues.get(id);
    const silence = this.silences.get(id);
    const since = this.pendingSince.get(id);
    const ep = this.episodes.get(id);
    const quiet = this.quietPending.has(id);
    const extra = this.encodeEntryExtra(id);
    const fields = entryFields(state, values, silence, since, ep, quiet, extra);
    if (fields === 0) return false;
    // As writeEntry, the key state in steps.
    w.object(fields, 0);
    if (state !== undefined) {
      w.key('k');
      yield* this.writeKeyParts(state, w);
    }
    writeEntryRest(w, values, silence, since, ep, quiet, extra);
    return true;
  }

  /** Restores one entry, as `entry` gave it. */
  loadEntry(id: string, e: RunnerEntry, version: number): void {
    if (e.k !== undefined) this.keys.set(id, this.decodeKey(e.k, version));
    if (e.v !== undefined) this.keyValues.set(id, e.v);
    if (e.s !== undefined) {
      this.ownSilences().set(id, { until: e.s[0], exponent: e.s[1] });
      this.silencesHeld = this.silences.size;
      this.silencesEnd = Number.NEGATIVE_INFINITY;
    }
    if (e.p !== undefined) this.ownPending().set(id, e.p);
    if (e.e !== undefined) this.ownEpisodes().set(id, e.e);
    if (e.q !== undefined) this.ownQuiet().add(id);
    this.held();
    if (e.x !== undefined) this.decodeEntryExtra(id, e.x);
  }

  /** The runner's state that is not per entry. */
  head(): RunnerHead {
    return { lastAlertAt: this.lastAlertAt, alertCount: this.alertCount };
  }

  loadHead(h: RunnerHead): void {
    this.lastAlertAt = h.lastAlertAt;
    this.alertCount = h.alertCount;
  }

  /** Kinds with state per string beyond the base maps (new_term's terms). */
  protected extraIds(): Iterable<string> {
    return [];
  }
  protected encodeEntryExtra(_id: string): unknown {
    return undefined;
  }
  protected decodeEntryExtra(_id: string, _data: unknown): void {}

  snapshot(): RunnerSnapshot {
    return {
      keys: [...this.keys].map(([k, s]) => [k, this.encodeKey(s)]),
      keyValues: [...this.keyValues],
      silences: [...this.silences].map(([k, s]) => [k, s.until, s.exponent]),
      pending: [...this.pendingSince],
      episodes: [...this.episodes],
      quietPending: [...this.quietPending],
      extra: this.encodeExtra(),
      lastAlertAt: this.lastAlertAt,
      alertCount: this.alertCount,
    };
  }

  /** Replaces this runner's state with the snapshot's (nothing held before survives). */
  restore(s: RunnerSnapshot, version: number): void {
    this.keys.clear();
    this.keyValues.clear();
    this.silences.clear();
    this.pendingSince.clear();
    for (const [k, data] of s.keys) this.keys.set(k, this.decodeKey(data, version));
    for (const [k, v] of s.keyValues) this.keyValues.set(k, v);
    for (const [k, until, exponent] of s.silences) this.ownSilences().set(k, { until, exponent });
    this.silencesHeld = this.silences.size;
    this.silencesEnd = Number.NEGATIVE_INFINITY;
    for (const [k, since] of s.pending) this.ownPending().set(k, since);
    this.episodes.clear();
    this.quietPending.clear();
    for (const k of s.quietPending ?? []) this.ownQuiet().add(k);
    // JSON turns +Infinity into null.
    const inf = (v: number | null): number => v ?? Number.POSITIVE_INFINITY;
    for (const [k, ep] of s.episodes ?? []) {
      this.ownEpisodes().set(k, {
        ...ep,
        cleared: inf(ep.cleared),
        due: inf(ep.due),
        check: inf(ep.check),
      });
    }
    this.held();
    this.decodeExtra(s.extra);
    this.lastAlertAt = s.lastAlertAt;
    this.alertCount = s.alertCount;
  }
}

export interface RunnerSnapshot {
  keys: Array<[string, unknown]>;
  keyValues: Array<[string, Record<string, unknown>]>;
  silences: Array<[string, number, number]>;
  pending: Array<[string, number]>;
  /** Firing keys (absent in snapshots taken before alert states). */
  episodes?: Array<[string, Episode]>;
  quietPending?: string[];
  extra: unknown;
  lastAlertAt: string | undefined;
  alertCount: number;
}

/**
 * Writes plain data in the checkpoint's encoding (pipeline/checkpoint-codec.ts) a part at
 * a time, the bytes those parts would have as one value: `depth` is the part's nesting
 * (the entry's own is 0), as the encoder counts it. Throws the encoder's refusal for what
 * is not plain data; the caller then encodes `entry(id)` instead.
 */
export interface EntryWriter {
  /** An object of `fields` own keys, each then given as `key` and its value. */
  object(fields: number, depth: number): void;
  /** An array of `items`, each then given as a value. */
  array(items: number, depth: number): void;
  key(name: string): void;
  number(v: number): void;
  value(v: unknown, depth: number): void;
  /** Bytes written so far (a position: writeKeyParts yields by its growth). */
  bytes(): number;
}

/**
 * About how many bytes of one entry a step of a capture encodes before it stops
 * (writeEntryParts), the size of a stored part (pipeline/checkpoint-store.ts PART_BYTES).
 */
export const PART_STEP_BYTES = 64 * 1024;

/** One string's state (see RuleRunner.entry); each part present only when held. */
export interface RunnerEntry {
  /** The kind's window state (encodeKey). */
  k?: unknown;
  v?: Record<string, unknown>;
  /** realert silence: until, exponent. */
  s?: [number, number];
  /** pending since. */
  p?: number;
  e?: Episode;
  q?: 1;
  /** The kind's own (new_term: the term's last seen). */
  x?: unknown;
}

export interface RunnerHead {
  lastAlertAt: string | undefined;
  alertCount: number;
}

/**
 * How many fields `entry(id)` has (its object's length): writeEntry and writeEntryParts
 * count with this and write what follows the key state with writeEntryRest, so the stored
 * layout is written in one place.
 */
function entryFields(
  state: unknown,
  values: Record<string, unknown> | undefined,
  silence: Silence | undefined,
  since: number | undefined,
  ep: Episode | undefined,
  quiet: boolean,
  extra: unknown,
): number {
  return (
    (state !== undefined ? 1 : 0) +
    (values !== undefined ? 1 : 0) +
    (silence !== undefined ? 1 : 0) +
    (since !== undefined ? 1 : 0) +
    (ep !== undefined ? 1 : 0) +
    (quiet ? 1 : 0) +
    (extra !== undefined ? 1 : 0)
  );
}

/** The fields of `entry(id)` after its key state (`k`), in its order, at depth 1. */
function writeEntryRest(
  w: EntryWriter,
  values: Record<string, unknown> | undefined,
  silence: Silence | undefined,
  since: number | undefined,
  ep: Episode | undefined,
  quiet: boolean,
  extra: unknown,
): void {
  if (values !== undefined) {
    w.key('v');
    w.value(values, 1);
  }
  if (silence !== undefined) {
    w.key('s');
    w.array(2, 1);
    w.value(silence.until, 2);
    w.value(silence.exponent, 2);
  }
  if (since !== undefined) {
    w.key('p');
    w.value(since, 1);
  }
  if (ep !== undefined) {
    w.key('e');
    w.value({ ...ep }, 1);
  }
  if (quiet) {
    w.key('q');
    w.number(1);
  }
  if (extra !== undefined) {
    w.key('x');
    w.value(extra, 1);
  }
}
/**
 * The first 24 hex digits of the SHA-1 of rule, key, instant and discriminator. The
 * one-shot `hash` gives the same digest as createHash's update and digest (UTF-8 of the
 * string) without a Hash object per alert: each holds a native handle the young
 * generation's collections must process.
 */
export function alertId(rule: string, key: string, t: number, discriminator: string): string {
  return hash('sha1', `${rule}\n${key}\n${t}\n${discriminator}`, 'hex').slice(0, 24);
}
