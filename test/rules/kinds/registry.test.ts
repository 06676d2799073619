import { describe, expect, it } from 'vitest';
import { actionProblems, OPERATIONS, parseRuleFile, RULE_TYPES } from '../../../rules/index.ts';
import { KINDS } from '../../../rules/kinds/index.ts';
import { COMMON, DURATIONS } from '../../../rules/load/checks.ts';
import schema from '../../../rules/schema.json' with { type: 'json' };

/**
 * The kinds' descriptors are where a rule type is defined; rules/schema.json is the
 * published schema editors use. These tests fail when the two drift apart.
 */
const props = schema.properties as Record<string, { $ref?: string }>;
const conditional = schema.allOf as Array<{
  if: { properties: { type: { const: string } } };
  then: { required?: string[]; anyOf?: Array<{ required: string[] }> };
}>;

describe('rule kinds: the registry and rules/schema.json agree', () => {
  it('on the types', () => {
    expect(Object.keys(KINDS)).toEqual([...RULE_TYPES]);
    expect(schema.properties.type.enum).toEqual([...RULE_TYPES]);
    for (const [type, kind] of Object.entries(KINDS)) expect(kind.type).toBe(type);
  });

  it('on every option, and which are durations', () => {
    const registered = new Set([
      ...COMMON,
      ...Object.values(KINDS).flatMap((k) => Object.keys(k.options)),
    ]);
    expect([...registered].sort()).toEqual(Object.keys(props).sort());
    for (const kind of Object.values(KINDS))
      for (const [name, optionKind] of Object.entries(kind.options))
        expect([name, props[name]?.$ref === '#/$defs/duration']).toEqual([
          name,
          optionKind === 'duration',
        ]);
    const schemaDurations = Object.keys(props).filter((p) => props[p]?.$ref === '#/$defs/duration');
    expect([...DURATIONS].sort()).toEqual(schemaDurations.sort());
  });

  it('on the options each type needs', () => {
    for (const kind of Object.values(KINDS)) {
      const mine = conditional.filter((c) => c.if.properties.type.const === kind.type);
      expect(
        mine.flatMap((c) => c.then.required ?? []),
        kind.type,
      ).toEqual(kind.required);
      expect(
        mine.flatMap((c) => (c.then.anyOf ?? []).flatMap((a) => a.required)),
        kind.type,
      ).toEqual(kind.oneOf?.options ?? []);
    }
  });

  it('on the operations an action may name', () => {
    const action = (
      schema.$defs.action.oneOf[1] as { properties: { operation: { enum: string[] } } }
    ).properties.operation.enum;
    expect(action).toEqual([...OPERATIONS]);
  });
});

describe('one action validator for lint, configuration and policy', () => {
  const lint = (action: string) =>
    parseRuleFile(`name: a\ntype: any\nactions:\n  - ${action}\n`, 'rule.yaml').diagnostics.map(
      (d) => `${d.line}:${d.col} ${d.message}`,
    );

  it('lint refuses a scale with both to and by, as the policy does', () => {
    expect(lint('{ adapter: fleet, operation: scale, params: { to: 3, by: 1 } }')).toEqual([
      '4:49 scale takes params.to or params.by, not both',
    ]);
    expect(lint('{ adapter: fleet, operation: scale, params: { to: -1 } }')).toEqual([
      '4:55 scale params.to must be ≥ 0',
    ]);
    expect(lint('{ adapter: fleet, operation: scale, params: { by: 1, min: 5, max: 2 } }')).toEqual(
      ['4:63 scale params.min (5) is above params.max (2)'],
    );
  });

  it('every problem of an action, with its path', () => {
    expect(
      actionProblems({
        adapter: '',
        operation: 'scale',
        params: { to: 1.5 },
        when: { fact: 'x' },
      }).map((p) => [p.path.join('.'), p.code]),
    ).toEqual([
      ['', 'adapter'],
      ['params.to', 'scale-number'],
      ['when', 'when'],
    ]);
  });
});
