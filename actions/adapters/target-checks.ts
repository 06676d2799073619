import { TargetRefused } from './types.ts';

/**
 * Shared checks for targets an event value may have written. Messages show a value
 * through `shown`: JSON-quoted (control characters escaped) and cut at SHOWN_CHARS, so
 * a refusal never carries more than that of an attacker's text into the journal or a log.
 */
export const SHOWN_CHARS = 64;
/** C0 and C1 control characters, DEL, and the Unicode line and paragraph separators. */
export const CONTROL = /[\p{Cc}\u2028\u2029]/u;

export function shown(value: string): string {
  return JSON.stringify(value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value);
}

/** Refuses a target not matching `pattern`, naming what it should be. */
export function expectTarget(target: string, pattern: RegExp, what: string): void {
  if (!pattern.test(target)) throw new TargetRefused(`${shown(target)} is not ${what}`, 'target');
}
