import type { Event } from '../ingest/model/index.ts';
import { Capture, ChangeLog, type EngineHead, type EntrySink, type TimerRow } from './changes.ts';
import { compileFilter, requiredValues } from './filter/index.ts';
import { CardinalityRunner } from './kinds/cardinality.ts';
import { FlatlineRunner } from './kinds/flatline.ts';
import { KINDS, type KindDescriptor } from './kinds/index.ts';
import { NewTermRunner } from './kinds/new-term.ts';
import { EvidenceRing, type Explanation, explain } from './explain.ts';
import { IdSet } from './id-set.ts';
import type { EngineContext, RuleRunner, RunnerEntry, RunnerSnapshot } from './runner.ts';
import { TimerHeap } from './timers.ts';
import type { Alert, RuleSpec, StateChange } from './types.ts';

export interface EngineOptions {
  /** How far behind the newest event the watermark trails, for late events. Default 5 s. */
  allowedLatenessMs?: number;
  /**
   * Live mode: a wall clock (epoch ms). When no event has arrived for `idleMs`, the
   * watermark follows the clock, so a silent fleet still trips flatline and expiry.
   * Without a clock (backtest) time advances only with the data.
   */
  clock?: () => number;
  /** Wall-clock quiet time before the clock drives the watermark. Default: allowedLatenessMs. */
  idleMs?: number;
  /** Alerts before this event time build state but are not emitted (backtest `--from`). */
  alertFrom?: number;
  /**
   * Receives every alert, synchronously, in firing order; with `explain`, what made it
   * fire (rules/explain.ts).
   */
  onAlert: (alert: Alert, explanation?: Explanation) => void;
  /** Keep a bounded ring of matched events and explain each alert (rules/explain.ts). */
  explain?: boolean;
  /**
   * Receives every state change (pending, inactive, resolved; docs/rules.md#alert-states),
   * synchronously, in order with the alerts.
   */
  onState?: (change: StateChange) => void;
  /** Only resolutions go to onState (pending and inactive are not built). */
  resolvedOnly?: boolean;
  /**
   * Event time observation starts at; default: the first event. Tests and tools that
   * know their data start pin it; a backtest does not (events before `--from` count).
   */
  observedFrom?: number;
  /**
   * Live only (with `clock`): how far past the clock an event's time may lie. A later
   * event is refused (counted in `futureEvents`), and the watermark never passes
   * clock + skew, restored snapshots included. Default 5 minutes.
   */
  maxFutureSkewMs?: number;
  /** Keys a rule without `max_keys` holds at most. Default 100,000. */
  maxKeysPerRule?: number;
  /** Terms a new_term rule without `max_terms` holds at most. Default 100,000. */
  maxTermsPerRule?: number;
  /** Called for each new key or term a rule refuses at its cap (metrics, logs). */
  onRefused?: (rule: string, what: 'key' | 'term', cap: number) => void;
}

export const DEFAULT_MAX_KEYS_PER_RULE = 100_000;
export const DEFAULT_MAX_TERMS_PER_RULE = 100_000;

/**
 * Version 2: cardinality keeps, per value, the instants it covers; the engine keeps its
 * late and refused counts. Version 1 snapshots are read and converted.
 */
export const SNAPSHOT_VERSION = 2;

/** A runner's state with nothing held: what a rule that starts fresh restores. */
const EMPTY_RUNNER: RunnerSnapshot = {
  keys: [],
  keyValues: [],
  silences: [],
  pending: [],
  episodes: [],
  quietPending: [],
  extra: undefined,
  lastAlertAt: undefined,
  alertCount: 0,
};

export interface EngineSnapshot {
  version: number;
  watermark: number;
  maxEventTime: number;
  observedFrom: number | null;
  rules: Record<string, { fingerprint: string; state: RunnerSnapshot }>;
  timers: Array<[number, string, string, number]>;
  /** Since version 2. */
  lateEvents?: number;
  futureEvents?: number;
  /**
   * The sweeps' phase (Engine.advanceTo), so a restored engine sweeps each rule at the
   * instants the engine it came from would have. Absent in older snapshots: sweeps then
   * start over from the watermark (sweeps drop only what no evaluation uses).
   */
  lastSweep?: number | null;
  sweepSlice?: number;
}

/** Counts of events the engine did not take in full, for telemetry and the backtest summary. */
export interface EngineCounts {
  /** Arrived after the watermark passed their time: they count only in windows still open. */
  lateEvents: number;
  /** Live: refused, their time beyond the clock + max future skew (or not a finite number). */
  futureEvents: number;
}

export interface RuleStats {
  rule: string;
  type: string;
  keys: number;
  /** new_term's remembered terms. */
  terms?: number;
  /** New keys refused at the rule's max_keys since the rules were loaded. */
  keysRefused: number;
  /**
   * new_term: new terms refused at max_terms; cardinality: new distinct values refused
   * at a key's cap; since the rules were loaded.
   */
  termsRefused?: number;
  bytes: number;
  alerts: number;
  lastAlertAt: string | undefined;
}

interface Compiled {
  runner: RuleRunner;
  filter: (event: Event) => boolean;
  /** The runner's admission cap (see RuleRunner.admission), read per event. */
  keyCap: number;
}

/**
 * The rules an index entry leads to, as a flat array of CANDIDATE_STRIDE slots per rule:
 * its runner, filter and key cap (a Compiled's, here to spare a read of the Compiled
 * object per event and rule), then a second pinned field of its filter (or undefined),
 * the one value the field must have, or the few values it must be one of (undefined
 * with one value). The
 * engine tests that field on the event, which is in cache, before calling the filter:
 * at 1,000 rules a rule's filter (its function, closure and constants) has left the
 * cache since the rule's previous event, and most rules an event reaches fail on a
 * second field (the metric's name, the log level, the request method).
 */
type Candidates = unknown[];
const CANDIDATE_STRIDE = 6;
/** A second field pinned to more values than this is left to the filter. */
const MAX_PRECHECK_VALUES = 4;

/**
 * Every second of event time a tenth of the rules come up to drop state the watermark
 * made irrelevant, so each comes up every 10 s. A rule whose state spans longer sweeps
 * only every `sweepEvery` of its turns (sweepTurns): about half its span, at most every
 * MAX_SWEEP_TURNS turns (60 s). A sweep drops only what no evaluation can use any more
 * (RuleRunner.sweep), so its timing moves how long such state is held, by at most that
 * period, never an alert; per-rule caps count it while it is held.
 */
const SWEEP_EVERY_MS = 1_000;
const SWEEP_SLICES = 10;
const MAX_SWEEP_TURNS = 6;

/** Turns between a rule's sweeps: half its span in 10 s turns, from 1 to MAX_SWEEP_TURNS. */
export function sweepTurns(spanMs: number): number {
  const turns = Math.floor(spanMs / 2 / (SWEEP_EVERY_MS * SWEEP_SLICES));
  return Math.max(1, Math.min(MAX_SWEEP_TURNS, Number.isNaN(turns) ? 1 : turns));
}

/**
 * Evaluates rules on a stream of events in event time (docs/time.md). Events
 * are dispatched only to rules whose filter could match them: each rule is indexed
 * under one field its filter pins to a finite set of values, so the cost per event
 * follows the rules that concern it, not the number of rules.
 */
export class Engine {
  private readonly compiled: Compiled[] = [];
  private readonly byName = new Map<string, Compiled>();
  /** field → value → rules indexed under it (see Candidates). */
  private readonly index = new Map<string, Map<unknown, Candidates>>();
  /** The index as parallel arrays, for a tight loop per event. */
  private readonly indexFields: string[] = [];
  private readonly indexMaps: Map<unknown, Candidates>[] = [];
  /**
   * Per indexed field, the lengths of its string values as a bit mask (bit min(length,
   * 31)): a string of no such length cannot be a key of the map, and is not hashed to
   * find that out. Exact: equal strings have equal lengths.
   */
  private readonly indexLengths: number[] = [];
  private readonly unindexed: Compiled[] = [];
  private readonly timers = new TimerHeap<RuleRunner>();
  private readonly lateness: number;
  private readonly idleMs: number;
  private readonly onAlert: (alert: Alert, explanation?: Explanation) => void;
  /** Matched events, for explanations (rules/explain.ts bounds it); only with `explain`. */
  private readonly evidence: EvidenceRing | undefined;
  private readonly clock: (() => number) | undefined;
  private readonly context: EngineContext & { watermark: number; observedFrom: number };
  private maxEventTime = Number.NEGATIVE_INFINITY;
  private wm = Number.NEGATIVE_INFINITY;
  private observed: number | undefined;
  private lastSweep = Number.NEGATIVE_INFINITY;
  private sweepSlice = 0;
  /** Per rule (as `compiled`), its turns between sweeps (sweepTurns). */
  private sweepEvery = new Uint8Array(0);
  private lastEventWall = 0;
  private readonly alertFrom: number;
  private readonly maxFutureSkew: number;
  /** See EngineCounts. */
  lateEvents = 0;
  futureEvents = 0;
  /** Incremental snapshots (trackChanges): what changed since the last capture. */
  private changeLog: ChangeLog | undefined;

  constructor(
    readonly rules: RuleSpec[],
    options: EngineOptions,
  ) {
    this.lateness = options.allowedLatenessMs ?? 5_000;
    this.idleMs = options.idleMs ?? this.lateness;
    this.onAlert = options.onAlert;
    this.evidence = options.explain ? new EvidenceRing() : undefined;
    this.clock = options.clock;
    this.alertFrom = options.alertFrom ?? Number.NEGATIVE_INFINITY;
    const onRefused = options.onRefused;
    const onState = options.onState;
    this.maxFutureSkew = options.maxFutureSkewMs ?? 5 * 60_000;
    // Plain data properties the engine keeps in step with wm and observed: runners read
    // the watermark per event, and a getter there costs a call each time.
    this.context = {
      watermark: this.wm,
      observedFrom: Number.POSITIVE_INFINITY,
      alertFrom: this.alertFrom,
      schedule: (runner, key, at, tag) => {
        const timer = this.timers.push(at, runner, key, tag);
        if (this.changeLog !== undefined) this.changeLog.push(timer);
      },
      emit: (alert) => this.onAlert(alert, this.explanation(alert)),
      transition: (change) => onState?.(change),
      announce: onState === undefined ? 'none' : options.resolvedOnly ? 'resolved' : 'all',
      maxKeysPerRule: options.maxKeysPerRule ?? DEFAULT_MAX_KEYS_PER_RULE,
      maxTermsPerRule: options.maxTermsPerRule ?? DEFAULT_MAX_TERMS_PER_RULE,
      refused: (runner, what, cap) => onRefused?.(runner.spec.name, what, cap),
    };
    for (const rule of rules) {
      if (!rule.enabled) continue;
      const runner = createRunner(rule, this.context);
      const { cap } = runner.admission();
      const c: Compiled = { runner, filter: compileFilter(rule.filter), keyCap: cap };
      this.compiled.push(c);
      this.byName.set(rule.name, c);
    }
    this.sweepEvery = Uint8Array.from(this.compiled, (c) => sweepTurns(c.runner.sweepSpan()));
    this.buildIndex();
    // Live too, observation starts at event time (the first event), never at the clock:
    // a replay or backfill whose events lie in the past must still observe full windows.
    if (options.observedFrom !== undefined) this.startObserving(options.observedFrom);
    // Sources get their idle period after a start before the clock takes over.
    if (this.clock) this.lastEventWall = this.clock();
  }

  /** Picks, per rule, the pinned field most rules share, so an event does few lookups. */
  private buildIndex(): void {
    const constraints = this.compiled.map((c) => requiredValues(c.runner.spec.filter));
    const popularity = new Map<string, number>();
    for (const list of constraints)
      for (const { field } of list) popularity.set(field, (popularity.get(field) ?? 0) + 1);
    this.compiled.forEach((c, i) => {
      const list = constraints[i]!;
      if (list.length === 0) {
        this.unindexed.push(c);
        return;
      }
      const best = list.reduce((a, b) =>
        (popularity.get(b.field) ?? 0) > (popularity.get(a.field) ?? 0) ? b : a,
      );
      let byValue = this.index.get(best.field);
      if (!byValue) {
        byValue = new Map();
        this.index.set(best.field, byValue);
        this.indexFields.push(best.field);
        this.indexMaps.push(byValue);
        this.indexLengths.push(0);
      }
      const at = this.indexMaps.indexOf(byValue);
      // The second field: the one pinned to the fewest values (the likeliest to fail).
      let second: { field: string; values: unknown[] } | undefined;
      for (const other of list) {
        if (other.field === best.field || other.values.length > MAX_PRECHECK_VALUES) continue;
        if (second === undefined || other.values.length < second.values.length) second = other;
      }
      const values = second === undefined ? [] : [...new Set(second.values)];
      for (const value of new Set(best.values)) {
        if (typeof value === 'string') this.indexLengths[at]! |= 1 << Math.min(value.length, 31);
        let list2 = byValue.get(value);
        if (!list2) {
          list2 = [];
          byValue.set(value, list2);
        }
        list2.push(
          c.runner,
          c.filter,
          c.keyCap,
          second?.field,
          values.length === 1 ? values[0] : undefined,
          values.length === 1 ? undefined : values,
        );
      }
    });
  }

  get watermark(): number {
    return this.wm;
  }

  get observedFrom(): number | undefined {
    return this.observed;
  }

  private startObserving(t: number): void {
    if (this.observed !== undefined) return;
    this.observed = t;
    this.context.observedFrom = t;
    for (const c of this.compiled) if (c.runner instanceof FlatlineRunner) c.runner.start();
  }

  /**
   * Feeds one normalized event. Alerts go to `onAlert` before this returns. An event
   * whose time the watermark has passed is late: it counts only in windows still open
   * (instants ≥ the watermark), never at instants already decided (docs/time.md).
   */
  process(event: Event): void {
    const t = event['@timestamp'];
    if (this.clock) {
      const now = this.clock();
      // Hostile input: a time past the clock + skew would drag the watermark (and every
      // absence deadline) into the future. Refused, counted, nothing else changes.
      if (!(t <= now + this.maxFutureSkew)) {
        this.futureEvents++;
        return;
      }
      this.lastEventWall = now;
    } else if (!Number.isFinite(t)) {
      this.futureEvents++;
      return;
    }
    if (this.observed === undefined) this.startObserving(t);
    if (t < this.wm) this.lateEvents++;
    else if (t > this.maxEventTime) {
      this.maxEventTime = t;
      // Live, t passed the clock + skew bound above, so the watermark stays below it.
      if (t - this.lateness > this.wm) this.advanceTo(t - this.lateness, false);
    }
    const unindexed = this.unindexed;
    for (let i = 0; i < unindexed.length; i++) {
      const c = unindexed[i]!;
      this.offer(c.runner, c.filter, c.keyCap, event, t);
    }
    const fields = this.indexFields;
    const maps = this.indexMaps;
    const lengths = this.indexLengths;
    for (let f = 0; f < fields.length; f++) {
      const value = event[fields[f]!];
      if (value === undefined) continue;
      if (typeof value === 'string' && ((lengths[f]! >>> Math.min(value.length, 31)) & 1) === 0)
        continue;
      const candidates = maps[f]!.get(value);
      if (candidates === undefined) continue;
      for (let i = 0; i < candidates.length; i += CANDIDATE_STRIDE) {
        const second = candidates[i + 3] as string | undefined;
        if (second !== undefined) {
          // The filter holds only if the field has one of these values: requiredValues
          // claims it under the index's Map semantics (SameValueZero), which `includes`
          // shares; with one value, `!==` differs from it for NaN only, which no filter
          // (=== in equal and in) matches either.
          const v = event[second];
          const many = candidates[i + 5] as unknown[] | undefined;
          if (many === undefined ? v !== candidates[i + 4] : !many.includes(v)) continue;
        }
        this.offer(
          candidates[i] as RuleRunner,
          candidates[i + 1] as (event: Event) => boolean,
          candidates[i + 2] as number,
          event,
          t,
        );
      }
    }
  }

  private offer(
    runner: RuleRunner,
    filter: (event: Event) => boolean,
    keyCap: number,
    event: Event,
    t: number,
  ): void {
    if (!filter(event)) return;
    const key = runner.keyOf(event);
    if (key === undefined) return;
    // Below the cap admit would answer yes: no call (see RuleRunner.admission).
    if ((runner.keys.size >= keyCap || runner.silencesHeld >= keyCap) && !runner.admit(key)) return;
    this.evidence?.push(runner.spec.name, key, event, t);
    if (this.changeLog !== undefined) runner.touched(key);
    runner.onEvent(event, key, t);
  }

  private explanation(alert: Alert): Explanation | undefined {
    if (!this.evidence) return undefined;
    const runner = this.byName.get(alert.rule)?.runner;
    if (!runner) return undefined;
    const key = runner.keyOf({ '@timestamp': 0, ...alert.key });
    return explain(runner.spec, alert, key, this.evidence);
  }

  /**
   * Moves the watermark forward to t, firing deadlines in time order: those before t,
   * since an event at exactly t may still arrive — or up to and including t when the
   * data has ended (`finish`).
   */
  advance(to: number, inclusive = false): void {
    // Live, the watermark never passes clock + skew (whoever calls).
    this.advanceTo(this.clock ? Math.min(to, this.clock() + this.maxFutureSkew) : to, inclusive);
  }

  private advanceTo(t: number, inclusive: boolean): void {
    if (t < this.wm || (t === this.wm && !inclusive)) return;
    while (this.timers.peekTime() < t || (inclusive && this.timers.peekTime() === t)) {
      const timer = this.timers.pop()!;
      if (this.changeLog !== undefined) {
        this.changeLog.pop(timer.seq);
        timer.target.touched(timer.key);
      }
      // Runners read the watermark while handling a timer: it is the timer's instant.
      this.setWatermark(Math.max(this.wm, timer.at));
      timer.target.onTimer(timer.key, timer.at, timer.tag);
    }
    this.setWatermark(t);
    if (t - this.lastSweep >= SWEEP_EVERY_MS) {
      this.lastSweep = t;
      const turn = this.sweepSlice++;
      const slice = turn % SWEEP_SLICES;
      const round = (turn - slice) / SWEEP_SLICES;
      const every = this.sweepEvery;
      // Rules of one slice with the same period take their turns in different rounds.
      for (let i = slice, j = 0; i < this.compiled.length; i += SWEEP_SLICES, j++)
        if ((round + j) % every[i]! === 0) this.compiled[i]!.runner.sweep(t);
    }
  }

  private setWatermark(t: number): void {
    this.wm = t;
    this.context.watermark = t;
  }

  /** Live: lets the wall clock drive the watermark once sources have gone quiet. */
  tick(): void {
    // Nothing observed yet: no instant to decide (and a backfill about to arrive would
    // find the clock had already closed its windows).
    if (!this.clock || this.observed === undefined) return;
    const now = this.clock();
    if (now - this.lastEventWall < this.idleMs) return;
    this.advance(now - this.lateness);
  }

  /**
   * Backtest end: time stops at the last event (or `to`). Deadlines up to then fire;
   * nothing fires for deadlines after the data ends.
   */
  finish(to?: number): void {
    const end = to ?? this.maxEventTime;
    if (Number.isFinite(end)) this.advance(end, true);
  }

  /** Seeds new_term terms learned elsewhere (the index, a previous run). */
  seedTerm(
    rule: string,
    key: Record<string, unknown>,
    values: Record<string, unknown>,
    lastSeen: number,
  ): void {
    const c = this.byName.get(rule);
    if (!(c?.runner instanceof NewTermRunner)) throw new Error(`${rule} is not a new_term rule`);
    const keyString = c.runner.keyOf({ '@timestamp': lastSeen, ...key }) ?? '';
    c.runner.seed(keyString, values, lastSeen);
  }

  counts(): EngineCounts {
    return { lateEvents: this.lateEvents, futureEvents: this.futureEvents };
  }

  stats(): RuleStats[] {
    return this.compiled.map(({ runner }) => {
      let bytes = 0;
      for (const state of runner.keys.values()) bytes += runner.keyBytes(state);
      const s: RuleStats = {
        rule: runner.spec.name,
        type: runner.spec.type,
        keys: runner.keys.size,
        bytes,
        alerts: runner.alertCount,
        lastAlertAt: runner.lastAlertAt,
        keysRefused: runner.keysRefused,
      };
      if (runner instanceof NewTermRunner) {
        s.terms = runner.termCount();
        s.termsRefused = runner.termsRefused;
        s.bytes += runner.termCount() * 64;
      }
      if (runner instanceof CardinalityRunner) s.termsRefused = runner.termsRefused;
      return s;
    });
  }

  /**
   * Keys held per rule (a new_term rule's terms added, as `drover_rule_keys` counts them),
   * read from the maps' sizes: constant time per rule, where stats() walks every key for
   * its bytes (20-70 ms at 1.1 M keys). What a metrics scrape reads.
   */
  keyCounts(): Array<{ rule: string; keys: number }> {
    return this.compiled.map(({ runner }) => ({
      rule: runner.spec.name,
      keys: runner.keys.size + (runner instanceof NewTermRunner ? runner.termCount() : 0),
    }));
  }

  /** Plain, versioned data: JSON-serializable, restorable into an engine with the same rules. */
  snapshot(): EngineSnapshot {
    const rules: EngineSnapshot['rules'] = {};
    for (const c of this.compiled) {
      rules[c.runner.spec.name] = {
        fingerprint: ruleFingerprint(c.runner.spec),
        state: c.runner.snapshot(),
      };
    }
    return {
      version: SNAPSHOT_VERSION,
      watermark: this.wm,
      maxEventTime: this.maxEventTime,
      observedFrom: this.observed ?? null,
      rules,
      timers: this.timers.entries().map((t) => [t.at, t.target.spec.name, t.key, t.tag]),
      lateEvents: this.lateEvents,
      futureEvents: this.futureEvents,
      lastSweep: this.lastSweep,
      sweepSlice: this.sweepSlice,
    };
  }

  /**
   * Restores a snapshot taken by an engine with these rules. A rule whose definition
   * changed since starts fresh (its old windows would mean something else); the names
   * of such rules are returned.
   */
  restore(snapshot: EngineSnapshot): { reset: string[] } {
    if (snapshot.version !== SNAPSHOT_VERSION && snapshot.version !== 1) {
      throw new Error(
        `snapshot version ${snapshot.version} is not supported (expected 1 or ${SNAPSHOT_VERSION})`,
      );
    }
    const reset: string[] = [];
    const restored = new Set<string>();
    for (const c of this.compiled) {
      const saved = snapshot.rules[c.runner.spec.name];
      if (saved && saved.fingerprint === ruleFingerprint(c.runner.spec)) {
        c.runner.restore(saved.state, snapshot.version);
        restored.add(c.runner.spec.name);
      } else {
        // Starts fresh even in an engine that held state before this restore.
        c.runner.restore(EMPTY_RUNNER, SNAPSHOT_VERSION);
        reset.push(c.runner.spec.name);
      }
    }
    // JSON turns ±Infinity into null. Live, a snapshot taken before the clock bound
    // existed (or on a host whose clock ran ahead) is clamped to clock + skew.
    const ceiling = this.clock ? this.clock() + this.maxFutureSkew : Number.POSITIVE_INFINITY;
    this.setWatermark(Math.min(snapshot.watermark ?? Number.NEGATIVE_INFINITY, ceiling));
    this.maxEventTime = Math.min(snapshot.maxEventTime ?? Number.NEGATIVE_INFINITY, ceiling);
    this.lateEvents = snapshot.lateEvents ?? 0;
    this.futureEvents = snapshot.futureEvents ?? 0;
    // JSON turns the -Infinity of an engine that never swept into null.
    this.lastSweep =
      snapshot.lastSweep === undefined
        ? this.wm
        : Math.min(snapshot.lastSweep ?? Number.NEGATIVE_INFINITY, this.wm);
    this.sweepSlice = snapshot.sweepSlice ?? 0;
    this.timers.clear();
    for (const [at, rule, key, tag] of snapshot.timers) {
      if (restored.has(rule)) this.timers.push(at, this.byName.get(rule)!.runner, key, tag);
    }
    if (snapshot.observedFrom !== null) {
      this.observed = undefined;
      this.context.observedFrom = Number.POSITIVE_INFINITY;
      this.startObserving(snapshot.observedFrom);
    }
    return { reset };
  }

  // --- incremental snapshots (rules/changes.ts) ---

  /**
   * From now on, records what changes for `capture`. `full`: the first capture takes
   * everything (the stored state is not this engine's: a fresh start, a full restore).
   */
  trackChanges(full = true): void {
    if (this.changeLog !== undefined) {
      if (full) this.changeLog.full = true;
      return;
    }
    // Past this many timers pushed or run between captures, the next one is full.
    this.changeLog = new ChangeLog(full, () => 2 * this.timers.size + 100_000);
    this.timers.reserveCopies();
    for (const c of this.compiled) c.runner.changed ??= new IdSet();
  }

  /**
   * The state now, as what changed since the previous capture (everything, the first
   * time or after `abandonCapture`); its entries are taken by stepping it.
   */
  capture<S extends EntrySink>(sink: S): Capture<S> {
    if (this.changeLog === undefined) throw new Error('capture needs trackChanges first');
    const rules: EngineHead['rules'] = {};
    for (const c of this.compiled) {
      rules[c.runner.spec.name] = {
        fingerprint: ruleFingerprint(c.runner.spec),
        head: c.runner.head(),
      };
    }
    const head: EngineHead = {
      version: SNAPSHOT_VERSION,
      watermark: this.wm,
      maxEventTime: this.maxEventTime,
      observedFrom: this.observed ?? null,
      lateEvents: this.lateEvents,
      futureEvents: this.futureEvents,
      nextTimerSeq: this.timers.nextSeq,
      lastSweep: this.lastSweep,
      sweepSlice: this.sweepSlice,
      rules,
    };
    return new Capture(
      {
        head,
        runners: this.compiled.map((c) => c.runner),
        log: this.changeLog,
        timers: () => this.timers.copy(),
        releaseTimers: (copy) => this.timers.release(copy),
      },
      sink,
    );
  }

  /** A capture that was not stored: what it took is lost, so the next one is full. */
  abandonCapture(capture: Capture): void {
    capture.close();
    if (this.changeLog !== undefined) this.changeLog.full = true;
  }

  /**
   * Restores state stored from captures, and tracks changes from there. As `restore`, a
   * rule whose definition changed starts fresh; then, or when the state holds a rule
   * this engine lacks, the next capture is full, replacing what is stored.
   */
  restoreChanges(stored: {
    head: EngineHead;
    entries: Iterable<[rule: string, id: string, entry: RunnerEntry]>;
    timers: Iterable<TimerRow>;
  }): { reset: string[] } {
    const { head } = stored;
    if (head.version !== SNAPSHOT_VERSION) {
      throw new Error(
        `snapshot version ${head.version} is not supported (expected ${SNAPSHOT_VERSION})`,
      );
    }
    const reset: string[] = [];
    const restored = new Map<string, RuleRunner>();
    for (const c of this.compiled) {
      const saved = head.rules[c.runner.spec.name];
      if (saved && saved.fingerprint === ruleFingerprint(c.runner.spec)) {
        c.runner.loadHead(saved.head);
        restored.set(c.runner.spec.name, c.runner);
      } else reset.push(c.runner.spec.name);
    }
    for (const [rule, id, entry] of stored.entries)
      restored.get(rule)?.loadEntry(id, entry, head.version);
    const ceiling = this.clock ? this.clock() + this.maxFutureSkew : Number.POSITIVE_INFINITY;
    this.setWatermark(Math.min(head.watermark, ceiling));
    this.maxEventTime = Math.min(head.maxEventTime, ceiling);
    this.lateEvents = head.lateEvents;
    this.futureEvents = head.futureEvents;
    this.lastSweep = Math.min(head.lastSweep, this.wm);
    this.sweepSlice = head.sweepSlice;
    this.timers.clear();
    for (const [seq, at, rule, key, tag] of stored.timers) {
      const runner = restored.get(rule);
      if (runner !== undefined) this.timers.load(at, seq, runner, key, tag);
    }
    this.timers.nextSeq = head.nextTimerSeq;
    const dropped = Object.keys(head.rules).some((name) => !restored.has(name));
    this.trackChanges(reset.length > 0 || dropped);
    if (head.observedFrom !== null) {
      this.observed = undefined;
      this.context.observedFrom = Number.POSITIVE_INFINITY;
      this.startObserving(head.observedFrom);
    }
    return { reset };
  }
}

function createRunner(rule: RuleSpec, ctx: EngineContext): RuleRunner {
  return (KINDS[rule.type] as KindDescriptor).runner(rule, ctx);
}

/**
 * Fingerprints by rule object: a capture names each rule's at its instant, and a rule's
 * spec does not change once compiled (a reload compiles new ones). Weak: held no longer
 * than the specs.
 */
const fingerprints = new WeakMap<RuleSpec, string>();

/** What a rule's state depends on: everything but presentation (labels, actions, description). */
function ruleFingerprint(rule: RuleSpec): string {
  let fingerprint = fingerprints.get(rule);
  if (fingerprint === undefined) fingerprints.set(rule, (fingerprint = fingerprintOf(rule)));
  return fingerprint;
}

function fingerprintOf(rule: RuleSpec): string {
  // A cap bounds how many keys are held, not what a held key's state means: raising
  // it keeps the state.
  const {
    labels: _l,
    actions: _a,
    description: _d,
    source: _s,
    enabled: _e,
    max_keys: _k,
    ...semantic
  } = rule;
  return stableStringify({ ...semantic, max_terms: undefined });
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
