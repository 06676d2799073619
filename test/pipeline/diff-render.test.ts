import { describe, expect, it } from 'vitest';
import {
  type DiffReport,
  htmlCode,
  MARKDOWN_MAX,
  mdCode,
  renderMarkdown,
  type RuleReport,
} from '../../pipeline/commands/diff-render.ts';

function report(rules: number, keysPerRule: number, name = (i: number) => `rule-${i}`): DiffReport {
  const out: RuleReport[] = [];
  for (let i = 0; i < rules; i++) {
    const changes = Array.from({ length: keysPerRule }, (_, k) => ({
      rule: name(i),
      key: { 'host.name': `${'h'.repeat(150)}-${k}` },
      keyId: String(k),
      change: 'added' as const,
      headAt: '2024-01-01T00:00:00.000Z',
    }));
    out.push({
      rule: name(i),
      presence: 'both',
      added: keysPerRule,
      removed: 0,
      moved: 0,
      unchanged: 0,
      changes,
      actions: [
        {
          day: '2024-01-01',
          action: 'fleet:kill-and-replace',
          base: {},
          head: { 'would run': 1, 'suppressed by budget': keysPerRule - 1 },
        },
      ],
      actionsChanged: true,
    });
  }
  return { base: 'HEAD~1', head: 'rules', events: 1, first: 0, last: 0, rules: out };
}

describe('rules diff markdown', () => {
  it(`stays under ${MARKDOWN_MAX} characters however much differs, and says what it left out`, () => {
    const md = renderMarkdown(report(2_000, 50));
    expect(md.length).toBeLessThanOrEqual(MARKDOWN_MAX);
    expect(md).toMatch(/_1900 more rules left out of the table and \d+ of the details/);
    // Sections are whole: every one opened is closed.
    expect(md.match(/<details/g)?.length).toBe(md.match(/<\/details>/g)?.length);
    // The first sections are open, later ones collapsed.
    expect(md).toContain('<details open>');
    expect(md).toMatch(/<details><summary>/);
  });

  it('a small diff is whole, with no note', () => {
    const md = renderMarkdown(report(2, 3));
    expect(md).not.toContain('left out');
    expect(md.match(/<\/details>/g)).toHaveLength(2);
  });

  it('hostile rule names stay text in the summary and in the table', () => {
    const evil = '<b>x</b> @team [l](https://e.example) | `c` _i_ \\';
    const md = renderMarkdown(report(1, 1, () => evil));
    expect(md).toContain(
      '<summary><code>&#60;b&#62;x&#60;/b&#62; &#64;team &#91;l&#93;&#40;https&#58;//e.example&#41; &#124; &#96;c&#96; &#95;i&#95; &#92;</code>',
    );
    expect(md.replace(/``.*``/g, '')).not.toContain('<b>');
    expect(md).toContain('| ``<b>x</b> @team [l](https://e.example) \\| `c` _i_ ⧵`` |');
  });

  it('code spans: fences longer than any backtick run, line breaks flattened, length capped', () => {
    expect(mdCode('a``b')).toBe('```a``b```');
    expect(mdCode('`x`')).toBe('`` `x` ``');
    expect(mdCode('a\nb\r\u2028c')).toBe('`a b  c`');
    expect(mdCode('')).toBe('`·`');
    expect(mdCode('x'.repeat(500)).length).toBeLessThan(210);
    expect(htmlCode('a&b')).toBe('<code>a&#38;b</code>');
  });
});
