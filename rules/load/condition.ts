import { parseRegex, pathSegments, UnsafeRegexError } from '../filter/index.ts';
import { OPERATORS } from '../types.ts';
import { suggest } from './suggest.ts';
import type { Path } from './yaml.ts';

/** Where a checker reports: a path into the file, a message, and whether it is at the key. */
export type Reporter = (path: Path, message: string, key?: boolean) => void;

/**
 * A json-rules-engine condition (a rule's `filter`, an action's `when`) checked for
 * what a schema cannot say: operators, value types per operator, safe regexes, paths.
 */
const CONDITION_KEYS = ['all', 'any', 'not', 'fact', 'operator', 'value', 'path'];

export function checkCondition(report: Reporter, node: unknown, path: Path): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    report(
      path,
      'a condition is a mapping: { all: [...] }, { any: [...] }, { not: ... } or { fact, operator, value }',
    );
    return;
  }
  const c = node as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!CONDITION_KEYS.includes(key))
      report([...path, key], `unknown condition key "${key}"${suggest(key, CONDITION_KEYS)}`, true);
  }
  const boolKeys = ['all', 'any', 'not'].filter((k) => k in c);
  if (boolKeys.length > 1) {
    report(path, `a condition has one of all, any or not, not ${boolKeys.join(' and ')}`);
    return;
  }
  if (boolKeys.length === 1) {
    const k = boolKeys[0]!;
    if (k === 'not') checkCondition(report, c.not, [...path, 'not']);
    else if (!Array.isArray(c[k])) report([...path, k], `"${k}" must be a list of conditions`);
    else {
      for (const [i, child] of (c[k] as unknown[]).entries())
        checkCondition(report, child, [...path, k, i]);
    }
    for (const extra of ['fact', 'operator', 'value', 'path']) {
      if (extra in c) report([...path, extra], `"${extra}" does not belong beside "${k}"`, true);
    }
    return;
  }
  if (typeof c.fact !== 'string' || c.fact === '') {
    report(
      'fact' in c ? [...path, 'fact'] : path,
      'a condition needs "fact": the dotted event field it tests',
    );
  }
  if (typeof c.operator !== 'string') {
    report(
      'operator' in c ? [...path, 'operator'] : path,
      `a condition needs "operator" (${OPERATORS.join(', ')})`,
    );
    return;
  }
  if (!(OPERATORS as readonly string[]).includes(c.operator)) {
    report(
      [...path, 'operator'],
      `unknown operator "${c.operator}"${suggest(c.operator, [...OPERATORS])}`,
    );
    return;
  }
  if (!('value' in c)) {
    report(path, `a condition needs "value"${c.operator === 'exists' ? ' (true or false)' : ''}`);
    return;
  }
  const value = c.value;
  const isFactRef =
    value !== null && typeof value === 'object' && !Array.isArray(value) && 'fact' in value;
  if (isFactRef) {
    const ref = value as Record<string, unknown>;
    if (typeof ref.fact !== 'string')
      report([...path, 'value', 'fact'], 'a fact reference names a field: { fact: other.field }');
    for (const k of Object.keys(ref))
      if (k !== 'fact' && k !== 'path')
        report([...path, 'value', k], `unknown key "${k}" in a fact reference`, true);
    if (ref.path !== undefined) checkPath(report, ref.path, [...path, 'value', 'path']);
    if (c.operator === 'matches')
      report(
        [...path, 'value'],
        '"matches" takes a literal pattern, not a fact reference: a pattern written by the sender could be catastrophic',
      );
  } else {
    switch (c.operator) {
      case 'in':
      case 'notIn':
        if (!Array.isArray(value))
          report([...path, 'value'], `"${c.operator}" needs a list value, e.g. [error, fatal]`);
        break;
      case 'exists':
        if (typeof value !== 'boolean')
          report(
            [...path, 'value'],
            '"exists" takes true (the field is present) or false (absent)',
          );
        break;
      case 'matches':
        try {
          parseRegex(value);
        } catch (err) {
          report(
            [...path, 'value'],
            err instanceof UnsafeRegexError
              ? err.message
              : `invalid regular expression: ${(err as Error).message}`,
          );
        }
        break;
      case 'lessThan':
      case 'lessThanInclusive':
      case 'greaterThan':
      case 'greaterThanInclusive':
        if (typeof value !== 'number')
          report([...path, 'value'], `"${c.operator}" compares numbers: give a number value`);
        break;
      case 'startsWith':
      case 'endsWith':
        if (typeof value !== 'string')
          report([...path, 'value'], `"${c.operator}" needs a string value`);
        break;
    }
  }
  if (c.path !== undefined) checkPath(report, c.path, [...path, 'path']);
}

export function checkPath(report: Reporter, p: unknown, at: Path): void {
  try {
    if (typeof p !== 'string') throw new Error('path must be a string');
    pathSegments(p);
  } catch (err) {
    report(at, (err as Error).message);
  }
}
