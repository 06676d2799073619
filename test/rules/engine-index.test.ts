import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import { type Condition, compileFilter, Engine, type RuleSpec } from '../../rules/index.ts';
import { rule, s, T0 } from './helpers.ts';

/**
 * The engine's dispatch (its index on one pinned field, then a second pinned field
 * tested before the filter) reaches every rule whose filter matches an event: `any`
 * rules without realert fire once per matching event, so each rule's alert count is
 * the number of events its compiled filter accepts.
 */
const FIELDS = ['service.name', 'log.level', 'metric.name'];
const SCALARS = ['web', 'api', 'error', 'warn', '', '0', 0, -0, 1, 500, true, false, null];

const scalar = fc.constantFrom(...SCALARS);
const pin: fc.Arbitrary<Condition> = fc
  .tuple(fc.constantFrom(...FIELDS), fc.boolean(), scalar, fc.array(scalar, { maxLength: 6 }))
  .map(([fact, equal, one, many]) =>
    equal ? { fact, operator: 'equal', value: one } : { fact, operator: 'in', value: many },
  );
const other: fc.Arbitrary<Condition> = fc.oneof(
  fc.constantFrom<Condition>(
    { fact: 'log.level', operator: 'exists', value: true },
    { fact: 'metric.name', operator: 'notEqual', value: 'api' },
    { not: { fact: 'service.name', operator: 'startsWith', value: 'w' } },
  ),
  fc.tuple(pin, pin).map(([a, b]): Condition => ({ any: [a, b] })),
);
const filter: fc.Arbitrary<Condition> = fc
  .tuple(fc.array(pin, { minLength: 0, maxLength: 3 }), fc.array(other, { maxLength: 1 }))
  .map(([pins, rest]) => ({ all: [...pins, ...rest] }));

const event = fc.record(
  {
    'service.name': scalar,
    'log.level': scalar,
    'metric.name': scalar,
  },
  { requiredKeys: [] },
);

describe('engine dispatch', () => {
  it('reaches exactly the rules whose filter matches, second pinned fields included', () => {
    let matched = 0;
    fc.assert(
      fc.property(
        fc.array(filter, { minLength: 1, maxLength: 12 }),
        fc.array(event, { minLength: 1, maxLength: 30 }),
        (filters, fields) => {
          const rules: RuleSpec[] = filters.map((f, i) =>
            rule({ name: `r${i}`, type: 'any', filter: f }),
          );
          const events = fields.map((f, i) => ({ '@timestamp': T0 + s(i), ...f }) as Event);
          const counts = new Map<string, number>();
          const engine = new Engine(rules, {
            allowedLatenessMs: 0,
            observedFrom: T0,
            onAlert: (a) => counts.set(a.rule, (counts.get(a.rule) ?? 0) + 1),
          });
          for (const e of events) engine.process(e);
          rules.forEach((r) => {
            const accepts = compileFilter(r.filter);
            const expected = events.filter((e) => accepts(e)).length;
            matched += expected;
            expect(counts.get(r.name) ?? 0, JSON.stringify(r.filter)).toBe(expected);
          });
        },
      ),
      { numRuns: 1500, seed: 20261203 },
    );
    expect(matched).toBeGreaterThan(1000);
  });
});
