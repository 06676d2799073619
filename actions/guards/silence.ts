import type { Alert } from '../../rules/index.ts';
import type { Suppression } from './types.ts';

/**
 * Silences: matchers over `rule`, `type`, `labels.<name>` and `key.<field>`, all of
 * which must match, until an expiry. A value `~regex` matches by regular expression
 * (anchored), anything else exactly.
 */
export interface Silence {
  id: number | string;
  matchers: Record<string, string>;
  /** Epoch ms. */
  until: number;
  comment: string;
  createdBy?: string;
  /** Ends when an alert it matches resolves (docs/actions.md#silences), if not before. */
  expireOnResolve?: boolean;
}

export class SilenceError extends Error {}

export function validateMatchers(matchers: Record<string, string>): void {
  const fields = Object.keys(matchers);
  if (fields.length === 0) throw new SilenceError('a silence needs at least one matcher');
  for (const [field, value] of Object.entries(matchers)) {
    if (!/^(rule|type|labels\..+|key\..+)$/.test(field))
      throw new SilenceError(
        `silence matcher "${field}": use rule, type, labels.NAME or key.FIELD`,
      );
    if (typeof value !== 'string')
      throw new SilenceError(`silence matcher "${field}" must be a string`);
    if (value.startsWith('~')) {
      try {
        new RegExp(value.slice(1));
      } catch (err) {
        throw new SilenceError(`silence matcher "${field}": ${(err as Error).message}`);
      }
    }
  }
}

export function silenceMatches(matchers: Record<string, string>, alert: Alert): boolean {
  return Object.entries(matchers).every(([field, expected]) => {
    let actual: unknown;
    if (field === 'rule') actual = alert.rule;
    else if (field === 'type') actual = alert.type;
    else if (field.startsWith('labels.')) actual = alert.labels[field.slice(7)];
    else if (field.startsWith('key.')) actual = alert.key[field.slice(4)];
    if (actual === undefined || actual === null) return false;
    const text = String(actual);
    return expected.startsWith('~')
      ? new RegExp(`^(?:${expected.slice(1)})$`).test(text)
      : text === expected;
  });
}

/**
 * The silences that end because `resolved` (the alert whose firing just resolved: its
 * rule, type, key and labels) resolved: those with `expireOnResolve` that match it.
 */
export function silencesEndedBy(silences: Silence[], resolved: Alert): Silence[] {
  return silences.filter((s) => s.expireOnResolve === true && silenceMatches(s.matchers, resolved));
}

export function checkSilences(
  silences: Silence[],
  alert: Alert,
  now: number,
): Suppression | undefined {
  const s = silences.find((x) => x.until > now && silenceMatches(x.matchers, alert));
  if (!s) return undefined;
  return {
    guard: 'silenced',
    reason: `silence ${s.id} until ${new Date(s.until).toISOString()}${s.comment ? `: ${s.comment}` : ''}`,
  };
}
