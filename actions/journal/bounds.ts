import type { Decision } from './types.ts';

/**
 * What the journal keeps, and for how long. Every decision records the alert that led
 * to it, whose sample event and figures were written by whoever sent the event: each
 * entry's alert is capped in bytes, and the journal as a whole in age and entries,
 * pruned periodically by the store (`prune`).
 */
export interface JournalBounds {
  /** Entries older than this are deleted. Default 30 days. */
  maxAgeMs: number;
  /** At most this many entries; the oldest beyond are deleted. Default 1,000,000. */
  maxEntries: number;
  /** The alert kept with an entry, as JSON, at most this many bytes. Default 16 KiB. */
  maxAlertBytes: number;
}

export const DEFAULT_JOURNAL_BOUNDS: JournalBounds = {
  maxAgeMs: 30 * 86_400_000,
  maxEntries: 1_000_000,
  maxAlertBytes: 16 * 1024,
};

/**
 * The decision with its alert within `maxBytes` of JSON: the sample event goes first,
 * then the figures, each replaced by a marker saying how large it was; the rule's own
 * parts (id, rule, key, labels, actions) stay. A key larger than the cap on its own —
 * key fields are the rule's choice, their values the sender's — drops the alert's copy
 * of the key too (the entry keeps its own `key`, which the store needs).
 */
export function boundDecision(d: Decision, maxBytes: number): Decision {
  if (!d.alert) return d;
  let alert = d.alert;
  const size = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? '');
  const marker = (what: string, bytes: number) => ({
    truncated: `${what} of ${bytes} bytes dropped: the journal keeps at most ${maxBytes} bytes of an alert`,
  });
  if (size(alert) <= maxBytes) return d;
  if (alert.sample !== undefined)
    alert = { ...alert, sample: marker('sample', size(alert.sample)) };
  if (size(alert) > maxBytes) alert = { ...alert, figures: marker('figures', size(alert.figures)) };
  if (size(alert) > maxBytes) alert = { ...alert, key: marker('key', size(alert.key)) };
  if (size(alert) > maxBytes && alert.description !== undefined)
    alert = { ...alert, description: `${alert.description.slice(0, 200)}…` };
  if (size(alert) <= maxBytes) return { ...d, alert };
  const { alert: _dropped, ...rest } = d;
  return rest;
}
