import type { GroupHealth, ScaleParams } from '../adapters/types.ts';
import { share } from './config.ts';
import type { LedgerCounts } from './ledger.ts';
import type { Suppression } from './types.ts';

/**
 * How many healthy members an action takes away. Replacing a member that is already
 * unhealthy takes none: that sick instance is what remediation is for. Scaling down
 * takes the difference (assumed healthy: the orchestrator picks which).
 */
export function healthyLoss(
  operation: string,
  target: string,
  params: ScaleParams | undefined,
  health: GroupHealth,
): number {
  if (operation === 'kill-and-replace') {
    const member = health.members?.find((m) => m.id === target);
    return member && !member.healthy ? 0 : 1;
  }
  if (operation === 'scale') {
    const current = health.desired ?? health.size;
    const wanted = typeof params?.to === 'number' ? params.to : current + (Number(params?.by) || 0);
    return Math.max(0, current - Math.max(wanted, params?.min ?? 0));
  }
  return 0;
}

/** Never take a group below its floor of healthy members (a count or a share of its size). */
export function checkMinHealthy(
  floors: Array<number | string>,
  health: GroupHealth,
  lost: number,
): Suppression | undefined {
  if (lost <= 0) return undefined;
  const after = health.healthy - lost;
  for (const f of floors) {
    const floor = share(f, health.size);
    if (after < floor)
      return {
        guard: 'min-healthy',
        reason: `${health.group} has ${health.healthy} healthy of ${health.size}; acting would leave ${after}, below the floor of ${floor}${typeof f === 'string' ? ` (${f})` : ''}`,
      };
  }
  return undefined;
}

/** Never replace more than a share of a group within the blast window. */
export function checkBlastRadius(
  limits: Array<number | string>,
  counts: LedgerCounts,
  target: string,
  health: GroupHealth,
): Suppression | undefined {
  const touched = new Set([...counts.groupTargets, target]);
  for (const l of limits) {
    const limit = share(l, health.size);
    if (touched.size > limit)
      return {
        guard: 'blast-radius',
        reason: `${touched.size} of ${health.size} members of ${health.group} would have been replaced within the window (limit ${limit}${typeof l === 'string' ? `, ${l}` : ''})`,
      };
  }
  return undefined;
}
