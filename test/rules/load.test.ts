import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic, loadRules, parseDuration, parseRuleFile } from '../../rules/index.ts';

/** Lint messages as the CLI prints them, for a rule file's text. */
function lint(text: string): string[] {
  return parseRuleFile(text, 'rule.yaml').diagnostics.map(formatDiagnostic);
}

const VALID = `name: web-errors
type: frequency
query_key: host.name
num_events: 5
timeframe: 1m
filter:
  all:
    - { fact: log.level, operator: in, value: [error, fatal] }
`;

describe('rule files: positions of every error', () => {
  it('accepts a valid rule and fills defaults', () => {
    const { rule, diagnostics } = parseRuleFile(VALID, 'rule.yaml');
    expect(diagnostics).toEqual([]);
    expect(rule).toEqual({
      name: 'web-errors',
      type: 'frequency',
      query_key: ['host.name'],
      num_events: 5,
      timeframe: 60_000,
      realert: 60_000,
      labels: {},
      actions: [],
      enabled: true,
      source: { file: 'rule.yaml' },
      filter: { all: [{ fact: 'log.level', operator: 'in', value: ['error', 'fatal'] }] },
    });
  });

  it('unknown option, with a suggestion, at the key', () => {
    expect(lint(VALID.replace('num_events: 5', 'num_event: 5'))).toContain(
      'rule.yaml:4:1 unknown option "num_event" (did you mean "num_events"?)',
    );
  });

  it('missing required option for the type, at the type', () => {
    expect(lint(VALID.replace('num_events: 5\n', ''))).toEqual([
      'rule.yaml:2:7 frequency rules need "num_events"',
    ]);
  });

  it('wrong type of a value', () => {
    expect(lint(VALID.replace('num_events: 5', 'num_events: five'))).toEqual([
      'rule.yaml:4:13 "num_events" must be an integer',
    ]);
  });

  it('an option of another rule type', () => {
    expect(lint(`${VALID}spike_height: 3\n`)).toEqual([
      'rule.yaml:9:1 "spike_height" is not an option of frequency rules (it belongs to spike)',
    ]);
  });

  it('invalid durations', () => {
    expect(lint(VALID.replace('timeframe: 1m', 'timeframe: 5 minutes'))).toEqual([
      'rule.yaml:5:12 "timeframe": invalid duration "5 minutes": expected a number and a unit (ms, s, m, h, d, w), e.g. 500ms, 30s, 5m, 1h30m',
    ]);
    expect(lint(VALID.replace('timeframe: 1m', 'timeframe: { minutes: 5, hourz: 1 }'))[0]).toMatch(
      /^rule.yaml:5:12 .*unknown duration unit "hourz"/,
    );
  });

  it('unknown operators and bad regexes in filters', () => {
    expect(lint(VALID.replace('operator: in', 'operator: inside'))).toEqual([
      'rule.yaml:8:36 unknown operator "inside"',
    ]);
    expect(lint(VALID.replace('operator: in', 'operator: equals'))).toEqual([
      'rule.yaml:8:36 unknown operator "equals" (did you mean "equal"?)',
    ]);
    expect(
      lint(
        VALID.replace('operator: in, value: [error, fatal]', 'operator: matches, value: "err(or"'),
      )[0],
    ).toMatch(/^rule.yaml:8:52 invalid regular expression: .*Unterminated group/);
    expect(
      lint(VALID.replace('operator: in, value: [error, fatal]', 'operator: in, value: error')),
    ).toEqual(['rule.yaml:8:47 "in" needs a list value, e.g. [error, fatal]']);
    expect(lint(VALID.replace('{ fact: log.level,', '{ fakt: log.level,'))).toContain(
      'rule.yaml:8:9 unknown condition key "fakt" (did you mean "fact"?)',
    );
  });

  it('name syntax, `for` on an event rule, expiry without query_key', () => {
    expect(lint(VALID.replace('name: web-errors', 'name: Web Errors'))).toEqual([
      'rule.yaml:1:7 name must use only lowercase letters, digits, ".", "_" and "-"',
    ]);
    expect(lint('name: a\ntype: any\nfor: 5m\n')[0]).toMatch(
      /^rule.yaml:3:1 "for" needs a condition that can hold over time/,
    );
    // The flatline engine never honoured `for` (it fired at the first low instant):
    // refused, not silently ignored. Its timeframe is how long a key must be low.
    expect(lint('name: a\ntype: flatline\ntimeframe: 1m\nthreshold: 1\nfor: 5m\n')[0]).toMatch(
      /^rule.yaml:5:1 "for" needs a condition that can hold over time/,
    );
    expect(lint('name: a\ntype: expiry\nttl: 30s\n')).toEqual([
      'rule.yaml:2:7 expiry rules need "query_key"',
    ]);
  });

  it('type-specific checks: cardinality bounds, flatline expect, actions', () => {
    expect(lint('name: a\ntype: cardinality\ncardinality_field: user\ntimeframe: 5m\n')).toEqual([
      'rule.yaml:2:7 cardinality rules need max_cardinality or min_cardinality',
    ]);
    expect(
      lint(
        'name: a\ntype: flatline\ntimeframe: 1m\nthreshold: 1\nquery_key: [service.name, host.name]\nexpect: [web-1]\n',
      ),
    ).toEqual([
      'rule.yaml:6:10 with a compound query_key, an expected key is a mapping of service.name, host.name',
    ]);
    expect(
      lint('name: a\ntype: any\nactions:\n  - { adapter: fleet, operation: scale, target: web }\n'),
    ).toEqual(['rule.yaml:4:5 scale needs params.to or params.by']);
    expect(
      lint('name: a\ntype: any\nactions:\n  - { adapter: fleet, operation: reboot }\n'),
    ).toEqual(['rule.yaml:4:34 "operation" must be one of kill-and-replace, scale, notify']);
  });

  it('notification grouping options: notify only, group_by fields, durations', () => {
    const rule = (action: string) => `name: a\ntype: any\nactions:\n  - ${action}\n`;
    expect(
      lint(
        rule(
          '{ adapter: pager, operation: notify, group_by: [rule, labels.team, key.host.name], group_wait: 10s, group_interval: 2m }',
        ),
      ),
    ).toEqual([]);
    expect(
      parseRuleFile(rule('{ adapter: pager, operation: notify, group_wait: 10s }'), 'r.yaml').rule!
        .actions,
    ).toEqual([{ adapter: 'pager', operation: 'notify', group_wait: '10s' }]);
    expect(lint(rule('{ adapter: pager, operation: notify, group_by: [host.name] }'))).toEqual([
      'rule.yaml:4:53 group_by lists rule, labels.X or key.FIELD, got "host.name"',
    ]);
    expect(lint(rule('{ adapter: pager, operation: notify, group_wait: soon }'))).toEqual([
      expect.stringMatching(/^rule.yaml:4:\d+ .*group_wait/),
    ]);
    expect(
      lint(rule('{ adapter: fleet, operation: scale, params: { to: 1 }, group_wait: 5s }')),
    ).toEqual([
      expect.stringMatching(/^rule.yaml:4:\d+ group_wait applies to notify actions only/),
    ]);
  });

  it('grouping is on unless group: false; repeat_interval is a duration; each error located', () => {
    const rule = (action: string) => `name: a\ntype: any\nactions:\n  - ${action}\n`;
    expect(lint(rule('{ adapter: pager, operation: notify, group: false }'))).toEqual([]);
    expect(lint(rule('{ adapter: pager, operation: notify, repeat_interval: 2h }'))).toEqual([]);
    expect(lint(rule('{ adapter: pager, operation: notify, group: maybe }'))).toEqual([
      'rule.yaml:4:49 group is true (the default) or false (page per alert)',
    ]);
    expect(
      lint(rule('{ adapter: pager, operation: notify, group: false, group_wait: 5s }')),
    ).toEqual(['rule.yaml:4:68 group: false pages per alert; group_wait would be ignored']);
    expect(lint(rule('{ adapter: pager, operation: notify, repeat_interval: 0s }'))).toEqual([
      expect.stringMatching(/^rule.yaml:4:\d+ repeat_interval must be above 0/),
    ]);
    expect(lint(rule('{ adapter: fleet, operation: kill-and-replace, group: false }'))).toEqual([
      expect.stringMatching(/^rule.yaml:4:\d+ group applies to notify actions only/),
    ]);
  });

  it('YAML syntax errors and several documents', () => {
    expect(lint('name: a\ntype: [any\n')[0]).toMatch(/^rule.yaml:\d+:\d+ /);
    expect(lint('name: a\ntype: any\n---\nname: b\ntype: any\n')).toEqual([
      'rule.yaml:3:1 one rule per file: this file holds several YAML documents',
    ]);
  });

  it('an empty file, a comment-only file and an alias bomb are errors at their place', () => {
    expect(lint('')).toEqual(['rule.yaml:1:1 empty rule file']);
    expect(lint('# nothing yet\n')).toEqual(['rule.yaml:1:1 empty rule file']);
    // Nine aliases per level, seven levels: 9^7 nodes once expanded.
    const levels = ['a: &l0 [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 7; i++)
      levels.push(
        `l${i}: &l${i} [${Array(9)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    expect(lint(`${levels.join('\n')}\nname: a\ntype: any\n`)).toEqual([
      expect.stringMatching(/^rule.yaml:2:\d+ Excessive alias count/),
    ]);
  });

  it('normalizes list forms: fields, compare_key, expect scalars', () => {
    const nt = parseRuleFile(
      'name: a\ntype: new_term\nfields: error.fingerprint\n',
      'r.yaml',
    ).rule!;
    expect(nt).toMatchObject({
      fields: ['error.fingerprint'],
      terms_window_size: 30 * 86_400_000,
      alert_on_missing_field: false,
    });
    const fl = parseRuleFile(
      'name: a\ntype: flatline\ntimeframe: 1m\nthreshold: 1\nquery_key: host.name\nexpect: [w1, w2]\n',
      'r.yaml',
    ).rule!;
    expect(fl).toMatchObject({ expect: [{ 'host.name': 'w1' }, { 'host.name': 'w2' }] });
  });
});

describe('loading folders', () => {
  it('recurses, skips rule tests, and reports duplicate names across files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-rules-'));
    mkdirSync(join(dir, 'team'));
    writeFileSync(join(dir, 'a.yaml'), VALID);
    writeFileSync(join(dir, 'team', 'b.yml'), VALID);
    writeFileSync(join(dir, 'team', 'b.test.yaml'), 'not: a rule\n');
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    const { rules, diagnostics, files } = await loadRules([dir]);
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['a.yaml', join('team', 'b.yml')]);
    expect(rules.map((r) => r.name)).toEqual(['web-errors']);
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      `${join(dir, 'team', 'b.yml')}:1:7 duplicate rule name "web-errors" (first defined at ${join(dir, 'a.yaml')}:1)`,
    ]);
  });

  it('a Kubernetes ConfigMap folder (..data symlinks) loads each rule once; dot-entries are skipped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-rules-'));
    // What the kubelet mounts: the files in a timestamped folder, ..data pointing at it,
    // and one symlink per key through ..data.
    mkdirSync(join(dir, '..2026_12_02_16_00_00.123456789'));
    writeFileSync(join(dir, '..2026_12_02_16_00_00.123456789', 'errors.yaml'), VALID);
    symlinkSync('..2026_12_02_16_00_00.123456789', join(dir, '..data'));
    symlinkSync(join('..data', 'errors.yaml'), join(dir, 'errors.yaml'));
    mkdirSync(join(dir, '.git'));
    writeFileSync(join(dir, '.git', 'config.yaml'), 'not: a rule\n');
    writeFileSync(join(dir, '.hidden.yaml'), 'not: a rule\n');
    // The same folder named twice, once through a symlink: still one file.
    symlinkSync(dir, `${dir}-link`);
    const { rules, diagnostics, files } = await loadRules([dir, `${dir}-link`]);
    expect(diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(rules.map((r) => r.name)).toEqual(['web-errors']);
    expect(files).toEqual([join(dir, 'errors.yaml')]);
  });

  it('a rule file that cannot be read is a diagnostic, not a crash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-rules-'));
    writeFileSync(join(dir, 'a.yaml'), VALID);
    // A symlink whose target is gone (a ConfigMap mid-update, a deleted file).
    symlinkSync(join(dir, 'gone.yaml'), join(dir, 'b.yaml'));
    const { rules, diagnostics } = await loadRules([dir]);
    expect(rules.map((r) => r.name)).toEqual(['web-errors']);
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      `${join(dir, 'b.yaml')}:1:1 cannot read: ENOENT: no such file or directory, stat '${join(dir, 'b.yaml')}'`,
    ]);
  });

  it('a path that does not exist is a diagnostic, not a crash', async () => {
    const { diagnostics } = await loadRules(['/nonexistent/rules']);
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      '/nonexistent/rules:1:1 no such file or folder',
    ]);
  });

  it('the example rules are all valid', async () => {
    const { rules, diagnostics } = await loadRules(['examples/rules']);
    expect(diagnostics).toEqual([]);
    expect(new Set(rules.map((r) => r.type))).toEqual(
      new Set([
        'any',
        'frequency',
        'spike',
        'flatline',
        'new_term',
        'expiry',
        'change',
        'cardinality',
        'metric_aggregation',
      ]),
    );
  });
});

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['1w', 604_800_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1_500],
    [{ minutes: 5 }, 300_000],
    [{ hours: 1, seconds: 30 }, 3_630_000],
  ])('%j is %i ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([['5'], ['5 minutes'], [''], [5], [{}], [{ minutes: -1 }], [null]])(
    'rejects %j',
    (input) => {
      expect(() => parseDuration(input)).toThrow();
    },
  );
});
