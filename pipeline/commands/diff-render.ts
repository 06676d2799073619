import type { RuleDiff } from '../../rules/diff.ts';

/** What the simulated remediation did with one action on one day, per side. */
export interface ActionRow {
  /** UTC day of the decisions, YYYY-MM-DD. */
  day: string;
  /** `adapter:operation`. */
  action: string;
  /** Outcome (`would run`, `suppressed by budget`, `failed`...) → count. */
  base: Record<string, number>;
  head: Record<string, number>;
}

export interface RuleReport extends RuleDiff {
  actions: ActionRow[];
  /** Whether the simulated actions differ between the two sides. */
  actionsChanged: boolean;
}

export interface DiffReport {
  base: string;
  head: string;
  events: number;
  first: number | undefined;
  last: number | undefined;
  rules: RuleReport[];
}

/** Keys and examples listed per rule; the counts always cover all of them. */
export const MAX_KEYS = 10;
export const MAX_EXAMPLES = 10;
/** Markdown stays under this many characters (GitHub's comment limit is 65,536). */
export const MARKDOWN_MAX = 60_000;
/** Rule sections shown open in Markdown; later ones are collapsed. */
export const MARKDOWN_OPEN = 3;
/** Rows of the summary table at most, and at most half the size: room is left for details. */
export const MARKDOWN_TABLE_ROWS = 100;

export function differs(r: RuleReport): boolean {
  return r.added + r.removed + r.moved > 0 || r.actionsChanged;
}

/** Per key: its changes, the keys with most changes first, at most MAX_KEYS. */
export function keyCounts(r: RuleDiff): Array<{
  key: Record<string, unknown>;
  added: number;
  removed: number;
  moved: number;
}> {
  const by = new Map<
    string,
    { key: Record<string, unknown>; added: number; removed: number; moved: number }
  >();
  for (const c of r.changes) {
    let k = by.get(c.keyId);
    if (!k) by.set(c.keyId, (k = { key: c.key, added: 0, removed: 0, moved: 0 }));
    if (c.change !== 'unchanged') k[c.change]++;
  }
  return [...by.values()]
    .sort((a, b) => b.added + b.removed + b.moved - (a.added + a.removed + a.moved))
    .slice(0, MAX_KEYS);
}

function outcomes(o: Record<string, number>): string {
  const total = Object.values(o).reduce((a, b) => a + b, 0);
  if (total === 0) return '0';
  return `${total} (${Object.entries(o)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${n} ${k}`)
    .join(', ')})`;
}

/** One JSON line per rule: counts, keys, first examples and the simulated actions. */
export function renderJson(report: DiffReport): string {
  return report.rules
    .map(
      (r) =>
        `${JSON.stringify({
          rule: r.rule,
          presence: r.presence,
          added: r.added,
          removed: r.removed,
          moved: r.moved,
          unchanged: r.unchanged,
          keys: keyCounts(r),
          examples: r.changes.slice(0, MAX_EXAMPLES).map(({ rule: _r, keyId: _k, ...c }) => c),
          actions: r.actions,
          actionsChanged: r.actionsChanged,
        })}\n`,
    )
    .join('');
}

/** Control characters of event values never reach the terminal. */
function plain(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

export function keyLabel(key: Record<string, unknown>): string {
  const parts = Object.entries(key).map(
    ([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`,
  );
  return parts.length > 0 ? parts.join(',') : '-';
}

function span(report: DiffReport): string {
  return report.first === undefined
    ? 'no events'
    : `${new Date(report.first).toISOString()} .. ${new Date(report.last!).toISOString()}`;
}

function presenceText(r: RuleReport): string {
  return r.presence === 'head' ? ' (new rule)' : r.presence === 'base' ? ' (rule removed)' : '';
}

export function renderText(report: DiffReport): string {
  const out: string[] = [
    `base ${plain(report.base)}, head ${plain(report.head)}: ${report.events} events (${span(report)})`,
  ];
  const changed = report.rules.filter(differs);
  if (changed.length === 0) out.push('no differences');
  for (const r of changed) {
    out.push(
      '',
      `${plain(r.rule)}${presenceText(r)}: ${r.added} added, ${r.removed} removed, ${r.moved} moved, ${r.unchanged} unchanged`,
    );
    for (const k of keyCounts(r))
      out.push(`  key ${plain(keyLabel(k.key))}: +${k.added} -${k.removed} ~${k.moved}`);
    for (const c of r.changes.slice(0, MAX_EXAMPLES))
      out.push(
        `  ${c.change.padEnd(7)} ${c.change === 'moved' ? `${c.baseAt} -> ${c.headAt}` : (c.headAt ?? c.baseAt)}  ${plain(keyLabel(c.key))}`,
      );
    if (r.changes.length > MAX_EXAMPLES)
      out.push(`  … ${r.changes.length - MAX_EXAMPLES} more changes`);
    for (const a of r.actions)
      out.push(`  ${a.day} ${plain(a.action)}: head ${outcomes(a.head)}; base ${outcomes(a.base)}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Untrusted text (rule names, key values: event values) as an inline code span in a
 * table cell: no link, mention, emphasis or HTML survives in a code span; `|` is escaped
 * (GitHub splits cells on it even inside code), line breaks and control characters become
 * spaces, a backslash its look-alike ⧵, and the fence is longer than any run of backticks inside.
 */
export function mdCode(s: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  let t = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  if (t.length > max) t = `${t.slice(0, max)}…`;
  // A backslash would escape the `\|` after it: shown as its look-alike U+29F5.
  t = t.replace(/\\/g, '\u29f5').replace(/\|/g, '\\|');
  if (t.trim() === '') return '`·`';
  const runs = t.match(/`+/g) ?? [];
  const fence = '`'.repeat(Math.max(0, ...runs.map((r) => r.length)) + 1);
  const pad = t.startsWith('`') || t.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${t}${pad}${fence}`;
}

/** Untrusted text inside HTML (a `<summary>`), as code: entities for every markup character. */
export function htmlCode(s: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  let t = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  if (t.length > max) t = `${t.slice(0, max)}…`;
  const escaped = t.replace(/[&<>"'`@[\]()*_~\\|#!:]/g, (c) => `&#${c.codePointAt(0)!};`);
  return `<code>${escaped}</code>`;
}

function mdOutcomes(o: Record<string, number>): string {
  return outcomes(o).replace(/\|/g, '\\|');
}

function ruleSection(r: RuleReport, open: boolean): string {
  const lines = [
    `<details${open ? ' open' : ''}><summary>${htmlCode(r.rule)}${presenceText(r)}: +${r.added} −${r.removed} ~${r.moved}</summary>`,
    '',
  ];
  const keys = keyCounts(r);
  if (keys.length > 0) {
    lines.push('| key | added | removed | moved |', '|---|---:|---:|---:|');
    for (const k of keys)
      lines.push(`| ${mdCode(keyLabel(k.key))} | ${k.added} | ${k.removed} | ${k.moved} |`);
    lines.push('');
  }
  if (r.changes.length > 0) {
    lines.push('| change | base | head | key |', '|---|---|---|---|');
    for (const c of r.changes.slice(0, MAX_EXAMPLES))
      lines.push(
        `| ${c.change} | ${c.baseAt ?? ''} | ${c.headAt ?? ''} | ${mdCode(keyLabel(c.key))} |`,
      );
    if (r.changes.length > MAX_EXAMPLES)
      lines.push(`| … | | | ${r.changes.length - MAX_EXAMPLES} more |`);
    lines.push('');
  }
  if (r.actions.length > 0) {
    lines.push('| day | action | head | base |', '|---|---|---|---|');
    for (const a of r.actions)
      lines.push(
        `| ${a.day} | ${mdCode(a.action)} | ${mdOutcomes(a.head)} | ${mdOutcomes(a.base)} |`,
      );
    lines.push('');
  }
  lines.push('</details>', '');
  return lines.join('\n');
}

/**
 * A PR comment: a summary table of the rules that differ (at most MARKDOWN_TABLE_ROWS
 * rows, half the size), then a section per rule (the first MARKDOWN_OPEN open, the rest
 * collapsed), cut to MARKDOWN_MAX characters with a note of what was left out.
 */
export function renderMarkdown(report: DiffReport, max = MARKDOWN_MAX): string {
  const changed = report.rules.filter(differs);
  const head = [
    '### drover rules diff',
    '',
    `Base ${mdCode(report.base)}, head ${mdCode(report.head)}, ${report.events} events (${span(report)}).`,
    '',
  ];
  if (changed.length === 0) return `${head.join('\n')}No differences in alerts or actions.\n`;
  const table = ['| rule | added | removed | moved | actions |', '|---|---:|---:|---:|---|'];
  for (const r of changed)
    table.push(
      `| ${mdCode(r.rule)}${presenceText(r)} | ${r.added} | ${r.removed} | ${r.moved} | ${r.actionsChanged ? 'changed' : ''} |`,
    );
  const reserve = 200; // the closing note
  let out = `${head.join('\n')}\n`;
  let shown = 0;
  for (const row of table) {
    if (shown >= MARKDOWN_TABLE_ROWS || out.length + row.length + 1 > max / 2) break;
    out += `${row}\n`;
    if (!row.startsWith('| rule') && !row.startsWith('|---')) shown++;
  }
  out += '\n';
  let sections = 0;
  for (const r of changed.slice(0, shown)) {
    const s = ruleSection(r, sections < MARKDOWN_OPEN);
    if (out.length + s.length > max - reserve) break;
    out += s;
    sections++;
  }
  if (shown < changed.length || sections < changed.length)
    out += `\n_${changed.length - shown} more rules left out of the table and ${changed.length - sections} of the details, to keep this comment under ${max} characters: run \`drover rules diff --format json\` for all of them._\n`;
  return out;
}
