import { actionProblems } from '../action.ts';
import { parseDuration } from '../duration.ts';
import { KINDS } from '../kinds/index.ts';
import schema from '../schema.json' with { type: 'json' };
import { RULE_TYPES, type RuleType } from '../types.ts';
import { checkCondition } from './condition.ts';
import type { FileContext } from './yaml.ts';

/**
 * What a schema cannot say about a rule file: options that belong to another type,
 * `for` on a type whose condition cannot hold over time, durations, conditions, actions,
 * and each kind's own checks. The tables derive from the kinds' descriptors.
 */
const ALL_OPTIONS = Object.keys(schema.properties);

export const COMMON = [
  'name',
  'description',
  'type',
  'enabled',
  'filter',
  'query_key',
  'realert',
  'exponential_realert',
  'for',
  'keep_firing_for',
  'resolve_after',
  'labels',
  'actions',
  'max_keys',
];
const COMMON_DURATIONS = [
  'realert',
  'exponential_realert',
  'for',
  'keep_firing_for',
  'resolve_after',
];
/** Durations that may be 0. */
const MAY_BE_ZERO = ['realert', 'keep_firing_for', 'resolve_after'];
/** Types whose firing ends a time after its last occurrence (`resolve_after`). */
const AFTER_TYPES: RuleType[] = ['any', 'new_term', 'change'];
const TYPE_OPTIONS = Object.fromEntries(
  RULE_TYPES.map((t) => [t, Object.keys(KINDS[t].options)]),
) as Record<RuleType, string[]>;
/** Types whose condition can hold over time (`for`); flatline's timeframe already is one. */
const CONDITION_TYPES: RuleType[] = RULE_TYPES.filter((t) => KINDS[t].condition);
/** Every option that is a duration, common or of some kind. */
export const DURATIONS = [
  ...new Set([
    ...COMMON_DURATIONS,
    ...RULE_TYPES.flatMap((t) =>
      Object.entries(KINDS[t].options)
        .filter(([, kind]) => kind === 'duration')
        .map(([name]) => name),
    ),
  ]),
];

export function semanticChecks(ctx: FileContext, raw: Record<string, unknown>): void {
  const type = raw.type as RuleType;
  const knownType = (RULE_TYPES as readonly string[]).includes(type);
  if (knownType) {
    const allowed = new Set([...COMMON, ...TYPE_OPTIONS[type]]);
    for (const key of Object.keys(raw)) {
      if (!allowed.has(key) && ALL_OPTIONS.includes(key)) {
        const owners = RULE_TYPES.filter((t) => TYPE_OPTIONS[t].includes(key));
        ctx.error(
          [key],
          `"${key}" is not an option of ${type} rules (it belongs to ${owners.join(', ')})`,
          true,
        );
      }
    }
    if (raw.for !== undefined && !CONDITION_TYPES.includes(type)) {
      ctx.error(
        ['for'],
        `"for" needs a condition that can hold over time; ${type} rules fire on single events or instants (use it with ${CONDITION_TYPES.join(', ')})`,
        true,
      );
    }
    if (raw.resolve_after !== undefined && !AFTER_TYPES.includes(type)) {
      ctx.error(
        ['resolve_after'],
        `"resolve_after" is for rules whose firing has no condition to clear (${AFTER_TYPES.join(', ')}); a ${type} rule resolves when its condition clears (see keep_firing_for)`,
        true,
      );
    }
  }
  for (const key of DURATIONS) {
    if (raw[key] === undefined) continue;
    try {
      const ms = parseDuration(raw[key]);
      if (ms <= 0 && !MAY_BE_ZERO.includes(key)) ctx.error([key], `"${key}" must be longer than 0`);
    } catch (err) {
      ctx.error([key], `"${key}": ${(err as Error).message}`);
    }
  }
  if (raw.filter !== undefined)
    checkCondition((p, m, k) => ctx.error(p, m, k), raw.filter, ['filter']);
  if (Array.isArray(raw.actions)) {
    raw.actions.forEach((a, i) => {
      for (const p of actionProblems(a))
        ctx.error(['actions', i, ...p.path], p.message, p.onKey === true);
    });
  } else if (raw.actions !== undefined) ctx.error(['actions'], '"actions" must be a list');
  if (knownType) KINDS[type].check?.(raw, (path, message) => ctx.error(path, message));
}
