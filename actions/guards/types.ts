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
  | 'adapter';

export interface Suppression {
  guard: GuardName;
  reason: string;
}
