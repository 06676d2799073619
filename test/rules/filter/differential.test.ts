import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Condition,
  compileFilter,
  createReferenceEngine,
  type FactCondition,
  OPERATORS,
  requiredValues,
} from '../../../rules/index.ts';

/**
 * The compiled filters are held to json-rules-engine's verdicts on random events and
 * random conditions. Fields and values come from small pools so that conditions
 * actually hit the events, and both verdicts occur often (checked below).
 */
const FIELDS = ['service.name', 'log.level', 'http.status', 'tags', 'req.items', 'empty', 'flag'];
const STRINGS = ['web', 'api', 'error', 'warn', 'web-1', 'ERROR', '', '12', '3.5', '12abc', 'x'];
const NUMBERS = [0, 1, 3.5, 12, 200, 500, -1];

const scalar = fc.oneof(
  fc.constantFrom(...STRINGS),
  fc.constantFrom(...NUMBERS),
  fc.boolean(),
  fc.constant(null),
);
const fieldValue = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 2, arbitrary: fc.array(scalar, { maxLength: 4 }) },
  {
    weight: 1,
    arbitrary: fc.array(fc.record({ id: scalar, name: scalar }, { noNullPrototype: true }), {
      maxLength: 3,
    }),
  },
);
// Plain objects, as JSON.parse makes them.
const event = fc.dictionary(fc.constantFrom(...FIELDS), fieldValue, {
  maxKeys: FIELDS.length,
  noNullPrototype: true,
});

const PATHS = ['$[0]', '$[1]', '$[0].id', '$.name', '$'];
const REGEXES = ['^web', 'err', '/^ERR/i', '\\d+', '^$', '/a.c/s'];

function valueFor(operator: (typeof OPERATORS)[number]): fc.Arbitrary<unknown> {
  switch (operator) {
    case 'in':
    case 'notIn':
      return fc.array(scalar, { maxLength: 6 });
    case 'exists':
      return fc.boolean();
    case 'matches':
      return fc.constantFrom(...REGEXES);
    case 'startsWith':
    case 'endsWith':
      return fc.constantFrom('we', 'web', 'or', 'r', '', 'api');
    default:
      return fc.oneof(
        { weight: 5, arbitrary: scalar },
        { weight: 1, arbitrary: fc.record({ fact: fc.constantFrom(...FIELDS) }) },
      );
  }
}

const factCondition: fc.Arbitrary<FactCondition> = fc
  .tuple(
    fc.constantFrom(...FIELDS),
    fc.constantFrom(...OPERATORS),
    fc.option(fc.constantFrom(...PATHS), { freq: 5 }),
  )
  .chain(([fact, operator, path]) =>
    valueFor(operator).map((value) => {
      const c: FactCondition = { fact, operator, value };
      if (path !== null) c.path = path;
      return c;
    }),
  );

const condition: fc.Arbitrary<Condition> = fc.letrec<{ node: Condition }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: factCondition },
    { weight: 2, arbitrary: fc.array(tie('node'), { maxLength: 4 }).map((all) => ({ all })) },
    { weight: 2, arbitrary: fc.array(tie('node'), { maxLength: 4 }).map((any) => ({ any })) },
    { weight: 1, arbitrary: tie('node').map((not) => ({ not })) },
  ),
})).node;

async function reference(c: Condition, facts: Record<string, unknown>): Promise<boolean> {
  const engine = createReferenceEngine();
  engine.addRule({
    conditions: 'all' in c || 'any' in c ? c : { all: [c] },
    event: { type: 'match' },
  });
  const { events } = await engine.run({ ...facts });
  return events.length > 0;
}

describe('compiled filters agree with json-rules-engine', () => {
  it('on every verdict for random events × random conditions', async () => {
    let trues = 0;
    let falses = 0;
    await fc.assert(
      fc.asyncProperty(
        condition,
        fc.array(event, { minLength: 1, maxLength: 5 }),
        async (c, events) => {
          const compiled = compileFilter(c);
          for (const e of events) {
            const expected = await reference(c, e);
            if (expected) trues++;
            else falses++;
            expect(compiled(e), JSON.stringify({ c, e })).toBe(expected);
          }
        },
      ),
      { numRuns: 2500, seed: 20261122 },
    );
    // The generators must produce both verdicts in earnest, or the agreement means little.
    expect(trues).toBeGreaterThan(1000);
    expect(falses).toBeGreaterThan(1000);
  });

  it('requiredValues is sound: an event outside a claimed set never matches', async () => {
    // Conditions that pin fields (equal / in, under all and any) next to random ones.
    const pin = fc
      .tuple(
        fc.constantFrom(...FIELDS),
        fc.constantFrom('equal' as const, 'in' as const),
        scalar,
        fc.array(scalar, { maxLength: 3 }),
      )
      .map(([fact, operator, one, many]): Condition => ({
        fact,
        operator,
        value: operator === 'equal' ? one : many,
      }));
    const pinned = fc.oneof(
      condition,
      fc.tuple(pin, condition).map(([p, c]): Condition => ({ all: [p, c] })),
      fc.tuple(pin, pin, condition).map(([p, q, c]): Condition => ({ all: [{ any: [p, q] }, c] })),
      fc.tuple(pin, pin).map(([p, q]): Condition => ({ any: [p, { all: [q, p] }] })),
    );
    let claims = 0;
    let exclusions = 0;
    await fc.assert(
      fc.asyncProperty(pinned, event, async (c, e) => {
        const constraints = requiredValues(c);
        const excluded = constraints.some(({ field, values }) => !values.includes(e[field]));
        if (constraints.length > 0) claims++;
        if (!excluded) return;
        exclusions++;
        expect(await reference(c, e), JSON.stringify({ c, e, constraints })).toBe(false);
      }),
      { numRuns: 3000, seed: 7 },
    );
    expect(claims).toBeGreaterThan(1000);
    expect(exclusions).toBeGreaterThan(500);
  });
});
