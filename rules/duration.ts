/**
 * Durations as rules write them: `500ms`, `30s`, `5m`, `2h`, `7d`, `1w`, compounds like
 * `1h30m`, or ElastAlert's `{ minutes: 5 }`. Returns milliseconds.
 */
const UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const OBJECT_UNITS: Record<string, number> = {
  weeks: UNITS.w!,
  days: UNITS.d!,
  hours: UNITS.h!,
  minutes: UNITS.m!,
  seconds: UNITS.s!,
  milliseconds: 1,
};

export class DurationError extends Error {}

export function parseDuration(v: unknown): number {
  if (typeof v === 'string') {
    const text = v.trim();
    if (text === '') throw new DurationError('empty duration: use e.g. 30s, 5m, 1h30m');
    const part = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*/y;
    let total = 0;
    let pos = 0;
    while (pos < text.length) {
      part.lastIndex = pos;
      const m = part.exec(text);
      if (!m) {
        throw new DurationError(
          `invalid duration "${v}": expected a number and a unit (ms, s, m, h, d, w), e.g. 500ms, 30s, 5m, 1h30m`,
        );
      }
      total += Number(m[1]) * UNITS[m[2]!]!;
      pos = part.lastIndex;
    }
    return Math.round(total);
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0)
      throw new DurationError('empty duration object: use e.g. { minutes: 5 }');
    let total = 0;
    for (const [unit, amount] of entries) {
      const factor = OBJECT_UNITS[unit];
      if (factor === undefined) {
        throw new DurationError(
          `unknown duration unit "${unit}" (use weeks, days, hours, minutes, seconds, milliseconds)`,
        );
      }
      if (typeof amount !== 'number' || !(amount >= 0)) {
        throw new DurationError(
          `duration ${unit} must be a non-negative number, got ${JSON.stringify(amount)}`,
        );
      }
      total += amount * factor;
    }
    return Math.round(total);
  }
  if (typeof v === 'number') {
    throw new DurationError(
      `a bare number (${v}) is ambiguous as a duration: add a unit, e.g. ${v}s or ${v}m`,
    );
  }
  throw new DurationError(
    `invalid duration ${JSON.stringify(v)}: use e.g. 30s, 5m or { minutes: 5 }`,
  );
}
