import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Condition,
  compileFilter,
  type FactCondition,
  OPERATORS,
  parseRuleFile,
} from '../../../rules/index.ts';

/**
 * Compiled filters run on attacker-written events in the rules consumer: a throw there
 * is a poison pill (the batch is retried forever). Every operator, with literal values
 * and with `{ fact }` references, must answer a boolean on any value an event can hold.
 */
const FIELDS = ['a', 'b', 'c'];

/** Objects whose own toString/valueOf are not functions cannot be coerced to a primitive. */
const hostileObject = fc.oneof(
  fc.constant({ toString: 1 }),
  fc.constant({ toString: null, valueOf: 'x' }),
  fc.constant({ valueOf: 1 }),
  fc.constant([{ toString: 1 }]),
  fc.constant([[{ toString: {} }]]),
);
const hugeString = fc.constantFrom(
  'a'.repeat(1 << 20),
  `${'1'.repeat(100_000)}x`,
  '\ud800'.repeat(9000),
);
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: hostileObject },
  { weight: 1, arbitrary: hugeString },
  {
    weight: 1,
    arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 1e308, null, '', '12', '3.5e2', []),
  },
  { weight: 1, arbitrary: fc.object({ maxDepth: 2, withNullPrototype: false }) },
);
const event = fc.dictionary(fc.constantFrom(...FIELDS), value, { noNullPrototype: true });

function literalFor(operator: (typeof OPERATORS)[number]): fc.Arbitrary<unknown> {
  switch (operator) {
    case 'matches':
      return fc.constantFrom('^a', '/x/i', '\\d+$', '^$');
    case 'exists':
      return fc.boolean();
    case 'in':
    case 'notIn':
      return fc.array(value, { maxLength: 6 });
    default:
      return value;
  }
}

const factCondition: fc.Arbitrary<FactCondition> = fc
  .tuple(
    fc.constantFrom(...FIELDS),
    fc.constantFrom(...OPERATORS),
    fc.option(fc.constantFrom('$[0]', '$.toString', '$.a[1]'), { freq: 4 }),
    fc.boolean(),
  )
  .chain(([fact, operator, path, useRef]) => {
    // `matches` takes a literal pattern only (a fact reference is refused at compile).
    const ref = useRef && operator !== 'matches';
    const v: fc.Arbitrary<unknown> = ref
      ? fc.record({ fact: fc.constantFrom(...FIELDS) })
      : literalFor(operator);
    return v.map((val) => {
      const c: FactCondition = { fact, operator, value: val };
      if (path !== null) c.path = path;
      return c;
    });
  });

const condition: fc.Arbitrary<Condition> = fc.letrec<{ node: Condition }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    { weight: 4, arbitrary: factCondition },
    { weight: 1, arbitrary: fc.array(tie('node'), { maxLength: 3 }).map((all) => ({ all })) },
    { weight: 1, arbitrary: fc.array(tie('node'), { maxLength: 3 }).map((any) => ({ any })) },
    { weight: 1, arbitrary: tie('node').map((not) => ({ not })) },
  ),
})).node;

describe('compiled filters on hostile events', () => {
  it('every operator answers a boolean and never throws', () => {
    fc.assert(
      fc.property(condition, fc.array(event, { minLength: 1, maxLength: 4 }), (c, events) => {
        const filter = compileFilter(c);
        for (const e of events) expect(typeof filter(e)).toBe('boolean');
      }),
      { numRuns: 1500, seed: 20261202 },
    );
  });

  it('each operator, with a fact reference to an uncoercible value', () => {
    const hostile = { a: 5, b: { toString: 1 }, c: [[{ toString: 1 }]] };
    for (const operator of OPERATORS) {
      if (operator === 'matches') continue;
      for (const other of ['b', 'c']) {
        for (const a of [5, 'x', { toString: 1 }, null, [1]]) {
          const filter = compileFilter({ fact: 'a', operator, value: { fact: other } });
          expect(typeof filter({ ...hostile, a }), `${operator} ${other}`).toBe('boolean');
        }
      }
    }
  });

  it('`in` and `notIn` against a fact that is not a list', () => {
    const isIn = compileFilter({ fact: 'a', operator: 'in', value: { fact: 'b' } });
    const notIn = compileFilter({ fact: 'a', operator: 'notIn', value: { fact: 'b' } });
    for (const b of [null, 5, true, { x: 1 }, undefined]) {
      expect(isIn({ a: 'x', b })).toBe(false);
      expect(notIn({ a: 'x', b })).toBe(true);
    }
    // Lists and strings keep json-rules-engine's indexOf meaning.
    expect(isIn({ a: 'x', b: ['x'] })).toBe(true);
    expect(isIn({ a: 'ab', b: 'cabd' })).toBe(true);
  });

  it('numeric operators on a value that cannot become a number or a string', () => {
    const lt = compileFilter({ fact: 'a', operator: 'lessThan', value: 10 });
    expect(lt({ a: { toString: 1 } })).toBe(false);
    expect(lt({ a: [[{ toString: 1 }]] })).toBe(false);
    expect(lt({ a: ['3'] })).toBe(true);
  });

  it('`matches` looks at the first 8 KiB of a value only', () => {
    const tail = compileFilter({ fact: 'a', operator: 'matches', value: 'needle' });
    expect(tail({ a: `${'x'.repeat(8192 - 6)}needle` })).toBe(true);
    expect(tail({ a: `${'x'.repeat(8192 - 5)}needle` })).toBe(false);
  });

  it('`matches` with a fact reference is refused at compile and at lint', () => {
    expect(() => compileFilter({ fact: 'a', operator: 'matches', value: { fact: 'b' } })).toThrow(
      /literal pattern/,
    );
    const { diagnostics } = parseRuleFile(
      `name: r\ntype: any\nfilter: { fact: a, operator: matches, value: { fact: b } }\n`,
      'r.yaml',
    );
    expect(diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`)).toEqual([
      '3:46 "matches" takes a literal pattern, not a fact reference: a pattern written by the sender could be catastrophic',
    ]);
  });
});
