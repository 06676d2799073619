import type { Condition, FactCondition } from '../types.ts';
import {
  coercible,
  includes,
  MATCH_INPUT_LIMIT,
  numberValidator,
  parseRegex,
  pathSegments,
  resolvePath,
  testCapped,
} from './operators.ts';

export type Filter = (event: Record<string, unknown>) => boolean;

/**
 * Compiles a json-rules-engine condition into one plain synchronous function, by
 * generating straight-line JavaScript: constants hoisted, regexes compiled once,
 * small `in` lists unrolled and large ones turned into Sets. The verdicts are those of
 * json-rules-engine (with allowUndefinedFacts) on every input, quirks included:
 * numeric operators take any fact that parseFloat accepts and then compare with JS
 * coercion, `contains` only looks into arrays, an empty `any` is true, and a `path`
 * on a non-object returns the fact itself. The differential test holds it to that.
 *
 * Where json-rules-engine would throw on an event value (`in` against a fact that is not
 * a list, a comparison with `{"toString": 1}`), the compiled filter answers false
 * instead: a throw in the rules consumer would fail the batch on every retry. `matches`
 * takes a literal pattern only and reads the first MATCH_INPUT_LIMIT units of a value.
 */
const compiled = new Map<string, Filter>();
const CACHE_LIMIT = 10_000;

export function compileFilter(condition: Condition | undefined): Filter {
  if (condition === undefined) return () => true;
  // Engines are rebuilt on every rule reload: the same filter keeps its compiled (and
  // by then optimized) function instead of starting cold in the interpreter.
  const cacheKey = JSON.stringify(condition);
  const hit = compiled.get(cacheKey);
  if (hit) return hit;
  const filter = compileUncached(condition);
  if (compiled.size >= CACHE_LIMIT) compiled.clear();
  compiled.set(cacheKey, filter);
  return filter;
}

function compileUncached(condition: Condition): Filter {
  const constants: unknown[] = [];
  const constant = (v: unknown) => {
    constants.push(v);
    return `k${constants.length - 1}`;
  };
  const body = compileNode(condition, constant);
  // Constants live outside the code, so rules that differ only in their values (the
  // same filter for each service) share one function: less code, warmer caches.
  let factory = factories.get(body);
  if (!factory) {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the body is generated from a parsed filter; values stay in the constants array
    factory = new Function(
      'c',
      'h',
      `"use strict"; const { nv, rp, inc, ok, mt } = h; ${bind(constants.length)} return function filter(e) { return ${body}; };`,
    ) as Factory;
    if (factories.size >= CACHE_LIMIT) factories.clear();
    factories.set(body, factory);
  }
  return factory(constants, HELPERS);
}

/**
 * The constants as variables of the filter's closure (`const k0 = c[0], ...`): read from
 * its context, not through an array, one object fewer touched per event and rule.
 */
function bind(count: number): string {
  if (count === 0) return '';
  return `const ${Array.from({ length: count }, (_, i) => `k${i} = c[${i}]`).join(', ')};`;
}

const HELPERS = {
  nv: numberValidator,
  rp: resolvePath,
  inc: includes,
  ok: coercible,
  mt: testCapped,
};
type Factory = (c: unknown[], helpers: typeof HELPERS) => Filter;
const factories = new Map<string, Factory>();

type Hoist = (v: unknown) => string;

function compileNode(node: Condition, hoist: Hoist): string {
  if ('all' in node) return junction(node.all, '&&', hoist);
  if ('any' in node) return junction(node.any, '||', hoist);
  if ('not' in node) return `!(${compileNode(node.not, hoist)})`;
  return compileFact(node, hoist);
}

function junction(children: Condition[], op: '&&' | '||', hoist: Hoist): string {
  // json-rules-engine: an empty all and an empty any are both true.
  if (children.length === 0) return 'true';
  return `(${children.map((c) => compileNode(c, hoist)).join(` ${op} `)})`;
}

/** The expression reading a fact (with its path). */
function read(fact: string, path: string | undefined, hoist: Hoist): string {
  const access = `e[${JSON.stringify(fact)}]`;
  if (path === undefined || path === '$') return access;
  return `rp(${access}, ${hoist(pathSegments(path))})`;
}

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== 'object' && typeof v !== 'function');
}

function literal(v: unknown, hoist: Hoist): string {
  if (typeof v === 'boolean' || v === null) return String(v);
  return hoist(v);
}

function compileFact(c: FactCondition, hoist: Hoist): string {
  const a = read(c.fact, c.path, hoist);
  const ref = c.value as { fact?: unknown; path?: string } | null;
  // A value `{ fact: other }` compares with another fact, as json-rules-engine does.
  const isFactRef = ref !== null && typeof ref === 'object' && Object.hasOwn(ref, 'fact');
  const b = isFactRef ? read(String(ref.fact), ref.path, hoist) : literal(c.value, hoist);
  // Plain reads and literals are substituted in place; a path lookup is bound once.
  const simple = (x: string) => !x.startsWith('rp(');
  const op = (f: (x: string, y: string) => string) =>
    simple(a) && simple(b) ? `(${f(a, b)})` : `((a, b) => ${f('a', 'b')})(${a}, ${b})`;
  switch (c.operator) {
    case 'equal':
      return `(${a} === ${b})`;
    case 'notEqual':
      return `(${a} !== ${b})`;
    case 'in':
    case 'notIn': {
      const hit =
        !isFactRef && Array.isArray(c.value)
          ? membership(a, c.value, hoist)
          : op((x, y) => `inc(${y}, ${x})`);
      return c.operator === 'in' ? hit : `!${hit}`;
    }
    case 'contains':
      return op((x, y) => `Array.isArray(${x}) && ${x}.indexOf(${y}) > -1`);
    case 'doesNotContain':
      return op((x, y) => `Array.isArray(${x}) && ${x}.indexOf(${y}) === -1`);
    case 'lessThan':
      return compare(op, isFactRef, c.value, '<');
    case 'lessThanInclusive':
      return compare(op, isFactRef, c.value, '<=');
    case 'greaterThan':
      return compare(op, isFactRef, c.value, '>');
    case 'greaterThanInclusive':
      return compare(op, isFactRef, c.value, '>=');
    case 'matches': {
      // A pattern from the event could be catastrophic, or not a pattern at all.
      if (isFactRef)
        throw new Error(`matches takes a literal pattern, not a fact reference (${c.fact})`);
      const re = hoist(parseRegex(c.value));
      // The length test inline: most values are short, and the call costs per event.
      return op(
        (x) =>
          `typeof ${x} === "string" && (${x}.length > ${MATCH_INPUT_LIMIT} ? mt(${re}, ${x}) : ${re}.test(${x}))`,
      );
    }
    case 'exists':
      if (isFactRef)
        return op((x, y) => `${y} === false ? ${x} === undefined : ${x} !== undefined`);
      return c.value === false ? `(${a} === undefined)` : `(${a} !== undefined)`;
    case 'startsWith':
      return op(
        (x, y) => `typeof ${x} === "string" && typeof ${y} === "string" && ${x}.startsWith(${y})`,
      );
    case 'endsWith':
      return op(
        (x, y) => `typeof ${x} === "string" && typeof ${y} === "string" && ${x}.endsWith(${y})`,
      );
    default:
      throw new Error(`unknown operator ${JSON.stringify(c.operator)}`);
  }
}

type Op = (f: (x: string, y: string) => string) => string;

/** A numeric comparison; a value that cannot become a primitive compares false. */
function compare(op: Op, isFactRef: boolean, literalValue: unknown, cmp: string): string {
  if (!isFactRef && !coercible(literalValue)) return 'false';
  return op((x, y) => `${numeric(x)} && ${isFactRef ? `ok(${y}) && ` : ''}${x} ${cmp} ${y}`);
}

/** Numbers take the fast path; anything else goes through json-rules-engine's own validator. */
function numeric(v: string): string {
  return `(typeof ${v} === "number" ? ${v} === ${v} : nv(${v}))`;
}

/** `indexOf` semantics (===): unrolled for a few values, a Set for many (same result without NaN). */
function membership(a: string, values: unknown[], hoist: Hoist): string {
  if (values.length <= 4 || !values.every(isPrimitive) || values.some((v) => Number.isNaN(v))) {
    if (values.length === 0) return 'false';
    if (!a.startsWith('rp('))
      return `(${values.map((v) => `${a} === ${literal(v, hoist)}`).join(' || ')})`;
    return `((a) => ${values.map((v) => `a === ${literal(v, hoist)}`).join(' || ')})(${a})`;
  }
  return `${hoist(new Set(values))}.has(${a})`;
}
