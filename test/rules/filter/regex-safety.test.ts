import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileFilter, formatDiagnostic, loadRules, parseRuleFile } from '../../../rules/index.ts';

/**
 * Patterns run on attacker-written text. The verdicts are lint results, not timings:
 * a catastrophic pattern is refused before it ever runs.
 */
const CATASTROPHIC = [
  '^(a+)+$',
  '(a*)*b',
  '(a|a)*$',
  '(a|ab)+c',
  '(.*a){12}',
  '(x+x+)+y',
  '^(\\w+\\s?)*$',
  '(?:[a-z]+)+@',
  '(a?)*b',
  '((ab)*)+c',
  '([0-9a-f]+:)+x',
  '/^(A+)+$/i',
  '.*a.*b',
  'a*a*b',
  '.*.*=.*',
  '\\w+\\d+x',
  '^.*error.*timeout',
  '(a)\\1',
  '(?<q>["\'])x\\k<q>',
  '(?=.*a)b',
  'x(?<=a+)',
  '(?=a)*b',
  '(?:(?!x).+)+y',
  '/(\\p{L}+)+$/u',
  '([ab]|[bc])*d',
  '(\\d{1,100}){1,100}',
  '(?:a{1,10}){1,4}a*$',
  'a{1,10}a*$',
  '(?:a{1,3}){3}a*$',
  '\\d*\\d{1,5}x',
  '(?:[ab](?:\\w|.))*[ab]\\s',
  '(?:a?a)*b',
];

const SAFE = [
  '^web',
  'err',
  '/^ERR/i',
  '\\d+',
  '^$',
  '/a.c/s',
  '/items/9\\d\\d$',
  'timeout after \\d+ ms',
  '^(GET|POST|PUT) /api/',
  '(\\d{1,3}\\.){3}\\d{1,3}',
  '^[a-z0-9._-]+@[a-z0-9.-]+$',
  'error.*timeout',
  '\\s*x\\s*$',
  '(?:foo|bar)+',
  '^\\w+=\\S+( \\w+=\\S+)?$',
  '[^,]*,[^,]*,',
  'level=(error|fatal)',
  '(?<!\\\\)"',
  'foo(?=bar)',
  '(?:(?!x).)*y',
  '/^\\p{Lu}/u',
  'a{2,5}b',
  '\\w+@\\w+\\.com',
  '(?<year>\\d{4})-(?<month>\\d{2})',
  '[.*+?]{0,3}',
  '\\(a+\\)+',
  '(?:a{1,3}){1,3}$',
  '\\d{1,3}\\d*x',
  '([0-9a-f]{2}:){5}[0-9a-f]{2}',
  '(?:(?=a)a)+',
];

function diagnose(pattern: string): string[] {
  const text = `name: r\ntype: any\nfilter:\n  fact: message\n  operator: matches\n  value: ${JSON.stringify(pattern)}\n`;
  return parseRuleFile(text, 'r.yaml').diagnostics.map(formatDiagnostic);
}

describe('matches patterns are safe on attacker text', () => {
  it.each(CATASTROPHIC)('refuses %s at lint, at the value', (pattern) => {
    const messages = diagnose(pattern);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/^r\.yaml:6:10 unsafe regular expression: /);
  });

  it.each(SAFE)('accepts %s', (pattern) => {
    expect(diagnose(pattern)).toEqual([]);
  });

  it('says what is wrong and how to fix it', () => {
    expect(diagnose('^(a+)+$')[0]).toContain(
      '"(a+)+": a repetition inside a repetition can split the same text in exponentially many ways',
    );
    expect(diagnose('(a)\\1')[0]).toContain('backreferences are not allowed');
    expect(diagnose('.*a.*b')[0]).toContain(
      '".*" and ".*" can match the same characters one after the other',
    );
    expect(diagnose('(?=.*a)b')[0]).toContain('a lookaround that contains a repetition');
  });

  it('a rule with a refused pattern does not load, and compileFilter refuses it too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-regex-'));
    writeFileSync(
      join(dir, 'bad.yaml'),
      'name: bad\ntype: any\nfilter: { fact: message, operator: matches, value: "^(a+)+$" }\n',
    );
    writeFileSync(
      join(dir, 'good.yaml'),
      'name: good\ntype: any\nfilter: { fact: message, operator: matches, value: "^a+$" }\n',
    );
    const { rules, diagnostics } = await loadRules([dir]);
    expect(rules.map((r) => r.name)).toEqual(['good']);
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/bad\.yaml:3:52 unsafe regular expression: "\(a\+\)\+"/),
    ]);
    expect(() => compileFilter({ fact: 'message', operator: 'matches', value: '^(a+)+$' })).toThrow(
      /unsafe regular expression/,
    );
  });
});
