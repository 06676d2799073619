/**
 * The rule language (docs/rules.md) as types. A `RuleSpec` is what a YAML rule file
 * holds after validation, with durations already converted to milliseconds.
 */

/** json-rules-engine's condition syntax. */
export type Condition = AllCondition | AnyCondition | NotCondition | FactCondition;
export interface AllCondition {
  all: Condition[];
}
export interface AnyCondition {
  any: Condition[];
}
export interface NotCondition {
  not: Condition;
}
export interface FactCondition {
  fact: string;
  operator: Operator;
  value: unknown;
  /** JSONPath into the fact's value, e.g. `$.type` or `$[0]`. */
  path?: string;
}

export const OPERATORS = [
  'equal',
  'notEqual',
  'lessThan',
  'lessThanInclusive',
  'greaterThan',
  'greaterThanInclusive',
  'in',
  'notIn',
  'contains',
  'doesNotContain',
  'matches',
  'exists',
  'startsWith',
  'endsWith',
] as const;
export type Operator = (typeof OPERATORS)[number];

export const RULE_TYPES = [
  'any',
  'frequency',
  'spike',
  'flatline',
  'new_term',
  'expiry',
  'change',
  'cardinality',
  'metric_aggregation',
] as const;
export type RuleType = (typeof RULE_TYPES)[number];

/** What an action does; rules/schema.json's action `operation` lists the same (tested). */
export const OPERATIONS = ['kill-and-replace', 'scale', 'notify'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** One entry of a rule's `actions`: a full action, or the name of an adapter's default action set. */
export type ActionSpec = string | ActionObject;

/** An action written out (rules/action.ts validates it for lint, configuration and policy). */
export interface ActionObject {
  adapter: string;
  operation: Operation;
  target?: string;
  params?: Record<string, unknown>;
  when?: Condition;
  /** notify: also notify when the alert's firing resolves (docs/actions.md). */
  send_resolved?: boolean;
  /** notify: Alertmanager-style grouping of the alerts it pages for, on unless `group: false` (actions/notify-groups.ts). */
  group?: boolean;
  group_by?: string[];
  group_wait?: string | number | Record<string, number>;
  group_interval?: string | number | Record<string, number>;
  repeat_interval?: string | number | Record<string, number>;
  /** kill-and-replace, scale: how long the alert has to resolve for the action to count as effective. */
  verify_within?: string | number | Record<string, number>;
  /** kill-and-replace, scale: the action to run when the verification ends ineffective. */
  on_ineffective?: ActionObject;
  /** scale: back to the previous size once the alert resolves or the window ends. */
  rollback?: boolean;
}

export interface CommonOptions {
  name: string;
  description?: string;
  filter?: Condition;
  /** Field names; a single query_key is a list of one. Empty: one key for the whole rule. */
  query_key: string[];
  /** ms; default 1m. */
  realert: number;
  /** ms; the ceiling the realert period may grow to. */
  exponential_realert?: number;
  /** ms; how long the condition must hold before the alert fires. */
  for?: number;
  /** ms; a firing alert stays firing this long after its condition clears (docs/rules.md#alert-states). */
  keep_firing_for?: number;
  /** ms; any, new_term, change: a firing resolves this long after its last occurrence (default: realert). */
  resolve_after?: number;
  /** Keys (and realert silences) the rule holds at most; default `rules.maxKeysPerRule`. */
  max_keys?: number;
  labels: Record<string, string>;
  actions: ActionSpec[];
  enabled: boolean;
  /** Where the rule came from, for messages. */
  source?: { file: string };
}

export interface AnyRule extends CommonOptions {
  type: 'any';
}
export interface FrequencyRule extends CommonOptions {
  type: 'frequency';
  num_events: number;
  timeframe: number;
}
export interface SpikeRule extends CommonOptions {
  type: 'spike';
  timeframe: number;
  spike_height: number;
  spike_type: 'up' | 'down' | 'both';
  threshold_cur: number;
  threshold_ref: number;
  alert_on_new_data: boolean;
}
export interface FlatlineRule extends CommonOptions {
  type: 'flatline';
  timeframe: number;
  threshold: number;
  /** Keys that must report even if never seen; each maps query_key fields to values. */
  expect: Array<Record<string, unknown>>;
  forget_keys: boolean;
}
export interface NewTermRule extends CommonOptions {
  type: 'new_term';
  fields: string[];
  terms_window_size: number;
  alert_on_missing_field: boolean;
  /** Terms the rule holds at most; default `rules.maxTermsPerRule`. */
  max_terms?: number;
}
export interface ExpiryRule extends CommonOptions {
  type: 'expiry';
  ttl: number;
}
export interface ChangeRule extends CommonOptions {
  type: 'change';
  compare_key: string[];
  ignore_null: boolean;
  timeframe?: number;
}
export interface CardinalityRule extends CommonOptions {
  type: 'cardinality';
  cardinality_field: string;
  timeframe: number;
  max_cardinality?: number;
  min_cardinality?: number;
}
export type MetricAggType = 'avg' | 'min' | 'max' | 'sum' | 'count' | 'p50' | 'p90' | 'p95' | 'p99';
export const METRIC_AGG_TYPES: readonly MetricAggType[] = [
  'avg',
  'min',
  'max',
  'sum',
  'count',
  'p50',
  'p90',
  'p95',
  'p99',
];
export interface MetricAggregationRule extends CommonOptions {
  type: 'metric_aggregation';
  metric_agg_key: string;
  metric_agg_type: MetricAggType;
  timeframe: number;
  max_threshold?: number;
  min_threshold?: number;
}

export type RuleSpec =
  | AnyRule
  | FrequencyRule
  | SpikeRule
  | FlatlineRule
  | NewTermRule
  | ExpiryRule
  | ChangeRule
  | CardinalityRule
  | MetricAggregationRule;

/**
 * What a rule emits (docs/rules.md#alerts). `id` is a hash of rule, key and the
 * instant that fired: the same on every replay, and the idempotency key of its actions.
 */
export interface Alert {
  id: string;
  rule: string;
  type: RuleType;
  description?: string;
  /** query_key field → value; `{}` without a query_key. */
  key: Record<string, unknown>;
  /** Event time the alert fired, ISO 8601. */
  at: string;
  /** The figures that made it fire: count, reference, value, term, old/new value... */
  figures: Record<string, unknown>;
  /** An event that contributed (absent for absence alerts with nothing seen). */
  sample?: Record<string, unknown>;
  labels: Record<string, string>;
  actions: ActionSpec[];
  /**
   * On Kafka, the rules task that fired it and the rules group's generation the worker
   * held the task in (docs/scale-out.md): the action store refuses a claim from a
   * generation older than one already seen for the task.
   */
  task?: { id: number; generation: number };
}

/** What a rule and key can be (docs/rules.md#alert-states); `firing` is announced by the Alert itself. */
export type AlertState = 'inactive' | 'pending' | 'firing' | 'resolved';

/**
 * A change of a rule and key's state other than to `firing` (the alert is that):
 * `pending` (its `for` started), `inactive` (a pending condition stopped holding before
 * it fired) and `resolved` (a firing ended). `id` is a hash of rule, key and the instant
 * or firing it belongs to: the same on every replay.
 */
export interface StateChange {
  id: string;
  rule: string;
  type: RuleType;
  key: Record<string, unknown>;
  state: Exclude<AlertState, 'firing'>;
  /** Event time of the transition, ISO 8601. */
  at: string;
  /** resolved: the id of the alert that opened the firing it closes, and when that was. */
  alert?: string;
  firing_since?: string;
  labels: Record<string, string>;
  actions: ActionSpec[];
}
