import type { Logger } from './logger.ts';
import type { Telemetry } from './telemetry.ts';

export interface RefusalReporterOptions {
  telemetry: Pick<Telemetry, 'ruleKeysRefused' | 'ruleTermsRefused'>;
  logger: Pick<Logger, 'warn'>;
  /** Wall clock, epoch ms. */
  clock?: () => number;
  /** At most one log line per rule and kind of refusal in this period. Default 1 min. */
  everyMs?: number;
}

/**
 * Reports keys and terms a rule refused at its cap (the engine's `onRefused`): every
 * refusal is counted in drover_rule_{keys,terms}_refused_total{rule}; a warning is
 * logged at the first one and then at most once a minute per rule, with how many were
 * refused since the last line. The state is one entry per rule name and kind, bounded
 * by the rules loaded (configuration), never by event values.
 */
export function createRefusalReporter(
  options: RefusalReporterOptions,
): (rule: string, what: 'key' | 'term', cap: number) => void {
  const { telemetry, logger } = options;
  const clock = options.clock ?? Date.now;
  const everyMs = options.everyMs ?? 60_000;
  const pending = new Map<string, { lastLogAt: number; refused: number }>();
  return (rule, what, cap) => {
    (what === 'key' ? telemetry.ruleKeysRefused : telemetry.ruleTermsRefused).inc({ rule });
    const id = `${what}\u0000${rule}`;
    const now = clock();
    let entry = pending.get(id);
    if (!entry) {
      entry = { lastLogAt: Number.NEGATIVE_INFINITY, refused: 0 };
      pending.set(id, entry);
    }
    entry.refused++;
    if (now - entry.lastLogAt < everyMs) return;
    logger.warn(
      { rule, what, cap, refused: entry.refused },
      `new ${what}s are refused at the rule's cap (max_${what}s): raise it or narrow the rule's filter or query_key`,
    );
    entry.lastLogAt = now;
    entry.refused = 0;
  };
}
