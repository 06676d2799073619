import type { ActionObject, Alert, Operation } from '../rules/index.ts';
import {
  actionProblems,
  type Condition,
  compileFilter,
  OPERATIONS,
  parseDuration,
} from '../rules/index.ts';
import { TargetRefused } from './adapters/types.ts';
import { type GroupSpec, groupSpec } from './notify-groups.ts';
import { renderTarget } from './target.ts';
import { DEFAULT_VERIFY_WITHIN_MS, type VerifySpec } from './verification.ts';
import { alertFacts, TemplateError } from './template.ts';

/**
 * Policy: which actions an alert asks for, and against what. Each entry of the rule's
 * `actions` is a full action, or the name of an action set from the configuration
 * (`actions: [replace]`). Targets default by operation: kill-and-replace acts on
 * `{{ host.name }}`, scale on `{{ service.name }}`, notify on the rule.
 */
export type { ActionObject };
export { OPERATIONS };

const DEFAULT_TARGETS: Record<Operation, string> = {
  'kill-and-replace': '{{ host.name }}',
  scale: '{{ service.name }}',
  notify: '{{ alert.rule }}',
};

/** One action of one alert, after policy: to be guarded and run, skipped, or failed. */
export type PlannedAction =
  | {
      kind: 'act';
      index: number;
      adapter: string;
      operation: Operation;
      target: string;
      params?: Record<string, unknown>;
      /** Set when a notify action groups its alerts (every one without `group: false`). */
      group?: GroupSpec;
      /** notify: `send_resolved: true`, a resolution is notified too. */
      sendResolved?: boolean;
      /** kill-and-replace, scale: how its effect is verified (actions/verification.ts). */
      verify?: VerifySpec;
    }
  | {
      kind: 'skip' | 'failed';
      index: number;
      adapter: string;
      operation: string;
      target: string;
      params?: Record<string, unknown>;
      why: string;
      /** Set when the rendered target itself was refused (`target`). */
      guard?: string;
    };

/** The alert's actions with action sets expanded, numbered as their idempotency keys are. */
export function resolveActions(
  alert: Alert,
  actionSets: Record<string, ActionObject[]> = {},
): Array<ActionObject | { missing: string }> {
  return alert.actions.flatMap((a): Array<ActionObject | { missing: string }> => {
    if (typeof a !== 'string') return [a];
    return actionSets[a] ?? [{ missing: a }];
  });
}

export async function plan(
  alert: Alert,
  actionSets: Record<string, ActionObject[]> = {},
): Promise<PlannedAction[]> {
  const planned: PlannedAction[] = [];
  for (const [index, action] of resolveActions(alert, actionSets).entries()) {
    if ('missing' in action) {
      planned.push({
        kind: 'failed',
        index,
        adapter: '-',
        operation: '-',
        target: '-',
        why: `no action set named "${action.missing}" is configured`,
      });
      continue;
    }
    planned.push(await planOne(alert, index, action));
  }
  return planned;
}

async function planOne(alert: Alert, index: number, action: ActionObject): Promise<PlannedAction> {
  const base = {
    index,
    adapter: String(action.adapter ?? '-'),
    operation: String(action.operation ?? '-'),
    ...(action.params && { params: action.params }),
  };
  const invalid = validateAction(action);
  if (invalid) return { ...base, kind: 'failed', target: action.target ?? '-', why: invalid };
  let target: string;
  try {
    target = renderTarget(action.target ?? DEFAULT_TARGETS[action.operation], alert);
  } catch (err) {
    if (err instanceof TargetRefused)
      return {
        ...base,
        kind: 'failed',
        target: action.target ?? DEFAULT_TARGETS[action.operation],
        why: err.message,
        guard: err.guard,
      };
    if (!(err instanceof TemplateError)) throw err;
    return { ...base, kind: 'failed', target: action.target ?? '-', why: err.message };
  }
  if (action.when) {
    let holds: boolean;
    try {
      holds = whenHolds(action.when, alert);
    } catch (err) {
      return { ...base, kind: 'failed', target, why: `when: ${(err as Error).message}` };
    }
    if (!holds)
      return {
        ...base,
        kind: 'skip',
        target,
        why: `the action's "when" condition does not hold for this alert`,
      };
  }
  const group = groupSpec(action as unknown as Record<string, unknown>);
  return {
    ...base,
    kind: 'act',
    operation: action.operation,
    target,
    ...(group && { group }),
    ...(action.operation === 'notify' && action.send_resolved === true && { sendResolved: true }),
    ...(action.operation !== 'notify' && { verify: verifySpec(action) }),
  };
}

/** verify_within (default per operation), rollback and on_ineffective, as validated. */
function verifySpec(action: ActionObject): VerifySpec {
  const op = action.operation as keyof typeof DEFAULT_VERIFY_WITHIN_MS;
  return {
    withinMs:
      action.verify_within === undefined
        ? DEFAULT_VERIFY_WITHIN_MS[op]
        : parseDuration(action.verify_within),
    ...(action.rollback === true && { rollback: true }),
    ...(action.on_ineffective && { onIneffective: action.on_ineffective }),
  };
}

/**
 * Whether an action's `when` holds for the alert: the condition compiled as rule filters
 * are (rules/filter/compile.ts, cached by its text), over the alert's facts. Its verdicts
 * are json-rules-engine's (test/actions/when-differential.test.ts holds it to that), but
 * synchronous, and where the reference would throw on a fact it answers false.
 */
export function whenHolds(when: Condition, alert: Alert): boolean {
  return compileFilter(when)(alertFacts(alert));
}

/**
 * A clear message for an action that cannot be run as written, else undefined: the
 * first problem rules/action.ts finds (the validator lint and the configuration use),
 * worded as one line of the journal.
 */
export function validateAction(action: ActionObject): string | undefined {
  // A name here is an action set that was not expanded: nothing to run.
  if (typeof action !== 'object' || action === null) return 'the action names no adapter';
  const problem = actionProblems(action)[0];
  if (!problem) return undefined;
  switch (problem.code) {
    case 'adapter':
      return 'the action names no adapter';
    case 'operation':
      return `unknown operation "${String(action.operation)}" (use ${OPERATIONS.join(', ')})`;
    case 'scale-to-by':
      return 'scale needs exactly one of params.to or params.by';
    case 'scale-number':
      return 'scale params to, by, min and max must be numbers';
    case 'when':
      return `when: ${problem.message}`;
    default:
      return problem.message;
  }
}
