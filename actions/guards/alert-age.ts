import type { Suppression } from './types.ts';

/**
 * The alert's age: a remediation acts on the fleet as it is now, so it is refused for an
 * alert that fired longer ago than `maxAgeMs` of the wall clock (event time, `alert.at`,
 * against the remediator's clock). Rules judge a replay of history as they judge live
 * events (a first start over a topic's retained days, a changelog lost, a long outage's
 * backlog), and an alert from that history names replicas and loads that may be gone:
 * it is journaled, not acted on. `maxAgeMs` 0: no limit. An alert whose time is ahead of
 * the clock (at most the rules' `maxFutureSkew`) is age 0.
 */
export function checkAlertAge(
  alertAt: number,
  now: number,
  maxAgeMs: number,
): Suppression | undefined {
  if (maxAgeMs <= 0 || !Number.isFinite(alertAt)) return undefined;
  const age = now - alertAt;
  if (age <= maxAgeMs) return undefined;
  return {
    guard: 'alert-age',
    reason: `skipped: stale alert: it fired at ${new Date(alertAt).toISOString()} in event time, ${seconds(age)} before now (guards.maxAlertAge ${seconds(maxAgeMs)})`,
  };
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 3600 ? `${(s / 3600).toFixed(1)}h` : s >= 60 ? `${Math.round(s / 60)}m` : `${s}s`;
}
