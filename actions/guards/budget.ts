import type { Budget } from './config.ts';
import { seconds } from './cooldown.ts';
import type { LedgerCounts } from './ledger.ts';
import type { Suppression } from './types.ts';

/** At most N actions per window, per rule and across all rules. */
export function checkBudgets(
  counts: LedgerCounts,
  rule: string,
  ruleBudgets: Budget[],
  globalBudgets: Budget[],
  what = 'actions',
): Suppression | undefined {
  for (const [i, b] of ruleBudgets.entries()) {
    if ((counts.rule[i] ?? 0) >= b.max)
      return {
        guard: 'budget',
        reason: `rule ${rule} used its budget of ${b.max} ${what} per ${seconds(b.windowMs)}`,
      };
  }
  for (const [i, b] of globalBudgets.entries()) {
    if ((counts.global[i] ?? 0) >= b.max)
      return {
        guard: 'budget',
        reason: `the global budget of ${b.max} ${what} per ${seconds(b.windowMs)} is used`,
      };
  }
  return undefined;
}
