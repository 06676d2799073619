import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  LineCounter,
  type Node,
  parseAllDocuments,
} from 'yaml';
import { parseDuration } from './duration.ts';
import { parseRegex, pathSegments, UnsafeRegexError } from './filter/index.ts';
import schema from './schema.json' with { type: 'json' };
import { type Condition, OPERATORS, RULE_TYPES, type RuleSpec, type RuleType } from './types.ts';

/**
 * Loads rule files: YAML parsed with positions, validated against rules/schema.json,
 * then checked for what a schema cannot say (durations, regexes, paths, options that
 * belong to another type, duplicate names). Every problem is reported as
 * `file:line:col message` at the node it concerns.
 */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  message: string;
  severity: 'error' | 'warning';
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col} ${d.severity === 'warning' ? 'warning: ' : ''}${d.message}`;
}

const COMMON = [
  'name',
  'description',
  'type',
  'enabled',
  'filter',
  'query_key',
  'realert',
  'exponential_realert',
  'for',
  'labels',
  'actions',
  'max_keys',
];
const TYPE_OPTIONS: Record<RuleType, string[]> = {
  any: [],
  frequency: ['num_events', 'timeframe'],
  spike: [
    'timeframe',
    'spike_height',
    'spike_type',
    'threshold_cur',
    'threshold_ref',
    'alert_on_new_data',
  ],
  flatline: ['timeframe', 'threshold', 'expect', 'forget_keys'],
  new_term: ['fields', 'terms_window_size', 'alert_on_missing_field', 'max_terms'],
  expiry: ['ttl'],
  change: ['compare_key', 'ignore_null', 'timeframe'],
  cardinality: ['cardinality_field', 'timeframe', 'max_cardinality', 'min_cardinality'],
  metric_aggregation: [
    'metric_agg_key',
    'metric_agg_type',
    'timeframe',
    'max_threshold',
    'min_threshold',
  ],
};
/** Types whose condition can hold over time (`for`); flatline's timeframe already is one. */
const CONDITION_TYPES: RuleType[] = ['frequency', 'spike', 'cardinality', 'metric_aggregation'];
const DURATIONS = [
  'realert',
  'exponential_realert',
  'for',
  'timeframe',
  'terms_window_size',
  'ttl',
];
const ALL_OPTIONS = Object.keys(schema.properties);

const ajv = new Ajv2020({ allErrors: true, strict: false });
const validateSchema = ajv.compile(schema);

type Path = Array<string | number>;

class FileContext {
  readonly diagnostics: Diagnostic[] = [];
  private readonly lc: LineCounter;

  constructor(
    readonly file: string,
    readonly doc: Document,
    lc: LineCounter,
  ) {
    this.lc = lc;
  }

  private pos(offset: number): { line: number; col: number } {
    return this.lc.linePos(offset);
  }

  /** Position of the value at path, or of its key when `key` is set; the nearest ancestor otherwise. */
  at(path: Path, key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let keyNode: Node | undefined;
    let last: { range?: [number, number, number] | null } | undefined = node as never;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && p.key.value === segment,
        );
        if (!pair) break;
        keyNode = pair.key as Node;
        node = pair.value;
      } else if (
        node &&
        typeof node === 'object' &&
        'items' in node &&
        typeof segment === 'number'
      ) {
        keyNode = undefined;
        node = (node as { items: unknown[] }).items[segment];
      } else break;
      if (node) last = node as never;
    }
    const target = key && keyNode ? keyNode : (last as { range?: [number, number, number] | null });
    const range = (target as { range?: [number, number, number] | null })?.range;
    return this.pos(range ? range[0] : 0);
  }

  error(path: Path, message: string, key = false): void {
    const { line, col } = this.at(path, key);
    this.diagnostics.push({ file: this.file, line, col, message, severity: 'error' });
  }
}

export function parseRuleFile(
  text: string,
  file: string,
): { rule?: RuleSpec; diagnostics: Diagnostic[] } {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  const diagnostics: Diagnostic[] = [];
  const report = (offset: number, message: string) => {
    const { line, col } = lc.linePos(offset);
    diagnostics.push({ file, line, col, message, severity: 'error' });
  };
  if (!Array.isArray(docs)) {
    report(0, 'empty rule file');
    return { diagnostics };
  }
  for (const doc of list) for (const e of doc.errors) report(e.pos[0], e.message.split('\n')[0]!);
  if (diagnostics.length > 0) return { diagnostics };
  if (list.length !== 1) {
    report(list[1]?.range[0] ?? 0, 'one rule per file: this file holds several YAML documents');
    return { diagnostics };
  }
  const doc = list[0]!;
  const ctx = new FileContext(file, doc, lc);
  const data = doc.toJS() as unknown;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    ctx.error([], 'a rule file is a mapping of options (name, type, ...)');
    return { diagnostics: ctx.diagnostics };
  }
  const raw = data as Record<string, unknown>;
  if (!validateSchema(raw)) reportSchemaErrors(ctx, raw, validateSchema.errors ?? []);
  semanticChecks(ctx, raw);
  if (ctx.diagnostics.length > 0) return { diagnostics: ctx.diagnostics };
  return { rule: toRuleSpec(raw, file), diagnostics: [] };
}

function pathOf(instancePath: string): Path {
  return instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function reportSchemaErrors(
  ctx: FileContext,
  raw: Record<string, unknown>,
  errors: ErrorObject[],
): void {
  const seen = new Set<string>();
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    // Conditions, durations and actions get clearer messages from the semantic checks;
    // the branches of anyOf are summed up by the anyOf error itself.
    if (path[0] === 'filter' || path[0] === 'actions' || DURATIONS.includes(String(path[0])))
      continue;
    if (e.keyword === 'oneOf' || e.keyword === 'if' || /\/anyOf\/\d+\//.test(e.schemaPath))
      continue;
    const where = path.length > 0 ? `"${path.join('.')}"` : '';
    let message: string;
    let onKey = false;
    let at = path;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String(e.params.additionalProperty);
        message = `unknown option "${prop}"${suggest(prop, ALL_OPTIONS)}`;
        at = [...path, prop];
        onKey = true;
        break;
      }
      case 'required': {
        const missing = String(e.params.missingProperty);
        message = raw.type ? `${raw.type} rules need "${missing}"` : `missing "${missing}"`;
        at = raw.type ? ['type'] : [];
        break;
      }
      case 'anyOf':
        if (raw.type === 'cardinality')
          message = 'cardinality rules need max_cardinality or min_cardinality';
        else if (raw.type === 'metric_aggregation')
          message = 'metric_aggregation rules need max_threshold or min_threshold';
        else message = `${where} is not valid`;
        at = ['type'];
        break;
      case 'enum':
        message = `${where} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}${typeof getIn(raw, path) === 'string' ? suggest(String(getIn(raw, path)), (e.params.allowedValues as unknown[]).map(String)) : ''}`;
        break;
      case 'type':
        message = `${where} must be ${article(String(e.params.type))}`;
        break;
      case 'pattern':
        message =
          path[0] === 'name'
            ? 'name must use only lowercase letters, digits, ".", "_" and "-"'
            : `${where} must match ${e.params.pattern}`;
        break;
      case 'minimum':
      case 'exclusiveMinimum':
        message = `${where} must be ${e.keyword === 'minimum' ? '≥' : '>'} ${e.params.limit}`;
        break;
      default:
        message = `${where} ${e.message ?? 'is not valid'}`.trim();
    }
    const key = `${at.join('.')}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    ctx.error(at, message, onKey);
  }
}

function article(type: string): string {
  const t = type.replace(/,/g, ' or ');
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

function getIn(obj: unknown, path: Path): unknown {
  let cur = obj;
  for (const p of path)
    cur = cur === null || typeof cur !== 'object' ? undefined : (cur as Record<string, unknown>)[p];
  return cur;
}

function semanticChecks(ctx: FileContext, raw: Record<string, unknown>): void {
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
  }
  for (const key of DURATIONS) {
    if (raw[key] === undefined) continue;
    try {
      const ms = parseDuration(raw[key]);
      if (ms <= 0 && key !== 'realert') ctx.error([key], `"${key}" must be longer than 0`);
    } catch (err) {
      ctx.error([key], `"${key}": ${(err as Error).message}`);
    }
  }
  if (raw.filter !== undefined) checkCondition(ctx, raw.filter, ['filter']);
  if (Array.isArray(raw.actions)) {
    raw.actions.forEach((a, i) => {
      checkAction(ctx, a, ['actions', i]);
    });
  } else if (raw.actions !== undefined) ctx.error(['actions'], '"actions" must be a list');
  if (type === 'flatline' && Array.isArray(raw.expect)) checkExpect(ctx, raw);
  if (
    type === 'cardinality' &&
    typeof raw.max_cardinality === 'number' &&
    typeof raw.min_cardinality === 'number' &&
    raw.min_cardinality > raw.max_cardinality
  ) {
    ctx.error(
      ['min_cardinality'],
      'min_cardinality is above max_cardinality: the rule would always fire',
    );
  }
  if (
    type === 'metric_aggregation' &&
    typeof raw.max_threshold === 'number' &&
    typeof raw.min_threshold === 'number' &&
    raw.min_threshold > raw.max_threshold
  ) {
    ctx.error(
      ['min_threshold'],
      'min_threshold is above max_threshold: the rule would always fire',
    );
  }
}

const CONDITION_KEYS = ['all', 'any', 'not', 'fact', 'operator', 'value', 'path'];

function checkCondition(ctx: FileContext, node: unknown, path: Path): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    ctx.error(
      path,
      'a condition is a mapping: { all: [...] }, { any: [...] }, { not: ... } or { fact, operator, value }',
    );
    return;
  }
  const c = node as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!CONDITION_KEYS.includes(key))
      ctx.error(
        [...path, key],
        `unknown condition key "${key}"${suggest(key, CONDITION_KEYS)}`,
        true,
      );
  }
  const boolKeys = ['all', 'any', 'not'].filter((k) => k in c);
  if (boolKeys.length > 1) {
    ctx.error(path, `a condition has one of all, any or not, not ${boolKeys.join(' and ')}`);
    return;
  }
  if (boolKeys.length === 1) {
    const k = boolKeys[0]!;
    if (k === 'not') checkCondition(ctx, c.not, [...path, 'not']);
    else if (!Array.isArray(c[k])) ctx.error([...path, k], `"${k}" must be a list of conditions`);
    else {
      for (const [i, child] of (c[k] as unknown[]).entries())
        checkCondition(ctx, child, [...path, k, i]);
    }
    for (const extra of ['fact', 'operator', 'value', 'path']) {
      if (extra in c) ctx.error([...path, extra], `"${extra}" does not belong beside "${k}"`, true);
    }
    return;
  }
  if (typeof c.fact !== 'string' || c.fact === '') {
    ctx.error(
      'fact' in c ? [...path, 'fact'] : path,
      'a condition needs "fact": the dotted event field it tests',
    );
  }
  if (typeof c.operator !== 'string') {
    ctx.error(
      'operator' in c ? [...path, 'operator'] : path,
      `a condition needs "operator" (${OPERATORS.join(', ')})`,
    );
    return;
  }
  if (!(OPERATORS as readonly string[]).includes(c.operator)) {
    ctx.error(
      [...path, 'operator'],
      `unknown operator "${c.operator}"${suggest(c.operator, [...OPERATORS])}`,
    );
    return;
  }
  if (!('value' in c)) {
    ctx.error(
      path,
      `a condition needs "value"${c.operator === 'exists' ? ' (true or false)' : ''}`,
    );
    return;
  }
  const value = c.value;
  const isFactRef =
    value !== null && typeof value === 'object' && !Array.isArray(value) && 'fact' in value;
  if (isFactRef) {
    const ref = value as Record<string, unknown>;
    if (typeof ref.fact !== 'string')
      ctx.error(
        [...path, 'value', 'fact'],
        'a fact reference names a field: { fact: other.field }',
      );
    for (const k of Object.keys(ref))
      if (k !== 'fact' && k !== 'path')
        ctx.error([...path, 'value', k], `unknown key "${k}" in a fact reference`, true);
    if (ref.path !== undefined) checkPath(ctx, ref.path, [...path, 'value', 'path']);
    if (c.operator === 'matches')
      ctx.error(
        [...path, 'value'],
        '"matches" takes a literal pattern, not a fact reference: a pattern written by the sender could be catastrophic',
      );
  } else {
    switch (c.operator) {
      case 'in':
      case 'notIn':
        if (!Array.isArray(value))
          ctx.error([...path, 'value'], `"${c.operator}" needs a list value, e.g. [error, fatal]`);
        break;
      case 'exists':
        if (typeof value !== 'boolean')
          ctx.error(
            [...path, 'value'],
            '"exists" takes true (the field is present) or false (absent)',
          );
        break;
      case 'matches':
        try {
          parseRegex(value);
        } catch (err) {
          ctx.error(
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
          ctx.error([...path, 'value'], `"${c.operator}" compares numbers: give a number value`);
        break;
      case 'startsWith':
      case 'endsWith':
        if (typeof value !== 'string')
          ctx.error([...path, 'value'], `"${c.operator}" needs a string value`);
        break;
    }
  }
  if (c.path !== undefined) checkPath(ctx, c.path, [...path, 'path']);
}

function checkPath(ctx: FileContext, p: unknown, at: Path): void {
  try {
    if (typeof p !== 'string') throw new Error('path must be a string');
    pathSegments(p);
  } catch (err) {
    ctx.error(at, (err as Error).message);
  }
}

const ACTION_KEYS = [
  'adapter',
  'operation',
  'target',
  'params',
  'when',
  'group',
  'group_by',
  'group_wait',
  'group_interval',
  'repeat_interval',
];
const GROUP_KEYS = ['group_by', 'group_wait', 'group_interval', 'repeat_interval'];

function checkAction(ctx: FileContext, a: unknown, path: Path): void {
  if (typeof a === 'string') return;
  if (a === null || typeof a !== 'object' || Array.isArray(a)) {
    ctx.error(
      path,
      'an action is the name of an action set, or { adapter, operation, target, params, when }',
    );
    return;
  }
  const action = a as Record<string, unknown>;
  for (const k of Object.keys(action)) {
    if (!ACTION_KEYS.includes(k))
      ctx.error([...path, k], `unknown action key "${k}"${suggest(k, ACTION_KEYS)}`, true);
  }
  if (typeof action.adapter !== 'string' || action.adapter === '')
    ctx.error(path, 'an action needs "adapter": a configured adapter instance');
  const ops = ['kill-and-replace', 'scale', 'notify'];
  if (!ops.includes(action.operation as string)) {
    ctx.error(
      'operation' in action ? [...path, 'operation'] : path,
      `"operation" must be one of ${ops.join(', ')}`,
    );
  }
  if (action.target !== undefined && typeof action.target !== 'string')
    ctx.error([...path, 'target'], '"target" must be a string template');
  if (
    action.params !== undefined &&
    (action.params === null || typeof action.params !== 'object' || Array.isArray(action.params))
  ) {
    ctx.error([...path, 'params'], '"params" must be a mapping');
  }
  if (action.operation === 'scale') {
    const params = (action.params ?? {}) as Record<string, unknown>;
    if (params.to === undefined && params.by === undefined)
      ctx.error(
        'params' in action ? [...path, 'params'] : path,
        'scale needs params.to or params.by',
      );
    for (const k of ['to', 'by', 'min', 'max']) {
      if (params[k] !== undefined && !Number.isInteger(params[k]))
        ctx.error([...path, 'params', k], `params.${k} must be an integer`);
    }
  }
  if (action.when !== undefined) checkCondition(ctx, action.when, [...path, 'when']);
  checkGrouping(ctx, action, path);
}

/** A notify action's grouping options (the remediator's groupSpec checks them again). */
function checkGrouping(ctx: FileContext, action: Record<string, unknown>, path: Path): void {
  if (action.group !== undefined) {
    if (action.operation !== 'notify')
      ctx.error([...path, 'group'], 'group applies to notify actions only');
    else if (typeof action.group !== 'boolean')
      ctx.error([...path, 'group'], 'group is true (the default) or false (page per alert)');
    else if (action.group === false)
      for (const k of GROUP_KEYS)
        if (action[k] !== undefined)
          ctx.error([...path, k], `group: false pages per alert; ${k} would be ignored`);
  }
  for (const k of GROUP_KEYS) {
    if (action[k] === undefined) continue;
    if (action.operation !== 'notify') {
      ctx.error([...path, k], `${k} applies to notify actions only`);
      continue;
    }
    if (k !== 'group_by') {
      try {
        if (!(parseDuration(action[k]) > 0)) ctx.error([...path, k], `${k} must be above 0`);
      } catch (err) {
        ctx.error([...path, k], `${k}: ${(err as Error).message}`);
      }
      continue;
    }
    if (!Array.isArray(action[k])) {
      ctx.error([...path, k], 'group_by is a list of rule, labels.X or key.FIELD');
      continue;
    }
    (action[k] as unknown[]).forEach((f, i) => {
      if (f !== 'rule' && !(typeof f === 'string' && /^(labels|key)\.\S/.test(f)))
        ctx.error(
          [...path, k, i],
          `group_by lists rule, labels.X or key.FIELD, got ${JSON.stringify(f)}`,
        );
    });
  }
}

function checkExpect(ctx: FileContext, raw: Record<string, unknown>): void {
  const keyFields = toList(raw.query_key);
  (raw.expect as unknown[]).forEach((entry, i) => {
    if (keyFields.length === 0) {
      ctx.error(['expect', i], 'expect lists keys, so the rule needs a query_key');
      return;
    }
    if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) {
      const names = Object.keys(entry).sort();
      if (names.join() !== [...keyFields].sort().join()) {
        ctx.error(
          ['expect', i],
          `an expected key names exactly the query_key fields (${keyFields.join(', ')}), got ${names.join(', ') || 'none'}`,
        );
      }
    } else if (keyFields.length > 1) {
      ctx.error(
        ['expect', i],
        `with a compound query_key, an expected key is a mapping of ${keyFields.join(', ')}`,
      );
    }
  });
}

function toList(v: unknown): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? (v as string[]) : [v as string];
}

function durationOr(v: unknown, fallback: number): number {
  return v === undefined ? fallback : parseDuration(v);
}

function toRuleSpec(raw: Record<string, unknown>, file: string): RuleSpec {
  const query_key = toList(raw.query_key);
  const common = {
    name: raw.name as string,
    query_key,
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
    ...(raw.max_keys !== undefined && { max_keys: raw.max_keys as number }),
  };
  const type = raw.type as RuleType;
  switch (type) {
    case 'any':
      return { ...common, type };
    case 'frequency':
      return {
        ...common,
        type,
        num_events: raw.num_events as number,
        timeframe: parseDuration(raw.timeframe),
      };
    case 'spike':
      return {
        ...common,
        type,
        timeframe: parseDuration(raw.timeframe),
        spike_height: raw.spike_height as number,
        spike_type: raw.spike_type as 'up' | 'down' | 'both',
        threshold_cur: (raw.threshold_cur as number | undefined) ?? 1,
        threshold_ref: (raw.threshold_ref as number | undefined) ?? 1,
        alert_on_new_data: raw.alert_on_new_data === true,
      };
    case 'flatline':
      return {
        ...common,
        type,
        timeframe: parseDuration(raw.timeframe),
        threshold: raw.threshold as number,
        expect: ((raw.expect ?? []) as unknown[]).map((e) =>
          e !== null && typeof e === 'object'
            ? (e as Record<string, unknown>)
            : { [query_key[0]!]: e },
        ),
        forget_keys: raw.forget_keys === true,
      };
    case 'new_term':
      return {
        ...common,
        type,
        fields: toList(raw.fields),
        terms_window_size: durationOr(raw.terms_window_size, 30 * 86_400_000),
        alert_on_missing_field: raw.alert_on_missing_field === true,
        ...(raw.max_terms !== undefined && { max_terms: raw.max_terms as number }),
      };
    case 'expiry':
      return { ...common, type, ttl: durationOr(raw.ttl, 60_000) };
    case 'change':
      return {
        ...common,
        type,
        compare_key: toList(raw.compare_key),
        ignore_null: raw.ignore_null !== false,
        ...(raw.timeframe !== undefined && { timeframe: parseDuration(raw.timeframe) }),
      };
    case 'cardinality':
      return {
        ...common,
        type,
        cardinality_field: raw.cardinality_field as string,
        timeframe: parseDuration(raw.timeframe),
        ...(raw.max_cardinality !== undefined && {
          max_cardinality: raw.max_cardinality as number,
        }),
        ...(raw.min_cardinality !== undefined && {
          min_cardinality: raw.min_cardinality as number,
        }),
      };
    case 'metric_aggregation':
      return {
        ...common,
        type,
        metric_agg_key: raw.metric_agg_key as string,
        metric_agg_type: raw.metric_agg_type as never,
        timeframe: parseDuration(raw.timeframe),
        ...(raw.max_threshold !== undefined && { max_threshold: raw.max_threshold as number }),
        ...(raw.min_threshold !== undefined && { min_threshold: raw.min_threshold as number }),
      };
  }
}

/** " (did you mean "x"?)" when a known word is within a small edit distance. */
function suggest(word: string, known: string[]): string {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = k;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3))
    ? ` (did you mean "${best}"?)`
    : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/**
 * The rule files under `path`, each once. Entries whose names start with a dot are
 * skipped: `.git`, editors' `.x.yaml.swp`, and the `..data` / `..2026_…` folders a
 * Kubernetes ConfigMap mount keeps beside the symlinks that name its keys. Symlinks are
 * followed, and files and folders are told apart by their real paths, so a file reached
 * twice (a symlink, a folder named twice, a cycle) is read once.
 */
async function collectFiles(
  path: string,
  diagnostics: Diagnostic[],
  seen: Set<string>,
  top = false,
): Promise<string[]> {
  let s: Awaited<ReturnType<typeof stat>>;
  let real: string;
  try {
    s = await stat(path);
    real = await realpath(path);
  } catch (err) {
    // A dangling link that could not have been a rule file is none of the rules' business.
    if (!top && !isRuleFileName(basename(path))) return [];
    const code = (err as NodeJS.ErrnoException).code;
    diagnostics.push({
      file: path,
      line: 1,
      col: 1,
      message:
        code === 'ENOENT' && top
          ? 'no such file or folder'
          : `cannot read: ${(err as Error).message}`,
      severity: 'error',
    });
    return [];
  }
  // A file named on the command line or in rules.paths is read whatever its name.
  if (!s.isDirectory() && !top && !isRuleFileName(basename(path))) return [];
  if (seen.has(real)) return [];
  seen.add(real);
  if (!s.isDirectory()) return [path];
  const out: string[] = [];
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || e.isSymbolicLink() || isRuleFileName(e.name))
      out.push(...(await collectFiles(join(path, e.name), diagnostics, seen)));
  }
  return out;
}

function isRuleFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !/\.test\.ya?ml$/.test(name);
}

export async function loadRules(
  paths: string[],
): Promise<{ rules: RuleSpec[]; diagnostics: Diagnostic[]; files: string[] }> {
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) files.push(...(await collectFiles(p, diagnostics, seen, true)));
  const rules: RuleSpec[] = [];
  const byName = new Map<string, { file: string; line: number }>();
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Unreadable now (removed, permissions): the set is refused, the running one stays.
      diagnostics.push({
        file,
        line: 1,
        col: 1,
        message: `cannot read: ${(err as Error).message}`,
        severity: 'error',
      });
      continue;
    }
    const result = parseRuleFile(text, file);
    diagnostics.push(...result.diagnostics);
    if (!result.rule) continue;
    const { line, col } = positionOfName(text);
    const first = byName.get(result.rule.name);
    if (first) {
      diagnostics.push({
        file,
        line,
        col,
        message: `duplicate rule name "${result.rule.name}" (first defined at ${first.file}:${first.line})`,
        severity: 'error',
      });
      continue;
    }
    byName.set(result.rule.name, { file, line });
    rules.push(result.rule);
  }
  return { rules, diagnostics, files };
}

function positionOfName(text: string): { line: number; col: number } {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => /^name\s*:/.test(l));
  if (i < 0) return { line: 1, col: 1 };
  const m = /^name\s*:\s*/.exec(lines[i]!)!;
  return { line: i + 1, col: m[0].length + 1 };
}
