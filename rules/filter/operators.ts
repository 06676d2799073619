import { regexHazard } from './regex-safety.ts';

/**
 * The operators Drover adds to json-rules-engine's own, with the exact semantics both
 * the reference engine and the compiled filters use.
 */

/**
 * A `matches` value: `"pattern"` or a literal `"/pattern/flags"` with flags from imsu.
 * A pattern that could backtrack catastrophically on the sender's text is refused
 * (see regexHazard): it never runs, whoever built the rule.
 */
export function parseRegex(value: unknown): RegExp {
  if (typeof value !== 'string')
    throw new Error(`matches needs a string pattern, got ${JSON.stringify(value)}`);
  const literal = /^\/(.*)\/([imsu]*)$/s.exec(value);
  const re = literal ? new RegExp(literal[1]!, literal[2]) : new RegExp(value);
  const hazard = regexHazard(re.source, re.flags);
  if (hazard !== undefined) throw new UnsafeRegexError(hazard);
  return re;
}

export class UnsafeRegexError extends Error {
  constructor(reason: string) {
    super(`unsafe regular expression: ${reason}`);
    this.name = 'UnsafeRegexError';
  }
}

/**
 * `matches` reads at most this many UTF-16 units of a value: a pattern that passed lint
 * is safe from catastrophic backtracking, but even a linear or quadratic scan should
 * not be as long as the sender likes. A match past the first 8 KiB is not seen.
 */
export const MATCH_INPUT_LIMIT = 8192;

/** `re.test` on the first MATCH_INPUT_LIMIT units of a string. */
export function testCapped(re: RegExp, s: string): boolean {
  return re.test(s.length > MATCH_INPUT_LIMIT ? s.slice(0, MATCH_INPUT_LIMIT) : s);
}

/** Bounded by the number of distinct literal patterns in the loaded rules (trusted). */
const regexCache = new Map<string, RegExp>();
const REGEX_CACHE_LIMIT = 10_000;
function cachedRegex(value: string): RegExp {
  let re = regexCache.get(value);
  if (!re) {
    re = parseRegex(value);
    if (regexCache.size >= REGEX_CACHE_LIMIT) regexCache.clear();
    regexCache.set(value, re);
  }
  return re;
}

/**
 * Whether a value can become a primitive without throwing. JSON has no functions, so
 * an object whose own `toString` is data (`{"toString": 1}`) cannot: `String(v)`, `<`
 * and `indexOf` on it throw. Linear in the value's size (Array#join walks it once).
 */
export function coercible(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return true;
  try {
    String(v);
    return true;
  } catch {
    return false;
  }
}

/**
 * json-rules-engine's numeric operators accept a fact only if this holds. A value that
 * cannot be coerced is not a number (json-rules-engine would throw instead).
 */
export function numberValidator(factValue: unknown): boolean {
  return coercible(factValue) && Number.parseFloat(factValue as string).toString() !== 'NaN';
}

/**
 * `in` against a fact reference: json-rules-engine calls `b.indexOf(a)`, which throws
 * when b is neither a list nor a string. Such a b contains nothing.
 */
export function includes(list: unknown, v: unknown): boolean {
  if (Array.isArray(list)) return list.indexOf(v) > -1;
  if (typeof list === 'string') return coercible(v) && list.indexOf(v as string) > -1;
  return false;
}

export interface CustomOperator {
  name: string;
  evaluate: (factValue: unknown, value: unknown) => boolean;
}

export const CUSTOM_OPERATORS: CustomOperator[] = [
  {
    // The pattern is a literal of the rule file (lint refuses a fact reference); any
    // other value matches nothing rather than throwing.
    name: 'matches',
    evaluate: (a, b) => {
      if (typeof a !== 'string' || typeof b !== 'string') return false;
      return testCapped(cachedRegex(b), a);
    },
  },
  // A field that is present with the value null exists; only an absent field does not.
  { name: 'exists', evaluate: (a, b) => (b === false ? a === undefined : a !== undefined) },
  {
    name: 'startsWith',
    evaluate: (a, b) => typeof a === 'string' && typeof b === 'string' && a.startsWith(b),
  },
  {
    name: 'endsWith',
    evaluate: (a, b) => typeof a === 'string' && typeof b === 'string' && a.endsWith(b),
  },
];

/**
 * Resolves a simple JSONPath (`$`, `$.a.b`, `$[0]`, `$.a[1].b`) the way
 * json-rules-engine does through jsonpath-plus: only on an object value (a
 * non-object is returned unchanged), undefined when a step is missing.
 */
export function pathSegments(path: string): Array<string | number> {
  if (!path.startsWith('$')) throw new Error(`path must start with $: ${path}`);
  const segments: Array<string | number> = [];
  const re = /\.([A-Za-z_$@][\w$@-]*)|\[(\d+)\]|\['([^']*)'\]/y;
  re.lastIndex = 1;
  while (re.lastIndex < path.length) {
    const start = re.lastIndex;
    const m = re.exec(path);
    if (!m || m.index !== start)
      throw new Error(`unsupported path ${path}: use $.a.b, $[0] or $.a[1].b`);
    segments.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : m[3]!));
  }
  return segments;
}

export function resolvePath(value: unknown, segments: Array<string | number>): unknown {
  if (value === null || typeof value !== 'object') return value;
  let cur: unknown = value;
  for (const s of segments) {
    // Own properties only: `$.toString` names a field, never Object.prototype's method.
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, s)) return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}
