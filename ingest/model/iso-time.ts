const ZERO = 48;

/** Digits s[i..i+n) as a number, or -1 if any is not a digit. */
function digits(s: string, i: number, n: number): number {
  let v = 0;
  for (let k = i; k < i + n; k++) {
    const d = s.charCodeAt(k) - ZERO;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** Days from 1970-01-01 to the first of a month (proleptic Gregorian, month 1–12). */
function daysFromCivil(year: number, month: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5);
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/**
 * Epoch ms of an RFC 3339 timestamp as shippers write them (`2024-11-22T10:00:00.123Z`,
 * `2024-11-22T10:00:00+01:00`), read without `Date.parse`, which costs more than the
 * rest of normalizing a metric sample. Anything else is undefined, for `Date.parse` to
 * read; what this reads, it reads exactly as `Date.parse` does (tested against it).
 */
export function parseRfc3339(s: string): number | undefined {
  // YYYY-MM-DDTHH:MM:SS, then an optional fraction, then Z or ±HH:MM.
  if (s.length < 20 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return undefined;
  if (s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58)
    return undefined;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31) return undefined;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59)
    return undefined;
  let i = 19;
  let ms = 0;
  let submillisecond = false;
  if (s.charCodeAt(i) === 46) {
    // Milliseconds are the first three digits; further ones are dropped, as Date.parse does.
    let n = 0;
    i++;
    for (; i < s.length; i++, n++) {
      const d = s.charCodeAt(i) - ZERO;
      if (d < 0 || d > 9) break;
      if (n < 3) ms = ms * 10 + d;
      else if (d !== 0) submillisecond = true;
    }
    // Past nine digits Date.parse reads fractions its own way; it is left to it.
    if (n === 0 || n > 9) return undefined;
    if (n === 1) ms *= 100;
    else if (n === 2) ms *= 10;
  }
  let offsetMinutes = 0;
  const zone = s.charCodeAt(i);
  if (zone === 90) {
    if (i + 1 !== s.length) return undefined;
  } else if (zone === 43 || zone === 45) {
    if (i + 6 !== s.length || s.charCodeAt(i + 3) !== 58) return undefined;
    const oh = digits(s, i + 1, 2);
    const om = digits(s, i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return undefined;
    offsetMinutes = (zone === 43 ? 1 : -1) * (oh * 60 + om);
  } else return undefined;
  const days = daysFromCivil(year, month) + day - 1;
  const epochMs = ((days * 24 + hour) * 60 + minute - offsetMinutes) * 60_000 + second * 1000 + ms;
  // Date.parse keeps the digits past milliseconds and truncates toward zero: before
  // 1970 that rounds up, which is left to it.
  return submillisecond && epochMs < 0 ? undefined : epochMs;
}
