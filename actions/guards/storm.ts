import type { Budget } from './config.ts';
import { seconds } from './cooldown.ts';
import type { LedgerCounts } from './ledger.ts';
import type { Suppression } from './types.ts';

/**
 * The storm cap: a rule that acts on more than `max` distinct keys within the window
 * is not seeing N problems but one (a bad deploy, a network partition, a flood of
 * forged events with a new host name each). A key the rule already acted on in the
 * window goes on; a new one is suppressed, and the remediator tells a person once per
 * window about the storm itself. The keys counted are attempts in the ledger, which
 * this cap itself bounds: at most `max` distinct keys per rule and window.
 */
export type StormCap = Budget & { notify?: string };

export function checkStorm(
  counts: LedgerCounts,
  rule: string,
  caps: StormCap[],
): (Suppression & { cap: StormCap; keys: number }) | undefined {
  for (const [i, cap] of caps.entries()) {
    const c = counts.storm?.[i];
    if (!c || c.thisKey || c.otherKeys < cap.max) continue;
    return {
      guard: 'storm',
      reason: `rule ${rule} acted on ${c.otherKeys} distinct keys within ${seconds(cap.windowMs)} (cap ${cap.max}): a storm; actions on further keys are suspended`,
      cap,
      keys: c.otherKeys,
    };
  }
  return undefined;
}
