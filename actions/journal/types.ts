import type { ActionObject, Alert } from '../../rules/index.ts';
import type { GuardCheck } from '../guard-trace.ts';
import type {
  Attempt,
  Inhibitor,
  LedgerCounts,
  LedgerQuery,
  Silence,
  Suppression,
} from '../guards/index.ts';

/**
 * The journal entry: one decision on one action of one alert. `executed` carries the
 * adapter's result, `suppressed` the guard that stopped it and why, `failed` the
 * error; `dry-run` what would have run.
 */
export type DecisionKind = 'executed' | 'suppressed' | 'dry-run' | 'failed';

export interface Decision {
  /** alert id + `#` + the action's position: the idempotency key. */
  id: string;
  /** When the decision was taken (epoch ms). */
  at: number;
  alertId: string;
  rule: string;
  key: Record<string, unknown>;
  adapter: string;
  operation: string;
  target: string;
  params?: Record<string, unknown>;
  decision: DecisionKind;
  guard?: string;
  reason?: string;
  /**
   * An alert waiting in a notification group (guard `group`): the id of the grouped
   * notification it goes out in, which a restart rebuilds the group under.
   */
  notification?: string;
  result?: Record<string, unknown>;
  error?: string;
  /** From the decision to the adapter's answer. */
  durationMs?: number;
  /** The alert as it arrived. */
  alert?: Alert;
  /**
   * An executed kill-and-replace or scale: whether it helped (actions/verification.ts,
   * docs/actions.md#verification). `pending` until the alert resolves or the window ends.
   */
  verification?: Verification;
  /** Every guard evaluated, in order, with its inputs (actions/guard-trace.ts). */
  guards?: GuardCheck[];
}

/** How a remediation's verification ended; `pending` while its window is open. */
export type VerificationOutcome = 'pending' | 'effective' | 'ineffective' | 'skipped';

export interface Verification {
  outcome: VerificationOutcome;
  /** The window (`verify_within`), ms of event time. */
  withinMs: number;
  /** Event time the window opens at: the alert's (ISO 8601). */
  since: string;
  /** Wall clock (epoch ms) at which the window ends if event time has not ended it. */
  deadline: number;
  /** `rollback: true` on a scale: the size before it (the adapter's `from`). */
  rollbackTo?: number;
  /** The action to run when it ends ineffective (`on_ineffective`). */
  onIneffective?: ActionObject;
  /** When the outcome was decided (epoch ms); absent while pending. */
  decidedAt?: number;
  /** What decided it: the alert's resolution, event time, or the wall clock. */
  by?: 'resolution' | 'event-time' | 'wall-clock';
  /** The resolution's event time, when it resolved. */
  resolvedAt?: string;
  /** One line for the journal's reader. */
  reason?: string;
}

export interface ListOptions {
  since?: number;
  rule?: string;
  /** Only the entries of this alert (its actions, notices, resolution and verification). */
  alertId?: string;
  limit?: number;
}

/** Ids journaled() answers for at once. */
export const MAX_JOURNALED_IDS = 1_000;

type MaybePromise<T> = T | Promise<T>;

/**
 * The rules task an alert came from and the rules group's generation it was fired in.
 * Bound: one remembered generation per task id; task ids are partition numbers of the
 * rules' topics (configuration, not data).
 */
export interface ClaimFence {
  task: number;
  generation: number;
}

/**
 * Durable remediation state: the journal, idempotency claims, the ledger behind
 * cooldowns, budgets, breakers and blast radius, the kill switch, silences, breaker
 * notices and inhibitions. The SQLite store answers synchronously, the Elasticsearch
 * store asynchronously; the remediator awaits both.
 */
export interface RemediationStore {
  /**
   * Claims an idempotency key; false when it was claimed before (a replay, another
   * worker), or when `fence` names a rules task for which a newer generation has claimed
   * already (a Kafka rules worker that lost the task: docs/scale-out.md). A claim with a
   * fence records its generation as the task's latest seen.
   */
  claim(id: string, at: number, fence?: ClaimFence): MaybePromise<boolean>;
  /** Claims that never got a journal entry: a crash between deciding and journaling. */
  interruptedClaims(): MaybePromise<Array<{ id: string; at: number }>>;
  record(d: Decision): MaybePromise<void>;
  list(options?: ListOptions): MaybePromise<Decision[]>;
  /**
   * Alerts waiting in a notification group: entries journaled `suppressed` with guard
   * `group` at or after `since`, the newest `limit` of them, returned oldest first.
   */
  grouped(since: number, limit: number): MaybePromise<Decision[]>;
  /** Which of `ids` have a journal entry (any decision); at most 1,000 ids are asked. */
  journaled(ids: string[]): MaybePromise<Set<string>>;
  /** Executed entries whose verification is still `pending`, oldest first, at most `limit`. */
  pendingVerifications(limit: number): MaybePromise<Decision[]>;
  /**
   * Ends the verification of the entry `id` if it is still pending (compare and set):
   * false when another worker, or an earlier run, ended it first, or there is no such entry.
   */
  settleVerification(id: string, verification: Verification): MaybePromise<boolean>;
  /** The ledger as it stands (a pre-check, to skip needless work). */
  ledger(query: LedgerQuery): MaybePromise<LedgerCounts>;
  /**
   * Checks the ledger and appends the attempt if the check passes, as one step where
   * the back end allows (SQLite: one transaction across processes).
   */
  reserve(
    attempt: Attempt,
    query: LedgerQuery,
    check: (counts: LedgerCounts) => Suppression | undefined,
  ): MaybePromise<Suppression | undefined>;
  killSwitch(): MaybePromise<boolean>;
  setKillSwitch(on: boolean): MaybePromise<void>;
  addSilence(
    matchers: Record<string, string>,
    until: number,
    comment?: string,
    options?: { expireOnResolve?: boolean },
  ): MaybePromise<number | string>;
  /** Silences still in force at `now`. */
  silences(now: number): MaybePromise<Silence[]>;
  removeSilence(id: number | string): MaybePromise<boolean>;
  /** True only the first time for `key` until `until`: one escalation per open breaker. */
  noticeOnce(key: string, now: number, until: number): MaybePromise<boolean>;
  inhibit(service: string, until: number): MaybePromise<void>;
  inhibitedUntil(service: string): MaybePromise<number | undefined>;
  /**
   * A service-wide firing (`firing`: a digest of its rule and key) inhibits `service`
   * until it is released, at most until `until`. One per firing: bounded by the firings
   * the rules track (max_keys per rule), each gone when it resolves or expires.
   */
  inhibitFiring(service: string, firing: string, alert: string, until: number): MaybePromise<void>;
  releaseFiring(service: string, firing: string): MaybePromise<void>;
  /** The firings inhibiting `service` at `now`. */
  inhibitors(service: string, now: number): MaybePromise<Inhibitor[]>;
  /**
   * Deletes journal entries older than `maxAgeMs` before `now`, then the oldest beyond
   * `maxEntries`, in slices; with them the claims older than the oldest entry kept, and
   * ledger attempts older than `maxAgeMs` (budgets count them within their windows).
   */
  prune(options: {
    now: number;
    maxAgeMs: number;
    maxEntries: number;
    /** Rows deleted per step, so a large retention never holds a long write. */
    slice?: number;
  }): MaybePromise<PruneResult>;
  close(): MaybePromise<void>;
}

/** What a store reports after a prune. */
export interface PruneResult {
  /** Journal entries deleted. */
  entries: number;
}
