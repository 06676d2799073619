import type { LedgerCounts } from './ledger.ts';
import type { Suppression } from './types.ts';

/** Per target: no second action on the same target within the cooldown. */
export function checkCooldown(
  counts: LedgerCounts,
  cooldownMs: number,
  target: string,
  now: number,
): Suppression | undefined {
  const last = counts.lastOnTarget;
  if (last === undefined || now - last >= cooldownMs) return undefined;
  return {
    guard: 'cooldown',
    reason: `${target} was acted on ${seconds(now - last)} ago (cooldown ${seconds(cooldownMs)})`,
  };
}

export function seconds(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}
