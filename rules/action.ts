import { parseDuration } from './duration.ts';
import { checkCondition } from './load/condition.ts';
import { suggest } from './load/suggest.ts';
import type { Path } from './load/yaml.ts';
import { OPERATIONS } from './types.ts';

/**
 * The one action validator: rule files (lint), action sets of the configuration and the
 * policy at run time ask it whether an action can run as written, so they cannot
 * disagree. Each problem has a path inside the action, a message, and a code the
 * callers that word things their own way (the policy's one-line reasons) go by.
 */
export interface ActionProblem {
  path: Path;
  message: string;
  code:
    | 'shape'
    | 'key'
    | 'adapter'
    | 'operation'
    | 'target'
    | 'params'
    | 'scale-to-by'
    | 'scale-number'
    | 'scale-range'
    | 'when'
    | 'grouping'
    | 'verification';
  /** The problem is at the key at `path`, not its value. */
  onKey?: boolean;
}

export const ACTION_KEYS = [
  'adapter',
  'operation',
  'target',
  'params',
  'when',
  'send_resolved',
  'group',
  'group_by',
  'group_wait',
  'group_interval',
  'repeat_interval',
  'verify_within',
  'on_ineffective',
  'rollback',
] as const;
const GROUP_KEYS = ['group_by', 'group_wait', 'group_interval', 'repeat_interval'] as const;

/**
 * The problems of an action entry: a string (the name of an action set) has none here;
 * whether the set exists is the caller's to say.
 */
export function actionProblems(a: unknown): ActionProblem[] {
  const out: ActionProblem[] = [];
  const add = (path: Path, code: ActionProblem['code'], message: string, onKey = false) =>
    out.push({ path, code, message, ...(onKey && { onKey }) });
  if (typeof a === 'string') return out;
  if (a === null || typeof a !== 'object' || Array.isArray(a)) {
    add(
      [],
      'shape',
      'an action is the name of an action set, or { adapter, operation, target, params, when }',
    );
    return out;
  }
  const action = a as Record<string, unknown>;
  for (const k of Object.keys(action)) {
    if (!(ACTION_KEYS as readonly string[]).includes(k))
      add([k], 'key', `unknown action key "${k}"${suggest(k, [...ACTION_KEYS])}`, true);
  }
  if (typeof action.adapter !== 'string' || action.adapter === '')
    add([], 'adapter', 'an action needs "adapter": a configured adapter instance');
  if (!(OPERATIONS as readonly unknown[]).includes(action.operation)) {
    add(
      'operation' in action ? ['operation'] : [],
      'operation',
      `"operation" must be one of ${OPERATIONS.join(', ')}`,
    );
  }
  if (action.target !== undefined && typeof action.target !== 'string')
    add(['target'], 'target', '"target" must be a string template');
  const paramsOk =
    action.params === undefined ||
    (action.params !== null && typeof action.params === 'object' && !Array.isArray(action.params));
  if (!paramsOk) add(['params'], 'params', '"params" must be a mapping');
  if (action.operation === 'scale' && paramsOk) scaleProblems(action, add);
  if (action.when !== undefined)
    checkCondition((path, message, key) => add(path, 'when', message, key), action.when, ['when']);
  groupingProblems(action, add);
  if (action.send_resolved !== undefined) {
    if (action.operation !== 'notify')
      add(['send_resolved'], 'grouping', 'send_resolved applies to notify actions only');
    else if (typeof action.send_resolved !== 'boolean')
      add(['send_resolved'], 'grouping', 'send_resolved is true or false (the default)');
  }
  verificationProblems(action, add);
  return out;
}

/** Operations whose effect is verified (docs/actions.md#verification). */
const VERIFIED: readonly unknown[] = ['kill-and-replace', 'scale'];

/** verify_within, on_ineffective and rollback (actions/verification.ts runs them). */
function verificationProblems(
  action: Record<string, unknown>,
  add: (path: Path, code: ActionProblem['code'], message: string, onKey?: boolean) => void,
): void {
  const code = 'verification';
  for (const k of ['verify_within', 'on_ineffective'])
    if (action[k] !== undefined && !VERIFIED.includes(action.operation))
      add([k], code, `${k} applies to kill-and-replace and scale actions only`);
  if (action.verify_within !== undefined && VERIFIED.includes(action.operation)) {
    try {
      if (!(parseDuration(action.verify_within) > 0))
        add(['verify_within'], code, 'verify_within must be above 0');
    } catch (err) {
      add(['verify_within'], code, `verify_within: ${(err as Error).message}`);
    }
  }
  if (action.rollback !== undefined) {
    if (action.operation !== 'scale')
      add(['rollback'], code, 'rollback applies to scale actions only');
    else if (typeof action.rollback !== 'boolean')
      add(['rollback'], code, 'rollback is true or false (the default)');
  }
  const escalation = action.on_ineffective;
  if (escalation === undefined || !VERIFIED.includes(action.operation)) return;
  if (escalation === null || typeof escalation !== 'object' || Array.isArray(escalation)) {
    add(
      ['on_ineffective'],
      code,
      'on_ineffective is an action, { adapter, operation, target, params, when } (usually a notify)',
    );
    return;
  }
  for (const k of ['verify_within', 'on_ineffective', 'rollback'])
    if ((escalation as Record<string, unknown>)[k] !== undefined)
      add(
        ['on_ineffective', k],
        code,
        `on_ineffective's action is not verified itself: no ${k}`,
        true,
      );
  for (const p of actionProblems(escalation))
    if (!['verify_within', 'on_ineffective', 'rollback'].includes(String(p.path[0])))
      add(['on_ineffective', ...p.path], p.code, p.message);
}

function scaleProblems(
  action: Record<string, unknown>,
  add: (path: Path, code: ActionProblem['code'], message: string) => void,
): void {
  const params = (action.params ?? {}) as Record<string, unknown>;
  const at = 'params' in action ? ['params'] : [];
  if (params.to === undefined && params.by === undefined)
    add(at, 'scale-to-by', 'scale needs params.to or params.by');
  else if (params.to !== undefined && params.by !== undefined)
    add(at, 'scale-to-by', 'scale takes params.to or params.by, not both');
  let numbers = true;
  for (const k of ['to', 'by', 'min', 'max']) {
    if (params[k] !== undefined && !Number.isInteger(params[k])) {
      add(['params', k], 'scale-number', `params.${k} must be an integer`);
      numbers = false;
    }
  }
  if (!numbers) return;
  const { to, min, max } = params as { to?: number; min?: number; max?: number };
  if (to !== undefined && to < 0)
    add(['params', 'to'], 'scale-range', 'scale params.to must be ≥ 0');
  if (min !== undefined && max !== undefined && min > max)
    add(['params', 'min'], 'scale-range', `scale params.min (${min}) is above params.max (${max})`);
}

/** A notify action's grouping options (notify-groups.ts builds the grouping from them). */
function groupingProblems(
  action: Record<string, unknown>,
  add: (path: Path, code: ActionProblem['code'], message: string) => void,
): void {
  if (action.group !== undefined) {
    if (action.operation !== 'notify')
      add(['group'], 'grouping', 'group applies to notify actions only');
    else if (typeof action.group !== 'boolean')
      add(['group'], 'grouping', 'group is true (the default) or false (page per alert)');
    else if (action.group === false)
      for (const k of GROUP_KEYS)
        if (action[k] !== undefined)
          add([k], 'grouping', `group: false pages per alert; ${k} would be ignored`);
  }
  for (const k of GROUP_KEYS) {
    if (action[k] === undefined) continue;
    if (action.operation !== 'notify') {
      add([k], 'grouping', `${k} applies to notify actions only`);
      continue;
    }
    if (k !== 'group_by') {
      try {
        if (!(parseDuration(action[k]) > 0)) add([k], 'grouping', `${k} must be above 0`);
      } catch (err) {
        add([k], 'grouping', `${k}: ${(err as Error).message}`);
      }
      continue;
    }
    if (!Array.isArray(action[k])) {
      add([k], 'grouping', 'group_by is a list of rule, labels.X or key.FIELD');
      continue;
    }
    (action[k] as unknown[]).forEach((f, i) => {
      if (
        f !== 'rule' &&
        !(typeof f === 'string' && /^(labels|key)\.\S/.test(f) && f.length <= 200)
      )
        add(
          [k, i],
          'grouping',
          `group_by lists rule, labels.X or key.FIELD, got ${JSON.stringify(f)}`,
        );
    });
  }
}
