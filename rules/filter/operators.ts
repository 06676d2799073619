/**
 * The operators Drover adds to json-rules-engine's own, with the exact semantics both
 * the reference engine and the compiled filters use.
 */

/** A `matches` value: `"pattern"` or a literal `"/pattern/flags"` with flags from imsu. */
export function parseRegex(value: unknown): RegExp {
  if (typeof value !== 'string')
    throw new Error(`matches needs a string pattern, got ${JSON.stringify(value)}`);
  const literal = /^\/(.*)\/([imsu]*)$/s.exec(value);
  return literal ? new RegExp(literal[1]!, literal[2]) : new RegExp(value);
}

const regexCache = new Map<string, RegExp>();
function cachedRegex(value: unknown): RegExp {
  const key = String(value);
  let re = regexCache.get(key);
  if (!re) {
    re = parseRegex(value);
    regexCache.set(key, re);
  }
  return re;
}

/** json-rules-engine's numeric operators accept a fact only if this holds. */
export function numberValidator(factValue: unknown): boolean {
  return Number.parseFloat(factValue as string).toString() !== 'NaN';
}

export interface CustomOperator {
  name: string;
  evaluate(factValue: unknown, value: unknown): boolean;
}

export const CUSTOM_OPERATORS: CustomOperator[] = [
  { name: 'matches', evaluate: (a, b) => typeof a === 'string' && cachedRegex(b).test(a) },
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
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}
