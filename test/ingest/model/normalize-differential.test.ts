import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NormalizeError, normalize } from '../../../ingest/model/index.ts';
import { parseRfc3339 } from '../../../ingest/model/iso-time.ts';
import { FIELD_NAMES } from './field-names.ts';
import { normalize as reference } from './normalize-reference.ts';

const NAMES = FIELD_NAMES;
// "__proto__" is not among them: the reference set it as the prototype (its own test below).

const STACK = `TypeError: boom for order 12
    at chargeCard (/srv/app/lib/pay.js:10:5)
    at handle (/srv/app/lib/http.js:20:7)`;

const leaf = fc.oneof(
  fc.constantFrom(
    '',
    'web-1',
    'checkout',
    'error',
    'WARNING',
    '30',
    '12.5',
    '2024-11-22T10:00:00.123Z',
    '2024-11-22T10:00:00+02:00',
    '1732272000123456789',
    'Nov 22 2024 10:00:00',
    STACK,
  ),
  fc.integer({ min: -5, max: 70 }),
  fc.constantFrom(1732272000123, 1732272000, 1.5e18, 4242, 0, 1e300, -1, '9'.repeat(400)),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 3 }),
  fc.string(),
);

const object: fc.Arbitrary<Record<string, unknown>> = fc.letrec((tie) => ({
  obj: fc
    .array(
      fc.tuple(
        fc.constantFrom(...NAMES),
        fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('obj')),
      ),
      { maxLength: 8 },
    )
    .map((entries) => {
      // JSON.parse's objects: own data properties only, "__proto__" included.
      const o: Record<string, unknown> = {};
      for (const [k, v] of entries)
        Object.defineProperty(o, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      return o;
    }),
})).obj;

function outcome(f: () => unknown): unknown {
  try {
    const event = f() as Record<string, unknown>;
    // Key order is part of the result: the model fields come first.
    return { keys: Object.keys(event), event: { ...event } };
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message };
  }
}

describe('normalize against the reference implementation', () => {
  it('gives the same event, in the same key order, or the same error, for any object', () => {
    fc.assert(
      fc.property(object, fc.option(fc.constantFrom('web', 'api')), (input, service) => {
        const options = { receivedAt: 42, ...(service !== null && { service }) };
        // Both get a copy that went through JSON where that is possible, as ingest does.
        expect(outcome(() => normalize(input, options))).toEqual(
          outcome(() => reference(input, options)),
        );
      }),
      { numRuns: 3_000 },
    );
  });

  it('refuses objects nested past the limit as the reference does, and drops empty ones', () => {
    const nest = (depth: number, leaf: Record<string, unknown>) => {
      let o = leaf;
      for (let i = 1; i < depth; i++) o = { k: o };
      return o;
    };
    for (const depth of [63, 64, 65, 200])
      for (const leaf of [{ v: 1 }, {}]) {
        const input = nest(depth, leaf);
        expect(outcome(() => normalize(input, { receivedAt: 42 }))).toEqual(
          outcome(() => reference(input, { receivedAt: 42 })),
        );
      }
    expect(() => normalize(nest(65, { v: 1 }))).toThrow(NormalizeError);
    expect(normalize(nest(65, {}), { receivedAt: 42 })).toEqual({ '@timestamp': 42 });
  });

  it('keeps "__proto__" as a field, never as the prototype', () => {
    const e = normalize(JSON.parse('{"__proto__": {"polluted": 1}, "msg": "x", "time": 1}'));
    expect(Object.getPrototypeOf(e)).toBe(Object.prototype);
    expect(e['__proto__.polluted']).toBe(1);
    const flat = normalize(JSON.parse('{"__proto__": 5, "msg": "x", "time": 1}'));
    expect(Object.getPrototypeOf(flat)).toBe(Object.prototype);
    expect(Object.keys(flat)).toContain('__proto__');
    expect(() => normalize(JSON.parse('{"metric":{"name":"x","value":"y"}}'))).toThrow(
      NormalizeError,
    );
  });
});

describe('RFC 3339 timestamps without Date.parse', () => {
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = fc
    .record({
      year: fc.integer({ min: 0, max: 9999 }),
      month: fc.integer({ min: 0, max: 13 }),
      day: fc.integer({ min: 0, max: 32 }),
      hour: fc.integer({ min: 0, max: 25 }),
      minute: fc.integer({ min: 0, max: 60 }),
      second: fc.integer({ min: 0, max: 61 }),
      fraction: fc.option(fc.stringMatching(/^[0-9]{0,10}$/)),
      zone: fc.oneof(
        fc.constantFrom('Z', 'z', '', '+00:00', '-00:00', '+0100', 'UTC'),
        fc
          .tuple(
            fc.constantFrom('+', '-'),
            fc.integer({ min: 0, max: 25 }),
            fc.integer({ min: 0, max: 60 }),
          )
          .map(([sign, h, m]) => `${sign}${two(h)}:${two(m)}`),
      ),
      separator: fc.constantFrom('T', 't', ' '),
    })
    .map(
      (t) =>
        `${String(t.year).padStart(4, '0')}-${two(t.month)}-${two(t.day)}${t.separator}${two(t.hour)}:${two(t.minute)}:${two(t.second)}${t.fraction === null ? '' : `.${t.fraction}`}${t.zone}`,
    );

  it('reads what it reads exactly as Date.parse does, and leaves the rest to it', () => {
    fc.assert(
      fc.property(fc.oneof(stamp, fc.string()), (s) => {
        const fast = parseRfc3339(s);
        if (fast !== undefined) expect(fast).toBe(Date.parse(s));
      }),
      { numRuns: 20_000 },
    );
  });

  it('reads the forms shippers send', () => {
    for (const s of [
      '2024-11-22T10:00:00Z',
      '2024-11-22T10:00:00.123Z',
      '2024-11-22T10:00:00.123456789Z',
      '2024-11-22T10:00:00.5+01:00',
      '2024-02-30T00:00:00Z',
      '1969-12-31T23:59:59.999Z',
    ])
      expect(parseRfc3339(s)).toBe(Date.parse(s));
    for (const s of ['2024-11-22T24:00:00Z', '2024-11-22 10:00:00Z', '2024-11-22T10:00:00'])
      expect(parseRfc3339(s)).toBeUndefined();
  });
});
