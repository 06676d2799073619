import { readFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { parseRuleFile } from '../load.ts';
import { collectFiles } from '../load/files.ts';
import { type Diagnostic, type Path, readYamlDocument } from '../load/yaml.ts';

/**
 * ElastAlert 2 rule files as Drover rules. The rule types and option names Drover shares
 * with ElastAlert carry over; `filter` (Elasticsearch query DSL) becomes a Drover
 * condition; alerters become `notify` actions on adapters of the same names. Whatever
 * cannot be carried over is reported at its file:line:col. A rule whose filter could not
 * be converted whole is written disabled: a dropped clause would widen what it matches.
 */

export interface ImportedRule {
  /** The source file. */
  file: string;
  name: string;
  /** The Drover rule file, a header comment naming the source first. */
  text: string;
  /** Written `enabled: false` because part of its filter could not be converted. */
  disabled: boolean;
}

export interface ImportResult {
  rules: ImportedRule[];
  /** Errors: a rule not converted at all; warnings: a part of one left out. */
  diagnostics: Diagnostic[];
}

type Condition =
  | { all: Condition[] }
  | { any: Condition[] }
  | { not: Condition }
  | { fact: string; operator: string; value: unknown };

const SHARED_TYPES = [
  'any',
  'frequency',
  'spike',
  'flatline',
  'new_term',
  'change',
  'cardinality',
  'metric_aggregation',
] as const;

/** Options carried over unchanged, per type (durations are converted). */
const TYPE_OPTIONS: Record<string, string[]> = {
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
  flatline: ['timeframe', 'threshold', 'forget_keys'],
  new_term: ['fields', 'terms_window_size', 'alert_on_missing_field'],
  change: ['compare_key', 'ignore_null', 'timeframe'],
  cardinality: ['cardinality_field', 'max_cardinality', 'min_cardinality', 'timeframe'],
  metric_aggregation: ['metric_agg_key', 'max_threshold', 'min_threshold'],
};
const DURATION_OPTIONS = new Set([
  'timeframe',
  'terms_window_size',
  'realert',
  'exponential_realert',
  'buffer_time',
  'bucket_interval',
]);

/** ElastAlert settings that concern its Elasticsearch queries or its own running: nothing to convert. */
const DOES_NOT_APPLY = new Set([
  'index',
  'es_host',
  'es_port',
  'es_username',
  'es_password',
  'es_url_prefix',
  'es_send_get_body_as',
  'es_conn_timeout',
  'use_ssl',
  'verify_certs',
  'ca_certs',
  'client_cert',
  'client_key',
  'timestamp_field',
  'timestamp_type',
  'timestamp_format',
  'timestamp_format_expr',
  'timestamp_to_datetime_format_expr',
  'use_strftime_index',
  'search_extra_index',
  'doc_type',
  'use_count_query',
  'use_terms_query',
  'terms_size',
  'use_keyword_postfix',
  'run_every',
  'buffer_time',
  'query_delay',
  'scan_entire_timeframe',
  'max_query_size',
  'max_scrolling_count',
  'scroll_keepalive',
  'window_step_size',
  'include',
  'include_fields',
  'top_count_keys',
  'top_count_number',
  'raw_count_keys',
  'alert_text',
  'alert_text_args',
  'alert_text_kw',
  'alert_text_type',
  'alert_subject',
  'alert_subject_args',
  'alert_missing_value',
  'attach_related',
  'generate_kibana_link',
  'kibana_url',
  'use_kibana4_dashboard',
  'kibana4_start_timedelta',
  'kibana4_end_timedelta',
  'use_kibana_dashboard',
  'kibana_discover_app_url',
  'kibana_discover_version',
  'kibana_discover_index_pattern_id',
  'import',
  'match_enhancements',
  'run_enhancements_first',
  'query_timezone',
  'aggregation',
  'aggregate_by_match_time',
  'aggregation_key',
  'summary_table_fields',
  'summary_table_type',
  'summary_table_max_rows',
  'summary_prefix',
  'summary_suffix',
  'min_doc_count',
  'metric_format_string',
  'allow_buffer_time_overlap',
  'owner',
  'priority',
  'category',
  'description',
  'is_enabled',
  'type',
  'name',
  'filter',
  'query_key',
  'realert',
  'exponential_realert',
  'alert',
  'compound_query_key',
  'percentile_range',
  'metric_agg_type',
  'bucket_interval',
  'sync_bucket_interval',
  'num_events',
]);
/** Of those, the ones worth telling the user about (the rest are presentation or query tuning). */
const NOTEWORTHY = new Set([
  'index',
  'es_host',
  'es_port',
  'use_count_query',
  'use_terms_query',
  'aggregation',
  'import',
  'match_enhancements',
  'query_delay',
  'include',
]);

const NAME_UNSAFE = /[^a-z0-9._-]+/g;
/** Query strings longer than this are not parsed (rule files are trusted; this bounds the parser). */
const MAX_QUERY_STRING = 10_000;
/** Parentheses and NOTs nested deeper than this are refused (the parser recurses). */
const MAX_QUERY_DEPTH = 50;

export function importElastalert(text: string, file: string): ImportResult {
  // An alias bomb is a diagnostic at its first alias (readYamlDocument), never a throw.
  const read = readYamlDocument(text, file, {
    empty: 'empty rule file',
    several: 'one rule per file: this file holds several YAML documents',
    allowNone: true,
  });
  if ('diagnostics' in read) return { rules: [], diagnostics: read.diagnostics };
  const { ctx, data } = read;
  const warnings: Diagnostic[] = [];
  const warn = (path: Path, message: string, key = false) => {
    const { line, col } = ctx.at(path, key);
    warnings.push({ file, line, col, message, severity: 'warning' });
  };
  const fail = (path: Path, message: string, key = false) => {
    ctx.error(path, message, key);
    return { rules: [], diagnostics: [...ctx.diagnostics, ...warnings] };
  };
  if (data === null) return fail([], 'empty rule file');
  if (typeof data !== 'object' || Array.isArray(data))
    return fail([], 'an ElastAlert rule file is a mapping of options (name, type, ...)');
  const ea = data as Record<string, unknown>;

  const type = ea.type;
  if (typeof type !== 'string') return fail(['type'], 'no rule type', true);
  if (
    !(SHARED_TYPES as readonly string[]).includes(type) &&
    !['blacklist', 'whitelist'].includes(type)
  )
    return fail(
      ['type'],
      `rule type "${type}" has no Drover equivalent (Drover has ${SHARED_TYPES.join(', ')}, and blacklist/whitelist as filters)`,
    );
  if (typeof ea.name !== 'string' || ea.name.trim() === '')
    return fail(['name'], 'an ElastAlert rule needs a name', true);

  if (type === 'spike' && ea.field_value !== undefined)
    return fail(
      ['field_value'],
      "a spike on a field's value (field_value) has no Drover equivalent: Drover spikes count events",
      true,
    );
  // ElastAlert's new_term `fields: [a, b]` watches each field on its own, `[[a, b]]` the
  // pair; a Drover list is the pair. One field, or one composite, carries over.
  let newTermFields: string | string[] | undefined;
  if (type === 'new_term' && ea.fields !== undefined) {
    const f = ea.fields;
    if (typeof f === 'string') newTermFields = f;
    else if (isStringList(f) && f.length === 1) newTermFields = f[0];
    else if (Array.isArray(f) && f.length === 1 && isStringList(f[0])) newTermFields = f[0];
    else
      return fail(
        ['fields'],
        isStringList(f)
          ? `new_term on several fields (${f.join(', ')}) watches each on its own: write one Drover rule per field (a Drover list of fields is one composite term)`
          : 'fields: a field, a list of one field, or a list holding one composite list',
      );
  }
  const out: Record<string, unknown> = {};
  const name = slugName(ea.name);
  out.name = name;
  if (name !== ea.name)
    warn(['name'], `name "${ea.name}" written as "${name}" (Drover names are [a-z0-9._-])`);
  if (typeof ea.description === 'string') out.description = ea.description;
  out.type = type === 'blacklist' || type === 'whitelist' ? 'any' : type;

  // The filter: a list of query DSL clauses, all of which must match.
  let filterComplete = true;
  const clauses: Condition[] = [];
  if (ea.filter !== undefined && ea.filter !== null) {
    if (!Array.isArray(ea.filter)) {
      warn(['filter'], 'filter is not a list of query clauses');
      filterComplete = false;
    } else {
      ea.filter.forEach((clause, i) => {
        const c = convertClause(clause, ['filter', i], warn);
        if (c) clauses.push(c);
        else filterComplete = false;
      });
    }
  }
  if (type === 'blacklist' || type === 'whitelist') {
    const list = ea[type];
    const key = ea.compare_key;
    if (typeof key !== 'string' || !Array.isArray(list)) {
      warn([type], `${type} needs compare_key and a list of values`);
      filterComplete = false;
    } else {
      const values = list.filter((v, i) => {
        if (typeof v === 'string' && v.startsWith('!file')) {
          warn([type, i], `"${v}": values read from a file are not converted`);
          filterComplete = false;
          return false;
        }
        return true;
      });
      if (type === 'blacklist') clauses.push({ fact: key, operator: 'in', value: values });
      else {
        const notIn: Condition = { fact: key, operator: 'notIn', value: values };
        // ElastAlert's whitelist ignores events without the field when ignore_null is set.
        clauses.push(
          ea.ignore_null === true
            ? { all: [{ fact: key, operator: 'exists', value: true }, notIn] }
            : notIn,
        );
      }
    }
  }
  if (clauses.length > 0) out.filter = flatten({ all: clauses });

  if (ea.query_key !== undefined) {
    if (typeof ea.query_key === 'string' || isStringList(ea.query_key))
      out.query_key = ea.query_key;
    else warn(['query_key'], 'query_key is neither a field nor a list of fields');
  }

  const copyDuration = (from: string, to = from) => {
    if (ea[from] === undefined) return;
    const d = durationText(ea[from]);
    if (d === undefined) warn([from], `${from}: not a duration Drover reads`);
    else out[to] = d;
  };
  for (const opt of type in TYPE_OPTIONS ? TYPE_OPTIONS[type]! : []) {
    if (ea[opt] === undefined) continue;
    if (DURATION_OPTIONS.has(opt)) copyDuration(opt);
    else out[opt] = opt === 'fields' ? newTermFields : ea[opt];
  }
  if (type === 'metric_aggregation') convertMetric(ea, out, warn);
  copyDuration('realert');
  copyDuration('exponential_realert');
  if (ea.is_enabled === false) out.enabled = false;

  const labels: Record<string, string | number | boolean> = {};
  for (const k of ['owner', 'priority', 'category'])
    if (['string', 'number', 'boolean'].includes(typeof ea[k])) labels[k] = ea[k] as string;
  if (Object.keys(labels).length > 0) out.labels = labels;

  const actions = convertAlerters(ea, warn);
  if (actions.length > 0) out.actions = actions;

  // Everything else: settings that do not apply, or options Drover does not have.
  const used = new Set([
    ...(type in TYPE_OPTIONS ? TYPE_OPTIONS[type]! : []),
    'blacklist',
    'whitelist',
    'compare_key',
    'ignore_null',
    'field_value',
    'fields',
  ]);
  for (const key of Object.keys(ea)) {
    if (used.has(key) || ALERTER_SETTING.test(key)) continue;
    if (DOES_NOT_APPLY.has(key)) {
      if (NOTEWORTHY.has(key))
        warn([key], `${key}: does not apply to Drover (not converted)`, true);
      continue;
    }
    warn([key], `${key}: no Drover equivalent (not converted)`, true);
  }

  if (!filterComplete) {
    out.enabled = false;
    warn(
      [ea.filter === undefined ? 'type' : 'filter'],
      'rule written disabled: part of its filter was not converted',
      true,
    );
  }

  const rule = orderRule(out);
  // The file name is written in a comment: control characters (a newline) would end it.
  const shown = [...file].map((c) => (c < ' ' || c === '\u007f' ? '?' : c)).join('');
  const text2 = `# Converted from ElastAlert rule ${shown} by drover rules import elastalert.\n${stringify(rule, { lineWidth: 100 })}`;
  // What is written must lint: checked here, against the same loader as `drover rules lint`.
  const lint = parseRuleFile(text2, `${file} (converted)`);
  if (lint.diagnostics.length > 0) {
    return {
      rules: [],
      diagnostics: [
        ...warnings,
        ...lint.diagnostics.map((d) => ({
          file,
          line: 1,
          col: 1,
          message: `the converted rule does not lint: ${d.line}:${d.col} ${d.message}`,
          severity: 'error' as const,
        })),
      ],
    };
  }
  return {
    rules: [{ file, name, text: text2, disabled: !filterComplete }],
    diagnostics: byPosition(warnings),
  };
}

/**
 * Every ElastAlert rule file under `paths` (folders searched recursively), converted; a
 * name taken by an earlier rule gets a numbered suffix, so the set loads as one.
 */
export async function importElastalertPaths(paths: string[]): Promise<ImportResult> {
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) files.push(...(await collectFiles(p, diagnostics, seen, true)));
  const rules: ImportedRule[] = [];
  const names = new Set<string>();
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      diagnostics.push({
        file,
        line: 1,
        col: 1,
        message: `cannot read: ${(err as Error).message}`,
        severity: 'error',
      });
      continue;
    }
    const result = importElastalert(text, file);
    diagnostics.push(...result.diagnostics);
    for (const rule of result.rules) {
      let name = rule.name;
      for (let n = 2; names.has(name); n++) name = `${rule.name}-${n}`;
      if (name !== rule.name) {
        diagnostics.push({
          file,
          line: 1,
          col: 1,
          message: `name "${rule.name}" is taken by an earlier rule: written as "${name}"`,
          severity: 'warning',
        });
        rule.text = rule.text.replace(/^name: .*$/m, `name: ${name}`);
        rule.name = name;
      }
      names.add(name);
      rules.push(rule);
    }
  }
  return { rules, diagnostics };
}

function byPosition(ds: Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) => a.line - b.line || a.col - b.col);
}

/** `all` inside `all` and `any` inside `any` are one level: the same condition, easier to read. */
function flatten(c: Condition): Condition {
  if ('all' in c) {
    const parts = c.all.map(flatten).flatMap((p) => ('all' in p ? p.all : [p]));
    return { all: parts };
  }
  if ('any' in c) {
    const parts = c.any.map(flatten).flatMap((p) => ('any' in p ? p.any : [p]));
    return { any: parts };
  }
  if ('not' in c) return { not: flatten(c.not) };
  return c;
}

/** Alerter settings (slack_webhook_url, email_reply_to, ...) belong to the adapter's configuration. */
const ALERTER_SETTING =
  /^(slack|email|smtp|from_addr|cc|bcc|jira|pagerduty|opsgenie|telegram|ms_teams|teams|mattermost|discord|http_post2?|command|pipe_|sns|aws_|victorops|gitter|servicenow|alerta|chatwork|dingtalk|googlechat|gelf|hive|line|pagertree|rocket_chat|squadcast|stomp|twilio|zabbix|tencent|lark|datadog|exotel|iris|matrixhs|webex|workwechat|ses)/;

type Warn = (path: Path, message: string, key?: boolean) => void;

function convertAlerters(ea: Record<string, unknown>, warn: Warn): Array<Record<string, string>> {
  const alert = ea.alert;
  if (alert === undefined) return [];
  const items: unknown[] = Array.isArray(alert) ? (alert as unknown[]) : [alert];
  const actions: Array<Record<string, string>> = [];
  const settings = Object.keys(ea).filter((k) => ALERTER_SETTING.test(k));
  items.forEach((item, i) => {
    const path: Path = Array.isArray(alert) ? ['alert', i] : ['alert'];
    let alerter: string | undefined;
    if (typeof item === 'string') alerter = item;
    else if (isObject(item) && Object.keys(item).length === 1) {
      alerter = Object.keys(item)[0];
      warn(
        path,
        `settings of the ${alerter} alerter are not converted: configure them on the "${alerter}" adapter`,
      );
    }
    if (alerter === undefined || alerter.includes('.')) {
      warn(
        path,
        `alerter ${JSON.stringify(alerter ?? item)} is not converted (only built-in alerters by name)`,
      );
      return;
    }
    actions.push({ adapter: alerter, operation: 'notify' });
  });
  if (settings.length > 0)
    warn(
      [settings[0]!],
      `alerter settings (${settings.join(', ')}) are not converted: they belong to the adapters' configuration`,
      true,
    );
  return actions;
}

function convertMetric(
  ea: Record<string, unknown>,
  out: Record<string, unknown>,
  warn: Warn,
): void {
  const agg = ea.metric_agg_type;
  const direct: Record<string, string> = {
    avg: 'avg',
    min: 'min',
    max: 'max',
    sum: 'sum',
    value_count: 'count',
  };
  if (typeof agg === 'string' && agg in direct) out.metric_agg_type = direct[agg];
  else if (agg === 'percentiles') {
    const p = ea.percentile_range;
    if (p === 50 || p === 90 || p === 95 || p === 99) out.metric_agg_type = `p${p}`;
    else
      warn(
        ['percentile_range'],
        `percentile ${JSON.stringify(p)}: Drover has p50, p90, p95 and p99`,
      );
  } else
    warn(['metric_agg_type'], `metric_agg_type ${JSON.stringify(agg)} has no Drover equivalent`);
  // ElastAlert aggregates over bucket_interval buckets when set, else over its buffer_time.
  const window = ea.bucket_interval ?? ea.buffer_time;
  const d = window === undefined ? undefined : durationText(window);
  if (d !== undefined) out.timeframe = d;
  else {
    out.timeframe = '45m';
    warn(
      ['type'],
      "metric_aggregation without bucket_interval or buffer_time: timeframe set to 45m, ElastAlert's default buffer_time",
    );
  }
}

/** One query DSL clause as a condition; undefined (with a warning) when it cannot be converted. */
function convertClause(clause: unknown, path: Path, warn: Warn): Condition | undefined {
  if (!isObject(clause) || Object.keys(clause).length !== 1) {
    warn(path, 'a filter clause is a mapping with one query (term, terms, range, bool...)');
    return undefined;
  }
  const [kind, body] = Object.entries(clause)[0]!;
  const at: Path = [...path, kind];
  switch (kind) {
    case 'query': // ElastAlert's classic `- query: { query_string: { query: ... } }`
      return convertClause(body, at, warn);
    case 'term':
    case 'match':
    case 'match_phrase': {
      const one = singleField(body);
      if (!one) break;
      let value = one.value;
      if (isObject(value)) {
        const inner = kind === 'term' ? value.value : value.query;
        if (Object.keys(value).length !== 1 || inner === undefined) break;
        value = inner;
      }
      if (!isScalar(value)) break;
      return { fact: one.field, operator: 'equal', value };
    }
    case 'terms': {
      const one = singleField(body);
      if (!one || !Array.isArray(one.value) || !one.value.every(isScalar)) break;
      return { fact: one.field, operator: 'in', value: one.value };
    }
    case 'prefix': {
      const one = singleField(body);
      if (!one || typeof one.value !== 'string') break;
      return { fact: one.field, operator: 'startsWith', value: one.value };
    }
    case 'range': {
      const one = singleField(body);
      if (!one || !isObject(one.value)) break;
      const ops: Record<string, string> = {
        gt: 'greaterThan',
        gte: 'greaterThanInclusive',
        lt: 'lessThan',
        lte: 'lessThanInclusive',
      };
      const conds: Condition[] = [];
      for (const [op, v] of Object.entries(one.value)) {
        if (!(op in ops) || typeof v !== 'number') {
          warn(
            at,
            `range: only numeric gt/gte/lt/lte bounds are converted (not ${op}: ${JSON.stringify(v)})`,
          );
          return undefined;
        }
        conds.push({ fact: one.field, operator: ops[op]!, value: v });
      }
      if (conds.length === 0) break;
      return conds.length === 1 ? conds[0] : { all: conds };
    }
    case 'exists': {
      if (!isObject(body) || typeof body.field !== 'string' || Object.keys(body).length !== 1)
        break;
      return { fact: body.field, operator: 'exists', value: true };
    }
    case 'bool':
      return convertBool(body, at, warn);
    case 'query_string': {
      if (!isObject(body) || typeof body.query !== 'string') break;
      const extra = Object.keys(body).filter((k) => k !== 'query' && k !== 'analyze_wildcard');
      if (extra.length > 0) {
        warn(at, `query_string options (${extra.join(', ')}) are not converted`);
        return undefined;
      }
      try {
        return parseQueryString(body.query);
      } catch (err) {
        warn([...at, 'query'], `query_string not converted: ${(err as Error).message}`);
        return undefined;
      }
    }
    default:
      warn(
        at,
        `"${kind}" queries are not converted (term, terms, match, match_phrase, prefix, range, exists, bool and simple query_string are)`,
        true,
      );
      return undefined;
  }
  warn(at, `${kind}: a form that is not converted (${JSON.stringify(body).slice(0, 80)})`);
  return undefined;
}

function convertBool(body: unknown, path: Path, warn: Warn): Condition | undefined {
  if (!isObject(body)) {
    warn(path, 'bool is a mapping of must, filter, should and must_not');
    return undefined;
  }
  const list = (k: string): unknown[] | undefined =>
    body[k] === undefined ? undefined : Array.isArray(body[k]) ? (body[k] as unknown[]) : [body[k]];
  let ok = true;
  const conv = (k: string): Condition[] =>
    (list(k) ?? []).map((c, i) => {
      const r = convertClause(c, Array.isArray(body[k]) ? [...path, k, i] : [...path, k], warn);
      if (!r) ok = false;
      return r!;
    });
  for (const k of Object.keys(body))
    if (!['must', 'filter', 'should', 'must_not', 'minimum_should_match'].includes(k)) {
      warn([...path, k], `bool: "${k}" is not converted`, true);
      ok = false;
    }
  const all = [...conv('must'), ...conv('filter')];
  const should = conv('should');
  const mustNot = conv('must_not');
  if (!ok) return undefined;
  const msm = body.minimum_should_match;
  if (should.length > 0) {
    if (msm !== undefined && msm !== 1 && msm !== '1') {
      warn(
        [...path, 'minimum_should_match'],
        `minimum_should_match ${JSON.stringify(msm)} is not converted (only 1)`,
      );
      return undefined;
    }
    // Elasticsearch 7+: beside must/filter, should clauses are optional unless minimum_should_match says otherwise.
    if (all.length === 0 || msm !== undefined) all.push({ any: should });
    else
      warn(
        [...path, 'should'],
        'should beside must/filter without minimum_should_match matches nothing more in Elasticsearch: left out',
        true,
      );
  }
  if (mustNot.length > 0) all.push({ not: { any: mustNot } });
  if (all.length === 0) {
    warn(path, 'an empty bool matches everything: left out');
    return { all: [] };
  }
  return all.length === 1 ? all[0] : { all };
}

/**
 * The simple forms of Lucene query syntax: `field:value`, `field:"a phrase"`, `field:*`,
 * AND / OR / NOT (also && || ! and a leading -), parentheses; terms side by side are
 * OR'ed (query_string's default_operator). Anything else throws, with what it met.
 */
export function parseQueryString(q: string): Condition {
  if (q.length > MAX_QUERY_STRING) throw new Error(`longer than ${MAX_QUERY_STRING} characters`);
  const tokens: string[] = [];
  const re = /\s*(\(|\)|&&|\|\||!|-(?=\S)|"(?:[^"\\]|\\.)*"|[^\s()"]+(?:"(?:[^"\\]|\\.)*")?)/y;
  let pos = 0;
  while (pos < q.length) {
    re.lastIndex = pos;
    const m = re.exec(q);
    if (!m) {
      if (/^\s*$/.test(q.slice(pos))) break;
      throw new Error(`cannot read "${q.slice(pos, pos + 20)}"`);
    }
    tokens.push(m[1]!);
    pos = re.lastIndex;
  }
  let i = 0;
  let depth = 0;
  const peek = () => tokens[i];
  const orExpr = (): Condition => {
    const parts = [andExpr()];
    while (i < tokens.length && peek() !== ')') {
      if (peek() === 'OR' || peek() === '||') i++;
      parts.push(andExpr());
    }
    return parts.length === 1 ? parts[0]! : { any: parts };
  };
  const andExpr = (): Condition => {
    const parts = [notExpr()];
    while (peek() === 'AND' || peek() === '&&') {
      i++;
      parts.push(notExpr());
    }
    return parts.length === 1 ? parts[0]! : { all: parts };
  };
  const notExpr = (): Condition => {
    const t = peek();
    if (t === 'NOT' || t === '!' || t === '-') {
      i++;
      if (++depth > MAX_QUERY_DEPTH) throw new Error(`nested deeper than ${MAX_QUERY_DEPTH}`);
      const inner = notExpr();
      depth--;
      return { not: inner };
    }
    return atom();
  };
  const atom = (): Condition => {
    const t = tokens[i++];
    if (t === undefined) throw new Error('the query ends early');
    if (t === '(') {
      if (++depth > MAX_QUERY_DEPTH) throw new Error(`nested deeper than ${MAX_QUERY_DEPTH}`);
      const inner = orExpr();
      depth--;
      if (tokens[i++] !== ')') throw new Error('unbalanced parentheses');
      return inner;
    }
    const m = /^([A-Za-z_@][\w.@-]*):(.+)$/s.exec(t);
    if (!m)
      throw new Error(`"${t}" is not field:value (searches of every field are not converted)`);
    const field = m[1]!;
    const raw = m[2]!;
    if (raw === '*') return { fact: field, operator: 'exists', value: true };
    if (raw.startsWith('"')) {
      if (!raw.endsWith('"') || raw.length < 2) throw new Error(`unterminated phrase in "${t}"`);
      return { fact: field, operator: 'equal', value: raw.slice(1, -1).replace(/\\(.)/g, '$1') };
    }
    if (/[*?~^/[\]{}<>=\\+!&|]/.test(raw) || /^(AND|OR|NOT)$/.test(raw))
      throw new Error(
        `"${t}": wildcards, ranges, regular expressions, fuzziness and boosts are not converted`,
      );
    // Elasticsearch reads the value as the field's type: a number matches both ways.
    if (/^-?\d+(\.\d+)?$/.test(raw))
      return { fact: field, operator: 'in', value: [raw, Number(raw)] };
    if (raw === 'true' || raw === 'false')
      return { fact: field, operator: 'in', value: [raw, raw === 'true'] };
    return { fact: field, operator: 'equal', value: raw };
  };
  if (tokens.length === 0) throw new Error('empty query');
  const result = orExpr();
  if (i < tokens.length) throw new Error(`unexpected "${tokens[i]}"`);
  return result;
}

/** `{ minutes: 5 }` (any of ElastAlert's timedelta units) or a Drover duration, as Drover text. */
export function durationText(v: unknown): string | undefined {
  const units: Record<string, number> = {
    weeks: 604_800_000,
    days: 86_400_000,
    hours: 3_600_000,
    minutes: 60_000,
    seconds: 1_000,
    milliseconds: 1,
    microseconds: 0.001,
  };
  if (typeof v === 'string' && /^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$/.test(v)) return v.trim();
  if (!isObject(v) || Object.keys(v).length === 0) return undefined;
  let ms = 0;
  for (const [unit, amount] of Object.entries(v)) {
    if (
      !(unit in units) ||
      typeof amount !== 'number' ||
      !(amount >= 0) ||
      !Number.isFinite(amount)
    )
      return undefined;
    ms += amount * units[unit]!;
  }
  ms = Math.round(ms);
  if (ms === 0) return '0s';
  let rest = ms;
  let text = '';
  for (const [suffix, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
    ['ms', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) text += `${n}${suffix}`;
    rest -= n * size;
  }
  return text;
}

function slugName(name: string): string {
  const slug = name
    .toLowerCase()
    .replace(NAME_UNSAFE, '-')
    .replace(/^[-.]+|-+$/g, '');
  return slug === '' ? 'elastalert-rule' : slug;
}

const ORDER = ['name', 'description', 'type', 'enabled', 'filter', 'query_key'];
function orderRule(out: Record<string, unknown>): Record<string, unknown> {
  const rule: Record<string, unknown> = {};
  for (const k of ORDER) if (k in out) rule[k] = out[k];
  for (const k of Object.keys(out))
    if (!(k in rule) && k !== 'labels' && k !== 'actions') rule[k] = out[k];
  if (out.labels) rule.labels = out.labels;
  if (out.actions) rule.actions = out.actions;
  return rule;
}

function singleField(body: unknown): { field: string; value: unknown } | undefined {
  if (!isObject(body)) return undefined;
  const entries = Object.entries(body);
  if (entries.length !== 1) return undefined;
  return { field: entries[0]![0], value: entries[0]![1] };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isScalar(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');
}
