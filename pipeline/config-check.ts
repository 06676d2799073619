import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { groupSpec } from '../actions/notify-groups.ts';
import { actionProblems, type FileContext, type Path } from '../rules/index.ts';
import schema from './config.schema.json' with { type: 'json' };

/**
 * The configuration file against its JSON Schema (pipeline/config.schema.json, the one
 * editors use through `# yaml-language-server: $schema=...`), every error at once, at
 * its node. A property's `errorMessage` in the schema words its errors (editors show it
 * too); durations and action sets get their messages from the semantic checks and the
 * action validator the rule files use (rules/action.ts).
 */
const ajv = new Ajv2020({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(schema);

export function checkConfigStructure(ctx: FileContext, raw: Record<string, unknown>): void {
  if (!validate(raw)) reportSchemaErrors(ctx, raw, validate.errors ?? []);
  checkActionSets(ctx, raw.actionSets);
}

function pathOf(instancePath: string): Path {
  return instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** `actionSets.page[0].params` */
function dotted(path: Path): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function article(type: string): string {
  const t = type.replace(/,/g, ' or ');
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

function alternatives(values: unknown[]): string {
  const words = values.map(String);
  return words.length < 2
    ? (words[0] ?? '')
    : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

function reportSchemaErrors(
  ctx: FileContext,
  raw: Record<string, unknown>,
  errors: ErrorObject[],
): void {
  const seen = new Set<string>();
  const worded = new Set<string>();
  const report = (at: Path, message: string, onKey = false) => {
    const key = `${at.join('/')}|${message}`;
    if (seen.has(key)) return;
    seen.add(key);
    ctx.error(at, message, onKey);
  };
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    // Action sets: the action validator words them (checkActionSets); durations: the
    // semantic checks, which say what a duration looks like.
    if (path[0] === 'actionSets' && path.length > 1) continue;
    if (e.schemaPath.startsWith('#/$defs/duration')) continue;
    const where = dotted(path);
    if (e.keyword === 'additionalProperties') {
      const prop = String(e.params.additionalProperty);
      const known = Object.keys(
        ((e.parentSchema ?? {}) as { properties?: object }).properties ?? {},
      ).join(', ');
      const guards =
        e.parentSchema === schema.$defs.guards || e.parentSchema === schema.$defs.notifyGuards;
      report(
        [...path, prop],
        guards
          ? `${where}: unknown guard "${prop}" (known: ${known})`
          : `unknown field "${where ? `${where}.` : ''}${prop}" (known: ${known})`,
        true,
      );
      continue;
    }
    const own = (e.parentSchema as { errorMessage?: unknown } | undefined)?.errorMessage;
    if (typeof own === 'string') {
      if (worded.has(where)) continue;
      worded.add(where);
      report(path, `${where} ${own}`);
      continue;
    }
    // The branches of a oneOf are summed up by the oneOf error, or by an errorMessage.
    if (/\/(oneOf|anyOf)\/\d+\//.test(e.schemaPath)) continue;
    if (worded.has(where)) continue;
    let message: string;
    switch (e.keyword) {
      case 'type':
        message =
          e.params.type === 'object'
            ? `${where} must be a mapping`
            : `${where} must be ${article(String(e.params.type))}`;
        break;
      case 'enum':
        message = `${where} is ${alternatives(e.params.allowedValues as unknown[])}, not ${JSON.stringify(e.data)}`;
        break;
      case 'required':
        message = `${where || 'the configuration'} needs "${String(e.params.missingProperty)}"`;
        break;
      case 'minimum':
      case 'maximum':
        message = `${where} must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(e.params.limit)}`;
        break;
      case 'minLength':
        message = `${where} must not be empty`;
        break;
      case 'oneOf':
        message = `${where} is not valid here`;
        break;
      default:
        message = `${where} ${e.message ?? 'is not valid'}`.trim();
    }
    report(path, message);
  }
  void raw;
}

/**
 * Each action set is a list of actions written out; each action is checked by the
 * validator of rule files and of the policy, so what passes here runs.
 */
function checkActionSets(ctx: FileContext, sets: unknown): void {
  if (sets === null || typeof sets !== 'object' || Array.isArray(sets)) return;
  for (const [name, set] of Object.entries(sets)) {
    const list = Array.isArray(set) ? (set as unknown[]) : [set];
    list.forEach((action, i) => {
      const at: Path = Array.isArray(set) ? ['actionSets', name, i] : ['actionSets', name];
      const label = `actionSets.${name}[${i}]`;
      if (action === null || typeof action !== 'object' || Array.isArray(action)) {
        ctx.error(at, `${label}: an action set lists actions as { adapter, operation, ... }`);
        return;
      }
      const problems = actionProblems(action);
      for (const p of problems)
        if (p.code !== 'grouping')
          ctx.error([...at, ...p.path], `${label}: ${p.message}`, p.onKey === true);
      // Grouping problems as the remediator words them when it builds the grouping.
      const grouping = problems.find((p) => p.code === 'grouping');
      if (grouping) {
        let message = grouping.message;
        try {
          groupSpec(action as Record<string, unknown>);
        } catch (err) {
          message = (err as Error).message;
        }
        ctx.error([...at, ...grouping.path], `${label}: ${message}`);
      }
    });
  }
}
