import { parseDuration } from '../duration.ts';
import { KINDS } from '../kinds/index.ts';
import { durationOr, toList } from '../kinds/kind.ts';
import type { CommonOptions, Condition, RuleSpec, RuleType } from '../types.ts';

/** The spec of a rule file that passed the schema and the checks: common options, then the kind's. */
export function toRuleSpec(raw: Record<string, unknown>, file: string): RuleSpec {
  const common: CommonOptions = {
    name: raw.name as string,
    query_key: toList(raw.query_key),
    realert: durationOr(raw.realert, 60_000),
    labels: Object.fromEntries(
      Object.entries((raw.labels ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
    ),
    actions: (raw.actions ?? []) as RuleSpec['actions'],
    enabled: raw.enabled !== false,
    source: { file },
    ...(raw.description !== undefined && { description: raw.description as string }),
    ...(raw.filter !== undefined && { filter: raw.filter as Condition }),
    ...(raw.exponential_realert !== undefined && {
      exponential_realert: parseDuration(raw.exponential_realert),
    }),
    ...(raw.for !== undefined && { for: parseDuration(raw.for) }),
    ...(raw.keep_firing_for !== undefined && {
      keep_firing_for: parseDuration(raw.keep_firing_for),
    }),
    ...(raw.resolve_after !== undefined && { resolve_after: parseDuration(raw.resolve_after) }),
    ...(raw.max_keys !== undefined && { max_keys: raw.max_keys as number }),
  };
  return KINDS[raw.type as RuleType].build(raw, common);
}
