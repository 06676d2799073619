import type { Decision, ListOptions, RemediationStore } from './types.ts';

/**
 * `drover actions list`: the journal, newest first, filtered by time and rule, as text
 * for a person or JSON lines for a program.
 */
export async function listJournal(
  store: Pick<RemediationStore, 'list'>,
  options: ListOptions = {},
): Promise<Decision[]> {
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0))
    throw new RangeError(`limit must be a positive integer, not ${options.limit}`);
  if (options.since !== undefined && !Number.isFinite(options.since))
    throw new RangeError('since must be a time');
  return store.list({ limit: 100, ...options });
}

export type JournalFormat = 'text' | 'json';

export function formatJournal(entries: Decision[], format: JournalFormat = 'text'): string {
  if (format === 'json') return entries.map((d) => `${JSON.stringify(d)}\n`).join('');
  if (format !== 'text') throw new RangeError(`format is text or json, not ${String(format)}`);
  return entries.map((d) => `${formatDecision(d)}\n`).join('');
}

/** One line: when, outcome, rule, adapter:operation target, alert, verification, and why. */
export function formatDecision(d: Decision): string {
  const why = d.guard
    ? `  [${d.guard}] ${d.reason ?? ''}`
    : d.error
      ? `  error: ${d.error}`
      : d.reason
        ? `  ${d.reason}`
        : '';
  const took = d.durationMs === undefined ? '' : ` (${Math.round(d.durationMs)} ms)`;
  // docs/actions.md#verification: whether the remediation helped, once known.
  const verified = d.verification ? `  verification ${d.verification.outcome}` : '';
  return `${new Date(d.at).toISOString()}  ${d.decision.padEnd(10)} ${d.rule}  ${d.adapter}:${d.operation} ${d.target}  alert ${d.alertId}${took}${verified}${why}`.trimEnd();
}
