import type { Alert, Condition, Operation } from '../rules/index.ts';
import { evaluateReference } from '../rules/index.ts';
import { type ScaleParams, TargetRefused } from './adapters/types.ts';
import { type GroupSpec, groupSpec } from './notify-groups.ts';
import { renderTarget } from './target.ts';
import { alertFacts, TemplateError } from './template.ts';

/**
 * Policy: which actions an alert asks for, and against what. Each entry of the rule's
 * `actions` is a full action, or the name of an action set from the configuration
 * (`actions: [replace]`). Targets default by operation: kill-and-replace acts on
 * `{{ host.name }}`, scale on `{{ service.name }}`, notify on the rule.
 */
export interface ActionObject {
  adapter: string;
  operation: Operation;
  target?: string;
  params?: Record<string, unknown>;
  when?: Condition;
  /** notify only: Alertmanager-style grouping, on unless `group: false` (notify-groups.ts). */
  group?: boolean;
  group_by?: string[];
  group_wait?: string | number | Record<string, number>;
  group_interval?: string | number | Record<string, number>;
  repeat_interval?: string | number | Record<string, number>;
}

export const OPERATIONS: readonly Operation[] = ['kill-and-replace', 'scale', 'notify'];

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
    if (typeof a !== 'string') return [a as ActionObject];
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
      holds = await evaluateReference(action.when, alertFacts(alert));
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
  return { ...base, kind: 'act', operation: action.operation, target, ...(group && { group }) };
}

/** A clear message for an action that cannot be run as written, else undefined. */
export function validateAction(action: ActionObject): string | undefined {
  if (typeof action.adapter !== 'string' || !action.adapter) return 'the action names no adapter';
  if (!OPERATIONS.includes(action.operation))
    return `unknown operation "${String(action.operation)}" (use ${OPERATIONS.join(', ')})`;
  if (action.operation === 'scale') {
    const p = (action.params ?? {}) as ScaleParams;
    const number = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v));
    if ((p.to === undefined) === (p.by === undefined))
      return 'scale needs exactly one of params.to or params.by';
    if (!number(p.to) || !number(p.by) || !number(p.min) || !number(p.max))
      return 'scale params to, by, min and max must be numbers';
    if (p.to !== undefined && p.to < 0) return 'scale params.to must be ≥ 0';
    if (p.min !== undefined && p.max !== undefined && p.min > p.max)
      return `scale params.min (${p.min}) is above params.max (${p.max})`;
  }
  try {
    groupSpec(action as unknown as Record<string, unknown>);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}
