/**
 * JSON.parse, without a thrown SyntaxError for every bad line. V8 builds an error
 * object and a message quoting the text for each throw, and that was most of what a
 * body of bad lines cost (about 2.6 s of CPU per MiB of "x\n", against 0.015 s for a
 * MiB of good lines). The first MESSAGES_FROM_PARSE bad lines of a body get JSON.parse's
 * own message (those are the ones an answer echoes); after them, each line is checked
 * first by `jsonSyntaxError`, one pass without allocation, and a bad one gets a short
 * message of ours.
 */

/** Bad lines per body whose message is JSON.parse's own. */
export const MESSAGES_FROM_PARSE = 100;

/** What `JsonLineParser.parse` returns for text that is not JSON; `error` says why. */
export const INVALID: unique symbol = Symbol('invalid JSON');

export class JsonLineParser {
  /** Bad lines seen so far. */
  invalid = 0;
  /** Why the last text given to `parse` was not JSON. */
  error = '';

  parse(text: string): unknown {
    // Until a body has had its share of bad lines, JSON.parse alone: a good line costs
    // one pass, and a bad one gets JSON.parse's message. Past it, each line is checked
    // first, so no more SyntaxErrors are thrown for this body.
    if (this.invalid < MESSAGES_FROM_PARSE) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        this.invalid++;
        this.error = (err as Error).message;
        return INVALID;
      } finally {
        Error.stackTraceLimit = limit;
      }
    }
    const at = jsonSyntaxError(text);
    if (at < 0) return JSON.parse(text) as unknown;
    this.invalid++;
    this.error = `not JSON at position ${at}`;
    return INVALID;
  }
}

const OBJECT = 1;
const ARRAY = 2;

/**
 * Where `s` stops being JSON as JSON.parse reads it (a position, possibly `s.length`),
 * or -1 when JSON.parse accepts it. Linear in `s`; its stack holds one number per open
 * object or array, so it is bounded by the text.
 */
export function jsonSyntaxError(s: string): number {
  const n = s.length;
  const stack: number[] = [];
  let i = blanks(s, 0);
  for (;;) {
    // A value starts at i.
    const c = s.charCodeAt(i);
    if (c === 0x7b) {
      i = blanks(s, i + 1);
      if (s.charCodeAt(i) === 0x7d) i++;
      else {
        i = key(s, i);
        if (i < 0) return ~i;
        stack.push(OBJECT);
        continue;
      }
    } else if (c === 0x5b) {
      i = blanks(s, i + 1);
      if (s.charCodeAt(i) === 0x5d) i++;
      else {
        stack.push(ARRAY);
        continue;
      }
    } else if (c === 0x22) {
      i = string(s, i);
      if (i < 0) return ~i;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = number(s, i);
      if (i < 0) return ~i;
    } else if (s.startsWith('true', i) || s.startsWith('null', i)) i += 4;
    else if (s.startsWith('false', i)) i += 5;
    else return Math.min(i, n);
    // After a value: close what it ends, or go on to the next.
    for (;;) {
      i = blanks(s, i);
      const top = stack.length === 0 ? 0 : stack[stack.length - 1];
      if (top === 0) return i === n ? -1 : i;
      const d = s.charCodeAt(i);
      if (d === 0x2c) {
        i = blanks(s, i + 1);
        if (top === OBJECT) {
          i = key(s, i);
          if (i < 0) return ~i;
        }
        break;
      }
      if ((top === OBJECT && d === 0x7d) || (top === ARRAY && d === 0x5d)) {
        stack.pop();
        i++;
        continue;
      }
      return Math.min(i, n);
    }
  }
}

/** JSON's whitespace from i: past it. */
function blanks(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

/** A member's key, its colon and the blanks after: where its value starts, or ~error. */
function key(s: string, i: number): number {
  if (s.charCodeAt(i) !== 0x22) return ~Math.min(i, s.length);
  i = string(s, i);
  if (i < 0) return i;
  i = blanks(s, i);
  if (s.charCodeAt(i) !== 0x3a) return ~Math.min(i, s.length);
  return blanks(s, i + 1);
}

/** The string whose quote is at i: past its closing quote, or ~error. */
function string(s: string, i: number): number {
  const n = s.length;
  i++;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return ~i;
    if (c !== 0x5c) {
      i++;
      continue;
    }
    const e = s.charCodeAt(i + 1);
    if (
      e === 0x22 ||
      e === 0x5c ||
      e === 0x2f ||
      e === 0x62 ||
      e === 0x66 ||
      e === 0x6e ||
      e === 0x72 ||
      e === 0x74
    )
      i += 2;
    else if (e === 0x75) {
      for (let k = i + 2; k < i + 6; k++) if (!isHex(s.charCodeAt(k))) return ~Math.min(k, n);
      i += 6;
    } else return ~Math.min(i + 1, n);
  }
  return ~n;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The number at i: past it, or ~error. */
function number(s: string, i: number): number {
  const n = s.length;
  if (s.charCodeAt(i) === 0x2d) i++;
  const first = s.charCodeAt(i);
  if (first === 0x30) i++;
  else if (first >= 0x31 && first <= 0x39) while (isDigit(s.charCodeAt(++i)));
  else return ~Math.min(i, n);
  if (s.charCodeAt(i) === 0x2e) {
    if (!isDigit(s.charCodeAt(++i))) return ~Math.min(i, n);
    while (isDigit(s.charCodeAt(++i)));
  }
  const e = s.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    const sign = s.charCodeAt(++i);
    if (sign === 0x2b || sign === 0x2d) i++;
    if (!isDigit(s.charCodeAt(i))) return ~Math.min(i, n);
    while (isDigit(s.charCodeAt(++i)));
  }
  return i;
}
