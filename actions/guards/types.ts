/** What a guard says when it stops an action: which guard, and why, for the journal. */
export type GuardName =
  | 'when'
  | 'idempotency'
  | 'kill-switch'
  | 'maintenance'
  | 'silenced'
  | 'inhibited'
  | 'circuit-breaker'
  | 'cooldown'
  | 'budget'
  | 'concurrency'
  | 'min-healthy'
  | 'blast-radius'
  | 'storm'
  | 'adapter'
  /** The alert's firing resolved before its action ran (docs/actions.md#resolved-alerts). */
  | 'resolved'
  /** The alert fired longer ago than guards.maxAlertAge (docs/actions.md#stale-alerts). */
  | 'alert-age';

export interface Suppression {
  guard: GuardName;
  reason: string;
}
