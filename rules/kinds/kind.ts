import { parseDuration } from '../duration.ts';
import type { EngineContext, RuleRunner } from '../runner.ts';
import type { CommonOptions, RuleSpec, RuleType } from '../types.ts';

/**
 * What a rule kind is, in one place: its options (and which are durations), the options
 * it cannot do without, whether `for` applies, how its spec is built from the checked
 * YAML, the checks a schema cannot say, and its runner. The registry (kinds/index.ts)
 * lists one per type; lint tables, spec building and the engine derive from it.
 */
export type OptionKind = 'duration' | 'value';

export type SpecOf<T extends RuleType> = Extract<RuleSpec, { type: T }>;

/** Reports a problem at a path of the rule file (`[option, index, ...]`). */
export type Report = (path: Array<string | number>, message: string) => void;

export interface KindDescriptor<T extends RuleType = RuleType> {
  type: T;
  /** The type's own options (beyond the common ones), and which are durations. */
  options: Readonly<Record<string, OptionKind>>;
  /** Options the type cannot do without (the schema's `if type then required`). */
  required: readonly string[];
  /** At least one of these (the schema's `anyOf`), with the message when none is given. */
  oneOf?: { options: readonly string[]; message: string };
  /** The condition can hold over time, so `for` applies. */
  condition: boolean;
  /** The spec from a rule file that passed the schema and the checks. */
  build(raw: Readonly<Record<string, unknown>>, common: CommonOptions): SpecOf<T>;
  /** Checks across options a schema cannot say (the file passed the schema's types). */
  check?(raw: Readonly<Record<string, unknown>>, report: Report): void;
  runner(spec: SpecOf<T>, ctx: EngineContext): RuleRunner;
}

export function toList(v: unknown): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? (v as string[]) : [v as string];
}

export function durationOr(v: unknown, fallback: number): number {
  return v === undefined ? fallback : parseDuration(v);
}
