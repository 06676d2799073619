import type { Event } from '../../ingest/model/index.ts';
import { type EntryWriter, RuleRunner, TAG_KIND } from '../runner.ts';
import type { ExpiryRule } from '../types.ts';
import { durationOr, type KindDescriptor } from './kind.ts';

/**
 * A run of reports of one key with no gap longer than the ttl: the key is silent from
 * `lastSeen` until `deadline` = lastSeen + its ttl, where the run ends.
 */
interface Run {
  start: number;
  lastSeen: number;
  deadline: number;
  ttl: number;
  sample: Event;
}

/**
 * A key's runs, in time order and disjoint: the newest one's fields on the state itself,
 * the ones before it in `older`. Events arriving out of order may open a run before
 * another whose deadline the watermark has not passed yet; runs are dropped as they
 * fire, so a key holds at most (allowed lateness / ttl) + 1 of them, and usually one. A
 * report extending the newest run (nearly all of them) reads and writes this one object:
 * with the runs in an array of their own it went through the array, its elements and a
 * run object, each a cache miss at 1,000 rules, where a key's state is touched ten times
 * less often than at 100. A key with no run left is forgotten, so a state has at least one.
 */
interface KeyState extends Run {
  /** The runs before the newest one, oldest first; undefined with none. */
  older: Run[] | undefined;
  /** The pending timer: the first run's deadline. */
  scheduled: number;
}

/** The state as one run (`newest`) and none before it. */
function newState(newest: Run, scheduled: number): KeyState {
  const { start, lastSeen, deadline, ttl, sample } = newest;
  return { start, lastSeen, deadline, ttl, sample, older: undefined, scheduled };
}

/** The key's runs in time order, as one array (a copy of the newest run at its end). */
function runsOf(state: KeyState): Run[] {
  const newest = newRun(state.start, state.lastSeen, state.deadline, state.ttl, state.sample);
  return state.older === undefined ? [newest] : [...state.older, newest];
}

/** Sets the state's runs to `runs` (at least one, in time order). */
function setRuns(state: KeyState, runs: Run[]): void {
  const newest = runs[runs.length - 1]!;
  state.start = newest.start;
  state.lastSeen = newest.lastSeen;
  state.deadline = newest.deadline;
  state.ttl = newest.ttl;
  state.sample = newest.sample;
  state.older = runs.length === 1 ? undefined : runs.slice(0, -1);
}

/**
 * Riemann's expired event: a key that reported goes silent for its ttl. An event's
 * numeric `ttl` field (seconds) overrides the rule's. Fires once per silence, at the
 * instant it ends (last report + ttl) when no report of the key lies in between — in
 * event time, so a report that arrives later but lies after the silence does not hide
 * it. The key is dropped once no run is left, and re-arms when it reports again.
 */
export class ExpiryRunner extends RuleRunner<ExpiryRule, KeyState> {
  protected override readonly resolution = 'report';
  /**
   * Spec values read per event, copied onto the runner: at 1,000 rules the spec object
   * is out of cache between a rule's events, and reading it cost a miss per event.
   */
  private readonly ttl = this.spec.ttl;

  onEvent(event: Event, key: string, t: number): void {
    this.reported(key, t); // a firing of the key resolves when it reports again
    const eventTtl = event.ttl;
    const ttl = typeof eventTtl === 'number' && eventTtl > 0 ? eventTtl * 1000 : this.ttl;
    // A late event whose deadline the watermark has passed can no longer decide anything.
    if (this.isLate(t) && t + ttl < this.ctx.watermark) return;
    let state = this.keys.get(key);
    if (!state) {
      state = newState(newRun(t, t, t + ttl, ttl, event), Number.POSITIVE_INFINITY);
      this.keys.set(key, state);
      this.rememberKey(key, event);
    } else if (t >= state.lastSeen && t <= state.deadline) {
      // The newest run goes on (addReport's first case, on the state itself).
      state.lastSeen = t;
      state.deadline = t + ttl;
      state.ttl = ttl;
      state.sample = event;
    } else {
      const runs = runsOf(state);
      addReport(runs, t, ttl, event);
      setRuns(state, runs);
    }
    const first = state.older === undefined ? state.deadline : state.older[0]!.deadline;
    if (first < state.scheduled) {
      state.scheduled = first;
      this.ctx.schedule(this, key, first, TAG_KIND);
    }
  }

  override onTimer(key: string, at: number, tag: number): void {
    if (tag !== TAG_KIND) {
      super.onTimer(key, at, tag);
      return;
    }
    const state = this.keys.get(key);
    if (!state || state.scheduled !== at) return;
    const older = state.older;
    // The first run: the oldest of `older`, or the newest when it is the only one.
    const run: Run = older === undefined ? state : older[0]!;
    if (at < run.deadline) {
      state.scheduled = run.deadline;
      this.ctx.schedule(this, key, run.deadline, TAG_KIND);
      return;
    }
    const { lastSeen, ttl, sample } = run;
    if (older !== undefined) {
      older.shift();
      if (older.length === 0) state.older = undefined;
    }
    this.fire(key, at, {
      figures: { last_seen: new Date(lastSeen).toISOString(), ttl_ms: ttl },
      sample,
    });
    if (older === undefined) {
      this.forgetKey(key);
      return;
    }
    const next = state.older === undefined ? state.deadline : state.older[0]!.deadline;
    state.scheduled = next;
    this.ctx.schedule(this, key, next, TAG_KIND);
  }

  keyBytes(state: KeyState): number {
    return 32 + (1 + (state.older?.length ?? 0)) * 64;
  }
  protected encodeKey(s: KeyState): unknown {
    return { runs: runsOf(s), scheduled: s.scheduled };
  }
  /**
   * encodeKey's object, written without making it, its runs' array or the newest run's
   * copy (RuleRunner.writeEntry): the runs before the newest are written as they are,
   * the newest from the state's own fields in newRun's order.
   */
  protected override writeKey(s: KeyState, w: EntryWriter): void {
    w.object(2, 1);
    w.key('runs');
    const older = s.older;
    const n = older === undefined ? 0 : older.length;
    w.array(n + 1, 2);
    for (let i = 0; i < n; i++) w.value(older![i], 3);
    w.object(5, 3);
    w.key('start');
    w.value(s.start, 4);
    w.key('lastSeen');
    w.value(s.lastSeen, 4);
    w.key('deadline');
    w.value(s.deadline, 4);
    w.key('ttl');
    w.value(s.ttl, 4);
    w.key('sample');
    w.value(s.sample, 4);
    w.key('scheduled');
    w.value(s.scheduled, 2);
  }
  protected decodeKey(data: unknown, version: number): KeyState {
    if (version === 1) {
      // Version 1 held one run: the newest report and its deadline.
      const d = data as { lastSeen: number; deadline: number; ttl: number; sample: Event };
      return newState(newRun(d.lastSeen, d.lastSeen, d.deadline, d.ttl, d.sample), d.deadline);
    }
    const d = data as { runs: Run[]; scheduled: number | null };
    // A key is forgotten with its last run: no snapshot holds one without runs.
    if (d.runs.length === 0) throw new Error('an expiry key without runs');
    const state = newState(d.runs[d.runs.length - 1]!, d.scheduled ?? Number.POSITIVE_INFINITY);
    setRuns(state, d.runs);
    return state;
  }
}

/**
 * Adds one report to the runs. A report at or before a run's deadline (and not more
 * than its own ttl before the run's start) joins it; runs it bridges merge.
 */
function addReport(runs: Run[], t: number, ttl: number, sample: Event): void {
  const last = runs[runs.length - 1];
  // The common case: in order, within the newest run's silence (no allocation).
  if (last && t >= last.lastSeen && t <= last.deadline) {
    last.lastSeen = t;
    last.deadline = t + ttl;
    last.ttl = ttl;
    last.sample = sample;
    return;
  }
  // Out of order, before the last report of the run it falls in: the runs stay as they
  // are (the merge below would rebuild them unchanged). Runs are few (see KeyState).
  for (let i = runs.length - 1; i >= 0; i--) {
    const run = runs[i]!;
    if (t < run.start) continue;
    if (t < run.lastSeen) return;
    break;
  }
  const r = newRun(t, t, t + ttl, ttl, sample);
  if (runs.length === 0) {
    runs.push(r);
    return;
  }
  const all = [...runs, r].sort((a, b) => a.start - b.start);
  const merged: Run[] = [];
  for (const run of all) {
    const prev = merged[merged.length - 1];
    if (prev && run.start <= prev.deadline) {
      if (run.lastSeen >= prev.lastSeen) {
        prev.lastSeen = run.lastSeen;
        prev.deadline = run.deadline;
        prev.ttl = run.ttl;
        prev.sample = run.sample;
      }
    } else merged.push(newRun(run.start, run.lastSeen, run.deadline, run.ttl, run.sample));
  }
  runs.length = 0;
  for (const run of merged) runs.push(run);
}

/** Every run is built here, so all have one shape (the per-event update stays fast). */
function newRun(
  start: number,
  lastSeen: number,
  deadline: number,
  ttl: number,
  sample: Event,
): Run {
  return { start, lastSeen, deadline, ttl, sample };
}

export const expiryKind: KindDescriptor<'expiry'> = {
  type: 'expiry',
  options: { ttl: 'duration' },
  required: ['query_key'],
  condition: false,
  build: (raw, common) => ({ ...common, type: 'expiry', ttl: durationOr(raw.ttl, 60_000) }),
  runner: (spec, ctx) => new ExpiryRunner(spec, ctx),
};
