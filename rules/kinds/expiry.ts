import type { Event } from '../../ingest/index.ts';
import { RuleRunner, TAG_KIND } from '../runner.ts';
import type { ExpiryRule } from '../types.ts';

interface KeyState {
  lastSeen: number;
  deadline: number;
  /** The pending timer; it may be earlier than the deadline, which moved on since. */
  scheduled: number;
  ttl: number;
  sample: Event;
}

/**
 * Riemann's expired event: a key that reported goes silent for its ttl. An event's
 * numeric `ttl` field (seconds) overrides the rule's. Fires once per silence; the key
 * is then dropped, and re-arms when it reports again. A busy key does not push a timer
 * per event: the pending one, when due, re-arms itself at the deadline that has moved.
 */
export class ExpiryRunner extends RuleRunner<ExpiryRule, KeyState> {
  onEvent(event: Event, key: string, t: number): void {
    const eventTtl = event.ttl;
    const ttl = typeof eventTtl === 'number' && eventTtl > 0 ? eventTtl * 1000 : this.spec.ttl;
    // A late event whose deadline the watermark has passed can no longer decide anything.
    if (this.isLate(t) && t + ttl < this.ctx.watermark) return;
    let state = this.keys.get(key);
    if (!state) {
      state = { lastSeen: t, deadline: t + ttl, scheduled: t + ttl, ttl, sample: event };
      this.keys.set(key, state);
      this.rememberKey(key, event);
      this.ctx.schedule(this, key, state.deadline, TAG_KIND);
      return;
    }
    if (t < state.lastSeen) return; // a late event says nothing about the silence after lastSeen
    state.lastSeen = t;
    state.ttl = ttl;
    state.sample = event;
    state.deadline = t + ttl;
    if (state.deadline < state.scheduled) {
      state.scheduled = state.deadline;
      this.ctx.schedule(this, key, state.deadline, TAG_KIND);
    }
  }

  override onTimer(key: string, at: number, tag: number): void {
    if (tag !== TAG_KIND) {
      super.onTimer(key, at, tag);
      return;
    }
    const state = this.keys.get(key);
    if (!state || state.scheduled !== at) return;
    if (at < state.deadline) {
      state.scheduled = state.deadline;
      this.ctx.schedule(this, key, state.deadline, TAG_KIND);
      return;
    }
    this.fire(key, at, {
      figures: { last_seen: new Date(state.lastSeen).toISOString(), ttl_ms: state.ttl },
      sample: state.sample,
    });
    this.forgetKey(key);
  }

  keyBytes(): number {
    return 64;
  }
  protected encodeKey(s: KeyState): unknown {
    return s;
  }
  protected decodeKey(data: unknown): KeyState {
    return data as KeyState;
  }
}
