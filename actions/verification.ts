import { createHash } from 'node:crypto';
import type { ActionObject, Alert, StateChange } from '../rules/index.ts';
import { INEFFECTIVE_OPERATION, keyId } from './guards/index.ts';
import type { Decision, RemediationStore, Verification } from './journal/types.ts';
import type { GroupTimers } from './notify-groups.ts';

/**
 * The closed loop (docs/actions.md#verification): after a kill-and-replace or scale
 * runs, did the alert go away? The action's journal entry carries a verification,
 * `pending` until the alert's firing (same rule and key) resolves within `verify_within`
 * of event time — `effective` — or the window ends first — `ineffective`.
 *
 * Which clock: alert states are decided in event time, so the window is too. It opens at
 * the alert's event time and ends when the rules' watermark passes its end; a resolution
 * at or before the end is effective (the engine emits a resolution before the watermark
 * passes its instant, so one that helped is always seen first). The wall clock is the
 * fallback for an event time that stalls (no data at all, a held input): a window also
 * ends, ineffective, at the action's wall time plus twice `verify_within`.
 *
 * The journal is the state: pending verifications are listed from the store at start
 * (`restore`) and ended by compare and set (`settleVerification`), so a restart, a
 * replay or a second worker ends each once.
 */

/** `verify_within` by default, per operation: a replacement shows within minutes, a scale-out later. */
export const DEFAULT_VERIFY_WITHIN_MS = { 'kill-and-replace': 5 * 60_000, scale: 10 * 60_000 };

/**
 * Verifications held at once, across rules. Each is an executed remediation (spent from
 * budgets), so the bound is rarely near; past it a new one is journaled `skipped`.
 */
export const MAX_PENDING_VERIFICATIONS = 10_000;

/** The wall-clock fallback: the action's wall time plus this many windows. */
export const WALL_CLOCK_WINDOWS = 2;

/** What an action asks to be verified with (policy.ts fills it in from the rule). */
export interface VerifySpec {
  withinMs: number;
  rollback?: boolean;
  onIneffective?: ActionObject;
}

export interface VerifierOptions {
  store: RemediationStore;
  /** Wall clock, epoch ms. */
  clock: () => number;
  /** A verification ended (journaled already): escalate, roll back, count. */
  onEnd: (entry: Decision & { verification: Verification }) => Promise<void>;
  /** The firing of this rule and key that resolved last, if the remediator knows of one. */
  lastResolution?: (
    rule: string,
    key: Record<string, unknown>,
  ) => { since: number; at: number } | undefined;
  timers?: GroupTimers;
  maxPending?: number;
  onError?: (err: unknown, entry: Decision) => void;
}

export class Verifier {
  /** Entry id → the executed entry whose window is open (at most maxPending). */
  private readonly pending = new Map<string, Decision & { verification: Verification }>();
  /** Digest of rule and key → entry ids pending for it (the same bound). */
  private readonly byKey = new Map<string, Set<string>>();
  private watermark = Number.NEGATIVE_INFINITY;
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private readonly timers: GroupTimers;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly options: VerifierOptions) {
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return t;
      },
      clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
    };
  }

  get size(): number {
    return this.pending.size;
  }

  /**
   * The verification an executed action starts with, or undefined when it has none
   * (a notification, a rollback). `skipped` when there is nothing to verify (a scale
   * that changed no size) or the bound on pending verifications is reached.
   */
  open(
    operation: string,
    spec: VerifySpec | undefined,
    alert: Alert,
    result: Record<string, unknown> | undefined,
  ): Verification | undefined {
    if (!spec) return undefined;
    const now = this.options.clock();
    const base: Verification = {
      outcome: 'pending',
      withinMs: spec.withinMs,
      since: alert.at,
      deadline: now + WALL_CLOCK_WINDOWS * spec.withinMs,
      ...(spec.onIneffective && { onIneffective: spec.onIneffective }),
    };
    const from = result?.from;
    const to = result?.to;
    if (operation === 'scale' && typeof from === 'number' && from === to)
      return this.skipped(
        base,
        now,
        `the scale changed nothing (${String(from)} replicas): nothing to verify`,
      );
    if (!Number.isFinite(Date.parse(alert.at)))
      return this.skipped(base, now, 'the alert has no event time to measure the window from');
    if (this.pending.size >= (this.options.maxPending ?? MAX_PENDING_VERIFICATIONS))
      return this.skipped(
        base,
        now,
        `more than ${this.options.maxPending ?? MAX_PENDING_VERIFICATIONS} verifications pending`,
      );
    if (spec.rollback && operation === 'scale') {
      if (typeof from !== 'number')
        return { ...base, reason: 'no rollback: the adapter did not report the size before' };
      return { ...base, rollbackTo: from };
    }
    return base;
  }

  private skipped(base: Verification, now: number, reason: string): Verification {
    const { onIneffective: _unused, ...rest } = base;
    return { ...rest, outcome: 'skipped', decidedAt: now, reason: `skipped: ${reason}` };
  }

  /** Holds a journaled entry whose verification is pending, until it ends. */
  track(entry: Decision): void {
    const v = entry.verification;
    if (v?.outcome !== 'pending' || this.pending.has(entry.id)) return;
    const held = entry as Decision & { verification: Verification };
    this.pending.set(entry.id, held);
    const k = digest(entry.rule, entry.key);
    let ids = this.byKey.get(k);
    if (!ids) this.byKey.set(k, (ids = new Set()));
    ids.add(entry.id);
    // It may have resolved while the action ran, before it was held here.
    const r = this.options.lastResolution?.(entry.rule, entry.key);
    const since = Date.parse(v.since);
    if (r && since >= r.since && since <= r.at) {
      this.judge(held, r.at, new Date(r.at).toISOString());
      return;
    }
    if (since + v.withinMs < this.watermark) {
      this.end(held, 'ineffective', 'event-time', this.windowEnded(v));
      return;
    }
    this.schedule();
  }

  /**
   * Rebuilds the pending verifications from the journal (at start). A restart replays
   * the events after the rules' snapshot, so resolutions missed while down arrive again;
   * the wall-clock fallback restarts from now for windows that passed while down.
   */
  async restore(): Promise<number> {
    const now = this.options.clock();
    const entries = await this.options.store.pendingVerifications(
      this.options.maxPending ?? MAX_PENDING_VERIFICATIONS,
    );
    for (const e of entries) {
      const v = e.verification!;
      this.track({
        ...e,
        verification: { ...v, deadline: Math.max(v.deadline, now + v.withinMs) },
      });
    }
    return entries.length;
  }

  /** A firing resolved: every pending verification of its rule and key ends. */
  resolved(change: StateChange): void {
    if (change.state !== 'resolved') return;
    const ids = this.byKey.get(digest(change.rule, change.key));
    if (!ids) return;
    const at = Date.parse(change.at);
    for (const id of [...ids]) {
      const entry = this.pending.get(id)!;
      // A resolution before the action's alert closes an earlier firing.
      if (at < Date.parse(entry.verification.since)) continue;
      this.judge(entry, at, change.at);
    }
  }

  private judge(entry: Decision & { verification: Verification }, at: number, iso: string): void {
    const v = entry.verification;
    const end = Date.parse(v.since) + v.withinMs;
    const after = seconds(at - Date.parse(v.since));
    if (at <= end)
      this.end(
        entry,
        'effective',
        'resolution',
        `effective: the alert resolved at ${iso}, ${after} after it fired (window ${seconds(v.withinMs)})`,
        iso,
      );
    else
      this.end(
        entry,
        'ineffective',
        'resolution',
        `ineffective: the alert resolved at ${iso}, ${after} after it fired, past the window of ${seconds(v.withinMs)}`,
        iso,
      );
  }

  /** The rules' watermark moved: windows it passed end ineffective. */
  advance(watermark: number): void {
    if (!(watermark > this.watermark)) return;
    this.watermark = watermark;
    for (const entry of [...this.pending.values()]) {
      const v = entry.verification;
      if (Date.parse(v.since) + v.withinMs < watermark)
        this.end(entry, 'ineffective', 'event-time', this.windowEnded(v));
    }
  }

  /** Ends, ineffective, the windows whose wall-clock fallback has passed. */
  check(): void {
    const now = this.options.clock();
    for (const entry of [...this.pending.values()])
      if (entry.verification.deadline <= now)
        this.end(
          entry,
          'ineffective',
          'wall-clock',
          `ineffective: not resolved, and event time did not reach the window's end within ${seconds(WALL_CLOCK_WINDOWS * entry.verification.withinMs)} of wall-clock time`,
        );
    this.schedule();
  }

  /** Resolves when the verifications ended so far are journaled and acted on. */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  close(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private windowEnded(v: Verification): string {
    return `ineffective: not resolved within ${seconds(v.withinMs)} of event time`;
  }

  private schedule(): void {
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.pending.values()) next = Math.min(next, e.verification.deadline);
    if (next === this.timerAt) return;
    this.close();
    if (next === Number.POSITIVE_INFINITY) return;
    this.timerAt = next;
    // Long windows are re-armed hourly (a timer holds at most about 24 days).
    const delay = Math.min(Math.max(0, next - this.options.clock()), 3_600_000);
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.check();
    }, delay);
  }

  private end(
    entry: Decision & { verification: Verification },
    outcome: 'effective' | 'ineffective',
    by: NonNullable<Verification['by']>,
    reason: string,
    resolvedAt?: string,
  ): void {
    // Out of the table at once: a later resolution or tick does not end it twice.
    this.pending.delete(entry.id);
    const k = digest(entry.rule, entry.key);
    const ids = this.byKey.get(k);
    ids?.delete(entry.id);
    if (ids?.size === 0) this.byKey.delete(k);
    const verification: Verification = {
      ...entry.verification,
      outcome,
      decidedAt: this.options.clock(),
      by,
      reason,
      ...(resolvedAt && { resolvedAt }),
    };
    const p = this.finish({ ...entry, verification }).catch((err: unknown) =>
      this.options.onError?.(err, entry),
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async finish(entry: Decision & { verification: Verification }): Promise<void> {
    const store = this.options.store;
    // Another worker, or this one before a restart, may have ended it first.
    if (!(await store.settleVerification(entry.id, entry.verification))) return;
    if (entry.verification.outcome === 'ineffective')
      await store.reserve(
        {
          id: `${entry.id}/verdict`,
          at: entry.verification.decidedAt!,
          rule: entry.rule,
          keyId: keyId(entry.rule, entry.key),
          adapter: entry.adapter,
          target: entry.target,
          operation: INEFFECTIVE_OPERATION,
          shadow: false,
        },
        {
          now: entry.verification.decidedAt!,
          shadow: false,
          rule: entry.rule,
          keyId: keyId(entry.rule, entry.key),
          adapter: entry.adapter,
          target: entry.target,
          ruleWindows: [],
          globalWindows: [],
          breakerWindows: [],
          blastWindowMs: 0,
        },
        () => undefined,
      );
    await this.options.onEnd(entry);
  }
}

function digest(rule: string, key: Record<string, unknown>): string {
  return createHash('sha1').update(keyId(rule, key)).digest('hex');
}

function seconds(ms: number): string {
  return ms % 60_000 === 0 && ms > 0 ? `${ms / 60_000}m` : `${Math.round(ms / 100) / 10}s`;
}
