import { createRequire } from 'node:module';
import type { Engine } from 'json-rules-engine';
import type * as RulesEngine from 'json-rules-engine';
import type { Condition } from '../types.ts';
import { CUSTOM_OPERATORS } from './operators.ts';

// Loaded on first use, not when Drover starts: the compiled filters do not need it.
const requireLib = createRequire(import.meta.url);
let rulesEngineLib: typeof RulesEngine | undefined;
function rulesEngine(): typeof RulesEngine {
  return (rulesEngineLib ??= requireLib('json-rules-engine') as typeof RulesEngine);
}

/**
 * json-rules-engine configured the way Drover means its conditions: undefined facts
 * are allowed (an absent field), plus Drover's operators. It is the reference the
 * compiled filters are tested against, and it evaluates actions' `when` conditions.
 */
export function createReferenceEngine(): Engine {
  const engine = new (rulesEngine().Engine)([], { allowUndefinedFacts: true });
  for (const op of CUSTOM_OPERATORS) engine.addOperator(op.name, op.evaluate);
  return engine;
}

/** json-rules-engine wants `all` or `any` at the top of a rule. */
function topLevel(condition: Condition | undefined): Record<string, unknown> {
  if (condition === undefined) return { all: [] };
  if ('all' in condition || 'any' in condition)
    return condition as unknown as Record<string, unknown>;
  return { all: [condition] };
}

/** Evaluates one condition over facts (a flat event, or an alert's facts). */
export async function evaluateReference(
  condition: Condition | undefined,
  facts: Record<string, unknown>,
): Promise<boolean> {
  const engine = createReferenceEngine();
  engine.addRule({ conditions: topLevel(condition) as never, event: { type: 'match' } });
  const { events } = await engine.run({ ...facts });
  return events.length > 0;
}

export { topLevel as toRuleConditions };
