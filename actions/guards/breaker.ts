import type { Budget } from './config.ts';
import { seconds } from './cooldown.ts';
import type { LedgerCounts } from './ledger.ts';
import type { Suppression } from './types.ts';

/**
 * The circuit breaker: after `max` remediations of one key within the window, the
 * remediation is evidently not fixing it. Drover stops acting on that key and a person
 * is told (once per open breaker, by the remediator). It closes as the window slides.
 * A verification that ended ineffective counts as one more failure of the key
 * (docs/actions.md#verification; the ledger's `key` count holds both).
 */
export function checkBreakers(
  counts: LedgerCounts,
  breakers: Array<Budget & { notify?: string }>,
): (Suppression & { breaker: Budget & { notify?: string }; count: number }) | undefined {
  for (const [i, b] of breakers.entries()) {
    const count = counts.key[i] ?? 0;
    if (count >= b.max)
      return {
        guard: 'circuit-breaker',
        reason: `${count} remediations of this key (ineffective verdicts included) within ${seconds(b.windowMs)} did not fix it: stopped acting${b.notify ? `, escalated through ${b.notify}` : ''}`,
        breaker: b,
        count,
      };
  }
  return undefined;
}
