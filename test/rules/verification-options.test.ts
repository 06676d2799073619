import { describe, expect, it } from 'vitest';
import { parseRuleFile } from '../../rules/index.ts';

/** verify_within, on_ineffective and rollback in a rule file: file:line:col errors. */
const lint = (action: string) =>
  parseRuleFile(`name: a\ntype: any\nactions:\n  - ${action}\n`, 'rule.yaml').diagnostics.map(
    (d) => `${d.line}:${d.col} ${d.message}`,
  );
/** Line 4, the column where `text` starts within the action's line. */
const at = (action: string, text: string) => `4:${`  - ${action}`.indexOf(text) + 1}`;
const check = (action: string, text: string, message: string) =>
  expect(lint(action)).toEqual([`${at(action, text)} ${message}`]);

describe('verification options in a rule file', () => {
  it('accepts them on kill-and-replace and scale', () => {
    expect(
      lint(
        '{ adapter: fleet, operation: scale, params: { by: 2 }, verify_within: 2m, rollback: true, on_ineffective: { adapter: pager, operation: notify } }',
      ),
    ).toEqual([]);
    expect(lint('{ adapter: fleet, operation: kill-and-replace, verify_within: 30s }')).toEqual([]);
  });

  it('refuses them where they do not apply, and wrong values, at their position', () => {
    check(
      '{ adapter: pager, operation: notify, verify_within: 1m }',
      '1m',
      'verify_within applies to kill-and-replace and scale actions only',
    );
    check(
      '{ adapter: fleet, operation: kill-and-replace, rollback: true }',
      'true',
      'rollback applies to scale actions only',
    );
    check(
      '{ adapter: fleet, operation: kill-and-replace, verify_within: 0s }',
      '0s',
      'verify_within must be above 0',
    );
    expect(lint('{ adapter: fleet, operation: kill-and-replace, verify_within: soon }')).toEqual([
      expect.stringMatching(
        new RegExp(
          `^${at('{ adapter: fleet, operation: kill-and-replace, verify_within: soon }', 'soon')} `,
        ),
      ),
    ]);
    expect(
      lint('{ adapter: fleet, operation: scale, params: { by: 1 }, rollback: "yes" }'),
    ).toEqual([expect.stringMatching(/^4:\d+ (rollback is true or false|.*boolean)/)]);
  });

  it('checks the on_ineffective action as an action of its own', () => {
    expect(
      lint('{ adapter: fleet, operation: kill-and-replace, on_ineffective: { adapter: pager } }'),
    ).toEqual([expect.stringMatching(/^4:\d+ .*operation/)]);
    expect(
      lint(
        '{ adapter: fleet, operation: kill-and-replace, on_ineffective: { adapter: pager, operation: notify, rollback: true } }',
      ),
    ).toEqual([expect.stringMatching(/^4:\d+ /)]);
    expect(lint('{ adapter: fleet, operation: kill-and-replace, on_ineffective: pager }')).toEqual([
      expect.stringMatching(/^4:\d+ /),
    ]);
  });
});
