import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  durationText,
  importElastalert,
  importElastalertPaths,
  parseQueryString,
} from '../../../rules/import/elastalert.ts';
import {
  backtest,
  formatDiagnostic,
  loadRules,
  parseRuleFile,
  runTestFile,
} from '../../../rules/index.ts';
import { Readable } from 'node:stream';
import { serverEnv } from '../../support/drover.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'elastalert');
const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples', 'rules');
const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'drover.js');

function convert(name: string) {
  const file = join(FIXTURES, name);
  const result = importElastalert(readFileSync(file, 'utf8'), file);
  const messages = result.diagnostics.map((d) => formatDiagnostic(d).replace(`${FIXTURES}/`, ''));
  const rule = result.rules[0];
  return {
    result,
    messages,
    text: rule?.text,
    rule: rule ? (parse(rule.text) as Record<string, unknown>) : undefined,
  };
}

/** The converted text lints clean with the loader `drover rules lint` uses. */
function expectLintsClean(text: string | undefined) {
  expect(text).toBeDefined();
  expect(parseRuleFile(text!, 'converted.yaml').diagnostics).toEqual([]);
}

describe('drover rules import elastalert: the shared rule types and options', () => {
  it('any, with a query_string filter, durations, query_key and two alerters', () => {
    const { rule, text, messages } = convert('any-query-string.yaml');
    expectLintsClean(text);
    expect(text!.split('\n')[0]).toContain('any-query-string.yaml');
    expect(rule).toEqual({
      name: 'payment-failures',
      description: 'A payment failed for a reason other than a declined card.',
      type: 'any',
      filter: {
        all: [
          { fact: 'service.name', operator: 'equal', value: 'checkout' },
          {
            any: [
              { fact: 'log.level', operator: 'equal', value: 'error' },
              { fact: 'log.level', operator: 'equal', value: 'fatal' },
            ],
          },
          { not: { fact: 'error.type', operator: 'equal', value: 'card declined' } },
          { fact: 'http.response.status_code', operator: 'in', value: ['502', 502] },
        ],
      },
      query_key: 'host.name',
      realert: '15m',
      exponential_realert: '4h',
      actions: [
        { adapter: 'slack', operation: 'notify' },
        { adapter: 'email', operation: 'notify' },
      ],
    });
    // What does not carry over is named at its line and column.
    expect(messages).toEqual([
      'any-query-string.yaml:2:7 warning: name "Payment failures" written as "payment-failures" (Drover names are [a-z0-9._-])',
      'any-query-string.yaml:5:1 warning: index: does not apply to Drover (not converted)',
      'any-query-string.yaml:6:1 warning: es_host: does not apply to Drover (not converted)',
      'any-query-string.yaml:7:1 warning: es_port: does not apply to Drover (not converted)',
      "any-query-string.yaml:20:1 warning: alerter settings (slack_webhook_url, email) are not converted: they belong to the adapters' configuration",
    ]);
  });

  it('frequency, with term, terms, match, match_phrase, range, exists and bool', () => {
    const { rule, text } = convert('frequency-bool.yaml');
    expectLintsClean(text);
    expect(rule).toMatchObject({
      type: 'frequency',
      num_events: 50,
      timeframe: '1m',
      realert: '10m',
      query_key: ['service.name', 'host.name'],
      actions: [{ adapter: 'debug', operation: 'notify' }],
    });
    expect(rule!.filter).toEqual({
      all: [
        { fact: 'service.name', operator: 'equal', value: 'checkout' },
        { fact: 'log.level', operator: 'in', value: ['error', 'fatal'] },
        { fact: 'event.dataset', operator: 'equal', value: 'nginx.access' },
        { fact: 'url.path', operator: 'equal', value: '/api/pay' },
        { fact: 'http.response.status_code', operator: 'greaterThanInclusive', value: 500 },
        { fact: 'http.response.status_code', operator: 'lessThan', value: 600 },
        {
          any: [
            { fact: 'cloud.region', operator: 'equal', value: 'eu-west-1' },
            { fact: 'trace.id', operator: 'exists', value: true },
          ],
        },
        { not: { any: [{ fact: 'user_agent.name', operator: 'equal', value: 'healthcheck' }] } },
      ],
    });
  });

  it('spike, flatline, new_term, change, cardinality and metric_aggregation keep their options', () => {
    const expected: Record<string, Record<string, unknown>> = {
      'spike.yaml': {
        type: 'spike',
        timeframe: '5m',
        spike_height: 3,
        spike_type: 'up',
        threshold_cur: 100,
        threshold_ref: 10,
        alert_on_new_data: false,
        query_key: 'service.name',
      },
      'flatline.yaml': {
        type: 'flatline',
        threshold: 1,
        timeframe: '2m',
        forget_keys: true,
        realert: '5m',
        query_key: 'host.name',
        filter: { all: [{ fact: 'message', operator: 'equal', value: 'heartbeat' }] },
      },
      'new-term.yaml': {
        type: 'new_term',
        fields: 'error.stack_fingerprint',
        terms_window_size: '30d',
        alert_on_missing_field: false,
        filter: { all: [{ fact: 'error.stack_fingerprint', operator: 'exists', value: true }] },
      },
      'change.yaml': {
        type: 'change',
        compare_key: 'service.version',
        ignore_null: true,
        query_key: 'service.name',
        timeframe: '1h30m',
      },
      'cardinality.yaml': {
        type: 'cardinality',
        cardinality_field: 'user.name',
        max_cardinality: 20,
        timeframe: '10m',
        query_key: 'source.ip',
        // query_string's default operator is OR.
        filter: {
          all: [
            {
              any: [
                { fact: 'event.action', operator: 'equal', value: 'login' },
                { fact: 'event.outcome', operator: 'equal', value: 'failure' },
              ],
            },
          ],
        },
      },
      'metric-aggregation.yaml': {
        type: 'metric_aggregation',
        metric_agg_key: 'metric.value',
        metric_agg_type: 'p95',
        max_threshold: 800,
        timeframe: '1m',
      },
      'metric-average.yaml': {
        type: 'metric_aggregation',
        metric_agg_type: 'avg',
        min_threshold: 1,
        timeframe: '5m', // bucket_interval before buffer_time
      },
      'blacklist.yaml': {
        type: 'any',
        filter: { all: [{ fact: 'user.name', operator: 'in', value: ['mallory', 'trudy'] }] },
      },
    };
    for (const [file, want] of Object.entries(expected)) {
      const { rule, text, result } = convert(file);
      expectLintsClean(text);
      expect(rule, file).toMatchObject(want);
      expect(result.rules[0]!.disabled).toBe(false);
      expect(result.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    }
  });

  it('a whole folder converts into a rule set that loads as one', async () => {
    const out = mkdtempSync(join(tmpdir(), 'drover-import-'));
    const { rules, diagnostics } = await importElastalertPaths([FIXTURES]);
    expect(rules.map((r) => r.name).sort()).toContain('checkout-error-burst');
    // examples/checkout-error-burst.yaml and frequency-bool.yaml share a name: the second is renamed.
    expect(rules.map((r) => r.name)).toContain('checkout-error-burst-2');
    expect(diagnostics.map(formatDiagnostic).join('\n')).toContain(
      'name "checkout-error-burst" is taken by an earlier rule: written as "checkout-error-burst-2"',
    );
    for (const r of rules) writeFileSync(join(out, `${r.name}.yaml`), r.text);
    const loaded = await loadRules([out]);
    expect(loaded.diagnostics).toEqual([]);
    expect(loaded.rules).toHaveLength(rules.length);
  });
});

describe('drover rules import elastalert: what cannot be converted', () => {
  it('an unsupported rule type is an error at its line, and no rule is written', () => {
    const { result, messages } = convert('percentage-match.yaml');
    expect(result.rules).toEqual([]);
    expect(messages).toEqual([
      'percentage-match.yaml:2:7 rule type "percentage_match" has no Drover equivalent (Drover has any, frequency, spike, flatline, new_term, change, cardinality, metric_aggregation, and blacklist/whitelist as filters)',
    ]);
  });

  it('a filter converted in part writes the rule disabled, and names each clause left out', () => {
    const { result, rule, text, messages } = convert('partial.yaml');
    expectLintsClean(text);
    expect(result.rules[0]!.disabled).toBe(true);
    expect(rule).toMatchObject({
      enabled: false,
      filter: { all: [{ fact: 'service.name', operator: 'equal', value: 'search' }] },
    });
    expect(messages).toEqual([
      'partial.yaml:4:1 warning: index: does not apply to Drover (not converted)',
      'partial.yaml:8:1 warning: rule written disabled: part of its filter was not converted',
      'partial.yaml:11:5 warning: "wildcard" queries are not converted (term, terms, match, match_phrase, prefix, range, exists, bool and simple query_string are)',
      'partial.yaml:15:16 warning: query_string not converted: "duration:[1000": wildcards, ranges, regular expressions, fuzziness and boosts are not converted',
      'partial.yaml:16:1 warning: aggregation: does not apply to Drover (not converted)',
    ]);
  });

  it('scripts, date ranges, should with minimum_should_match 2 and unknown options are reported', () => {
    const text = `name: odd
type: any
filter:
  - script: { script: "doc['a'].value > 1" }
  - range: { "@timestamp": { gte: now-1h } }
  - bool:
      should: [ { term: { a: 1 } }, { term: { b: 2 } } ]
      minimum_should_match: 2
use_local_time: true
alert: [my_modules.alerts.Custom]
`;
    const r = importElastalert(text, 'odd.yaml');
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      'odd.yaml:3:1 warning: rule written disabled: part of its filter was not converted',
      'odd.yaml:4:5 warning: "script" queries are not converted (term, terms, match, match_phrase, prefix, range, exists, bool and simple query_string are)',
      'odd.yaml:5:12 warning: range: only numeric gt/gte/lt/lte bounds are converted (not gte: "now-1h")',
      'odd.yaml:8:29 warning: minimum_should_match 2 is not converted (only 1)',
      'odd.yaml:9:1 warning: use_local_time: no Drover equivalent (not converted)',
      'odd.yaml:10:9 warning: alerter "my_modules.alerts.Custom" is not converted (only built-in alerters by name)',
    ]);
    expectLintsClean(r.rules[0]!.text);
    expect(parse(r.rules[0]!.text)).toMatchObject({ enabled: false });
  });

  it('whitelist: values outside the list, events without the field ignored with ignore_null', () => {
    const r = importElastalert(
      'name: Allowed Users!\ntype: whitelist\nindex: x\ncompare_key: user.name\nignore_null: true\nwhitelist: [alice, "!file /etc/users"]\nalert: debug\n',
      'w.yaml',
    );
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      'w.yaml:1:7 warning: name "Allowed Users!" written as "allowed-users" (Drover names are [a-z0-9._-])',
      'w.yaml:2:1 warning: rule written disabled: part of its filter was not converted',
      'w.yaml:3:1 warning: index: does not apply to Drover (not converted)',
      'w.yaml:6:20 warning: "!file /etc/users": values read from a file are not converted',
    ]);
    expectLintsClean(r.rules[0]!.text);
    expect(parse(r.rules[0]!.text)).toMatchObject({
      name: 'allowed-users',
      type: 'any',
      enabled: false,
      filter: {
        all: [
          { fact: 'user.name', operator: 'exists', value: true },
          { fact: 'user.name', operator: 'notIn', value: ['alice'] },
        ],
      },
    });
  });

  it('new_term: one field or one composite carries over; several separate fields do not', () => {
    const base = 'name: t\ntype: new_term\nindex: x\nalert: debug\n';
    const fields = (f: string) => importElastalert(`${base}fields: ${f}\n`, 't.yaml');
    expect(parse(fields('[[a, b]]').rules[0]!.text)).toMatchObject({ fields: ['a', 'b'] });
    expect(parse(fields('a').rules[0]!.text)).toMatchObject({ fields: 'a' });
    const several = fields('[a, b]');
    expect(several.rules).toEqual([]);
    expect(several.diagnostics.map(formatDiagnostic)).toContain(
      't.yaml:5:9 new_term on several fields (a, b) watches each on its own: write one Drover rule per field (a Drover list of fields is one composite term)',
    );
    // A file name with a newline cannot break out of the header comment.
    const odd = importElastalert(`${base}fields: a\n`, 'x\nname: evil.yaml');
    expect(odd.rules[0]!.text.split('\n')[0]).toBe(
      '# Converted from ElastAlert rule x?name: evil.yaml by drover rules import elastalert.',
    );
  });

  it('odd YAML is an error at file:line:col, never a crash', () => {
    const cases: Array<[string, string]> = [
      ['name: [unclosed\n', 'odd.yaml:2:1'],
      ['', 'odd.yaml:1:1 empty rule file'],
      ['# only a comment\n', 'odd.yaml:1:1 empty rule file'],
      ['- a\n- b\n', 'odd.yaml:1:1 an ElastAlert rule file is a mapping'],
      ['name: a\n---\nname: b\n', 'odd.yaml:2:1 one rule per file'],
      ['name: a\ntype: 5\n', 'odd.yaml:2:1 no rule type'],
      ['type: any\n', 'odd.yaml:1:1 an ElastAlert rule needs a name'],
      ['name: a\nname: b\ntype: any\n', 'odd.yaml:2:1'],
      [
        'name: a\ntype: spike\nfield_value: bytes\n',
        "odd.yaml:3:1 a spike on a field's value (field_value) has no Drover equivalent",
      ],
    ];
    for (const [text, want] of cases) {
      const r = importElastalert(text, 'odd.yaml');
      expect(r.rules, text).toEqual([]);
      expect(r.diagnostics.map(formatDiagnostic).join('\n'), text).toContain(want);
    }
    // An alias bomb the YAML library refuses to build.
    const bomb = importElastalert(
      'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
      'odd.yaml',
    );
    expect(bomb.diagnostics.map(formatDiagnostic).join('\n')).toContain(
      'odd.yaml:2:8 Excessive alias count',
    );
    // Wrong shapes everywhere: converted as far as they go, reported, never thrown.
    const r = importElastalert(
      `name: a
type: frequency
num_events: 3
timeframe: { fortnights: 1 }
filter: just text
query_key: { a: 1 }
alert: 42
realert: soon
`,
      'odd.yaml',
    );
    expect(r.diagnostics.map(formatDiagnostic)).toEqual(
      expect.arrayContaining([
        'odd.yaml:4:12 warning: timeframe: not a duration Drover reads',
        'odd.yaml:5:9 warning: filter is not a list of query clauses',
        'odd.yaml:6:12 warning: query_key is neither a field nor a list of fields',
        'odd.yaml:8:10 warning: realert: not a duration Drover reads',
      ]),
    );
    // Without its timeframe the rule cannot lint: not written, and the lint error is named.
    expect(r.rules).toEqual([]);
    expect(r.diagnostics.map(formatDiagnostic).join('\n')).toContain(
      'the converted rule does not lint',
    );
  });
});

describe('query_string in its simple forms', () => {
  it('field:value, phrases, AND/OR/NOT, -, parentheses, field:*', () => {
    expect(parseQueryString('a:1')).toEqual({ fact: 'a', operator: 'in', value: ['1', 1] });
    expect(parseQueryString('a:x b:y')).toEqual({
      any: [
        { fact: 'a', operator: 'equal', value: 'x' },
        { fact: 'b', operator: 'equal', value: 'y' },
      ],
    });
    expect(parseQueryString('a:x OR b:y AND NOT c:"z \\"q\\""')).toEqual({
      any: [
        { fact: 'a', operator: 'equal', value: 'x' },
        {
          all: [
            { fact: 'b', operator: 'equal', value: 'y' },
            { not: { fact: 'c', operator: 'equal', value: 'z "q"' } },
          ],
        },
      ],
    });
    expect(parseQueryString('(a:x || b:y) && -c:*')).toEqual({
      all: [
        {
          any: [
            { fact: 'a', operator: 'equal', value: 'x' },
            { fact: 'b', operator: 'equal', value: 'y' },
          ],
        },
        { not: { fact: 'c', operator: 'exists', value: true } },
      ],
    });
    expect(parseQueryString('ok:true')).toEqual({
      fact: 'ok',
      operator: 'in',
      value: ['true', true],
    });
  });

  it('refuses the rest with what it met', () => {
    for (const [q, msg] of [
      ['error', '"error" is not field:value'],
      ['a:x*', 'wildcards'],
      ['a:[1 TO 2]', 'wildcards, ranges'],
      ['a:/re/', 'regular expressions'],
      ['(a:x', 'unbalanced parentheses'],
      ['a:x AND', 'the query ends early'],
      ['a:"open', 'cannot read'],
      ['', 'empty query'],
      ['a:x)', 'unexpected ")"'],
    ] as const)
      expect(() => parseQueryString(q), q).toThrow(msg);
    expect(() => parseQueryString(`a:x ${'OR b:y '.repeat(2000)}`)).toThrow('longer than');
    expect(() => parseQueryString(`${'('.repeat(60)}a:x${')'.repeat(60)}`)).toThrow(
      'nested deeper than 50',
    );
    expect(() => parseQueryString(`${'NOT '.repeat(60)}a:x`)).toThrow('nested deeper than 50');
    expect(parseQueryString(`${'('.repeat(50)}a:x${')'.repeat(50)}`)).toEqual({
      fact: 'a',
      operator: 'equal',
      value: 'x',
    });
  });
});

describe('durations', () => {
  it("ElastAlert's timedelta mappings become Drover durations", () => {
    expect(durationText({ minutes: 5 })).toBe('5m');
    expect(durationText({ hours: 1, minutes: 30 })).toBe('1h30m');
    expect(durationText({ weeks: 1 })).toBe('7d');
    expect(durationText({ seconds: 1.5 })).toBe('1s500ms');
    expect(durationText({ minutes: 0 })).toBe('0s');
    expect(durationText({ days: 0.5 })).toBe('12h');
    expect(durationText('10m')).toBe('10m');
    expect(durationText({ fortnights: 1 })).toBeUndefined();
    expect(durationText({ minutes: -1 })).toBeUndefined();
    expect(durationText({})).toBeUndefined();
  });
});

describe('converted rules find the same incidents as the hand-written ones', () => {
  const twins = readdirSync(join(FIXTURES, 'examples')).filter((f) => f.endsWith('.yaml'));

  it("pass the hand-written rules' own tests (examples/rules/*.test.yaml)", async () => {
    expect(twins.length).toBe(6);
    const dir = mkdtempSync(join(tmpdir(), 'drover-import-twins-'));
    const { rules, diagnostics } = await importElastalertPaths([join(FIXTURES, 'examples')]);
    expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(rules).toHaveLength(6);
    for (const r of rules) {
      writeFileSync(join(dir, `${r.name}.yaml`), r.text);
      copyFileSync(join(EXAMPLES, `${r.name}.test.yaml`), join(dir, `${r.name}.test.yaml`));
      // The hand-written rule passes its test (the premise), and so does the converted one.
      const original = await runTestFile(join(EXAMPLES, `${r.name}.test.yaml`));
      expect(original.results.every((t) => t.passed)).toBe(true);
      const report = await runTestFile(join(dir, `${r.name}.test.yaml`));
      expect(report.diagnostics, r.name).toEqual([]);
      expect(report.results.length, r.name).toBeGreaterThan(0);
      for (const t of report.results) expect(t.failures, `${r.name}: ${t.name}`).toEqual([]);
    }
  });

  it('backtested on one stream, give the same alerts, instant by instant', async () => {
    const t0 = Date.parse('2024-01-01T00:00:00Z');
    const lines: string[] = [];
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    for (let i = 0; i < 120; i++)
      lines.push(
        JSON.stringify({
          '@timestamp': at(i),
          'service.name': 'checkout',
          'log.level': i % 3 === 0 ? 'fatal' : 'error',
          'host.name': `h${i % 2}`,
        }),
      );
    for (let i = 0; i < 30; i++)
      lines.push(
        JSON.stringify({
          '@timestamp': at(200 + i),
          'service.name': 'web',
          message: 'request served',
        }),
      );
    for (let i = 0; i < 200; i++)
      lines.push(
        JSON.stringify({
          '@timestamp': at(240 + i / 20),
          'service.name': 'web',
          message: 'request served',
        }),
      );
    for (let i = 0; i < 25; i++)
      lines.push(
        JSON.stringify({
          '@timestamp': at(300 + i),
          'event.action': 'login',
          'event.outcome': 'failure',
          'source.ip': '203.0.113.9',
          'user.name': `user${i}`,
        }),
      );
    for (const [s, v] of [
      [400, '1.0'],
      [410, '1.0'],
      [420, '1.1'],
    ] as const)
      lines.push(
        JSON.stringify({ '@timestamp': at(s), 'host.name': 'api-1', 'service.version': v }),
      );
    for (const [s, fp] of [
      [500, 'a'],
      [510, 'b'],
      [520, 'a'],
    ] as const)
      lines.push(
        JSON.stringify({ '@timestamp': at(s), 'service.name': 'api', 'error.fingerprint': fp }),
      );
    const { rules } = await importElastalertPaths([join(FIXTURES, 'examples')]);
    const dir = mkdtempSync(join(tmpdir(), 'drover-import-stream-'));
    for (const r of rules) writeFileSync(join(dir, `${r.name}.yaml`), r.text);
    const converted = await loadRules([dir]);
    const handWritten = await loadRules(rules.map((r) => join(EXAMPLES, `${r.name}.yaml`)));
    expect(converted.diagnostics).toEqual([]);
    expect(handWritten.diagnostics).toEqual([]);
    const alertsOf = async (specs: typeof converted.rules) =>
      (await backtest(Readable.from(lines.map((l) => `${l}\n`)), { rules: specs })).alerts
        .map((a) => `${a.at} ${a.rule} ${JSON.stringify(a.key)}`)
        .sort();
    const want = await alertsOf(handWritten.rules);
    // Every twin fires at least once on this stream, so the comparison covers them all.
    expect(new Set(want.map((a) => a.split(' ')[1]))).toEqual(new Set(rules.map((r) => r.name)));
    expect(await alertsOf(converted.rules)).toEqual(want);
  });
});

describe('the command', () => {
  function drover(args: string[]) {
    const r = spawnSync(process.execPath, [BIN, ...args], {
      encoding: 'utf8',
      env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
      timeout: 60_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('prints YAML documents, reports on stderr, and --out writes files that lint', () => {
    const printed = drover(['rules', 'import', 'elastalert', join(FIXTURES, 'examples')]);
    expect(printed.code).toBe(0);
    expect(printed.stdout.split(/^---$/m)).toHaveLength(6);
    expect(printed.stdout).toContain('# Converted from ElastAlert rule ');
    expect(printed.stderr).toContain('6 rules converted, 0 not converted');

    const out = join(mkdtempSync(join(tmpdir(), 'drover-import-out-')), 'rules');
    const written = drover(['rules', 'import', 'elastalert', FIXTURES, '--out', out]);
    expect(written.code).toBe(1); // percentage_match is not converted; partial.yaml is disabled
    expect(written.stderr).toContain(
      `${join(FIXTURES, 'percentage-match.yaml')}:2:7 rule type "percentage_match" has no Drover equivalent`,
    );
    expect(written.stderr).toContain('17 rules converted (1 written disabled), 1 not converted');
    expect(readdirSync(out)).toHaveLength(17);
    const lint = drover(['rules', 'lint', out]);
    expect(lint.stdout).toBe('');
    expect(lint.code).toBe(0);
    // An existing file is not overwritten.
    const again = drover(['rules', 'import', 'elastalert', FIXTURES, '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists: not overwritten');
    expect(drover(['rules', 'import', 'sigma', FIXTURES]).code).toBe(2);
  });
});
