import type { Event } from '../../ingest/model/index.ts';
import { RuleRunner, TAG_KIND } from '../runner.ts';
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

interface KeyState {
  /**
   * Runs in time order, disjoint. Events arriving out of order may open a run before
   * another whose deadline the watermark has not passed yet; runs are dropped as they
   * fire, so a key holds at most (allowed lateness / ttl) + 1 of them.
   */
  runs: Run[];
  /** The pending timer: the first run's deadline. */
  scheduled: number;
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
      state = { runs: [], scheduled: Number.POSITIVE_INFINITY };
      this.keys.set(key, state);
      this.rememberKey(key, event);
    }
    addReport(state.runs, t, ttl, event);
    const first = state.runs[0]!.deadline;
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
    const run = state.runs[0]!;
    if (at < run.deadline) {
      state.scheduled = run.deadline;
      this.ctx.schedule(this, key, run.deadline, TAG_KIND);
      return;
    }
    state.runs.shift();
    this.fire(key, at, {
      figures: { last_seen: new Date(run.lastSeen).toISOString(), ttl_ms: run.ttl },
      sample: run.sample,
    });
    const next = state.runs[0];
    if (!next) {
      this.forgetKey(key);
      return;
    }
    state.scheduled = next.deadline;
    this.ctx.schedule(this, key, next.deadline, TAG_KIND);
  }

  keyBytes(state: KeyState): number {
    return 32 + state.runs.length * 64;
  }
  protected encodeKey(s: KeyState): unknown {
    return s;
  }
  protected decodeKey(data: unknown, version: number): KeyState {
    if (version === 1) {
      // Version 1 held one run: the newest report and its deadline.
      const d = data as { lastSeen: number; deadline: number; ttl: number; sample: Event };
      const run = { start: d.lastSeen, lastSeen: d.lastSeen, deadline: d.deadline, ttl: d.ttl };
      return { runs: [{ ...run, sample: d.sample }], scheduled: d.deadline };
    }
    const d = data as { runs: Run[]; scheduled: number | null };
    return { runs: d.runs, scheduled: d.scheduled ?? Number.POSITIVE_INFINITY };
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
