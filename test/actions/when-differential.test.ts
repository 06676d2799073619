import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alertFacts, whenHolds } from '../../actions/index.ts';
import {
  type Alert,
  type Condition,
  evaluateReference,
  type FactCondition,
  OPERATORS,
} from '../../rules/index.ts';

/**
 * An action's `when` runs compiled (actions/policy.ts whenHolds); json-rules-engine
 * stays the reference. Random alerts × random conditions over the facts an alert
 * offers (alert.*, figures, labels, key, sample), from small pools so that conditions
 * hit and both verdicts occur in earnest.
 */
const FACTS = [
  'alert.rule',
  'alert.type',
  'alert.count',
  'alert.value',
  'alert.figures',
  'labels.team',
  'labels.severity',
  'key.host.name',
  'sample.log.level',
  'sample.tags',
  'nope',
];
const STRINGS = ['web', 'payments', 'error', 'ERROR', '', '12', '3.5', 'spike', 'frequency'];
const NUMBERS = [0, 1, 3.5, 12, 120, -1];
const scalar = fc.oneof(
  fc.constantFrom(...STRINGS),
  fc.constantFrom(...NUMBERS),
  fc.boolean(),
  fc.constant(null),
);
const label = fc.constantFrom('web', 'payments', 'error', '12', '');
const figure = fc.constantFrom(0, 1, 3.5, 12, 120, -1);

const alert: fc.Arbitrary<Alert> = fc
  .record({
    rule: fc.constantFrom('web', 'payments'),
    type: fc.constantFrom('spike' as const, 'frequency' as const),
    count: fc.option(figure, { nil: undefined }),
    value: fc.option(figure, { nil: undefined }),
    team: fc.option(label, { nil: undefined }),
    severity: fc.option(label, { nil: undefined }),
    host: fc.option(label, { nil: undefined }),
    level: fc.option(scalar, { nil: undefined }),
    tags: fc.option(fc.array(scalar, { maxLength: 3 }), { nil: undefined }),
  })
  .map((r) => {
    const defined = (o: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
    return {
      id: 'f00d',
      rule: r.rule,
      type: r.type,
      key: defined({ 'host.name': r.host }),
      at: '2026-01-01T00:00:00.000Z',
      figures: defined({ count: r.count, value: r.value }),
      sample: defined({ 'log.level': r.level, tags: r.tags }),
      labels: defined({ team: r.team, severity: r.severity }) as Record<string, string>,
      actions: [],
    };
  });

function valueFor(operator: (typeof OPERATORS)[number]): fc.Arbitrary<unknown> {
  switch (operator) {
    case 'in':
    case 'notIn':
      return fc.array(scalar, { maxLength: 5 });
    case 'exists':
      return fc.boolean();
    case 'matches':
      return fc.constantFrom('^web', 'err', '/^ERR/i', '\\d+', '^$');
    case 'startsWith':
    case 'endsWith':
      return fc.constantFrom('we', 'pay', 'or', '', '1');
    default:
      return fc.oneof(
        { weight: 5, arbitrary: scalar },
        { weight: 1, arbitrary: fc.record({ fact: fc.constantFrom(...FACTS) }) },
      );
  }
}

const factCondition: fc.Arbitrary<FactCondition> = fc
  .tuple(fc.constantFrom(...FACTS), fc.constantFrom(...OPERATORS))
  .chain(([fact, operator]) =>
    valueFor(operator).map((value): FactCondition => ({ fact, operator, value })),
  );

const condition: fc.Arbitrary<Condition> = fc.letrec<{ node: Condition }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: factCondition },
    { weight: 2, arbitrary: fc.array(tie('node'), { maxLength: 3 }).map((all) => ({ all })) },
    { weight: 2, arbitrary: fc.array(tie('node'), { maxLength: 3 }).map((any) => ({ any })) },
    { weight: 1, arbitrary: tie('node').map((not) => ({ not })) },
  ),
})).node;

describe("an action's when, compiled, agrees with json-rules-engine", () => {
  it('on every verdict for random alerts × random conditions', async () => {
    let trues = 0;
    let falses = 0;
    await fc.assert(
      fc.asyncProperty(condition, alert, async (when, a) => {
        let expected: boolean;
        try {
          expected = await evaluateReference(when, alertFacts(a));
        } catch {
          // Where the reference throws on a fact, the compiled condition answers false.
          expected = false;
        }
        if (expected) trues++;
        else falses++;
        expect(whenHolds(when, a), JSON.stringify({ when, a })).toBe(expected);
      }),
      { numRuns: 2000, seed: 20261202 },
    );
    expect(trues).toBeGreaterThan(400);
    expect(falses).toBeGreaterThan(400);
  });
});
