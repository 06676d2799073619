import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { writeJson, writeNumber } from '../../../ingest/model/json-bytes.ts';

/** What writeJson writes, or what it throws. */
function written(
  value: object,
  room = 1 << 16,
): { bytes?: Buffer; needed?: number; error?: string } {
  const buf = Buffer.alloc(room);
  try {
    const end = writeJson(value, buf, 3);
    return end - 3 <= room - 3 ? { bytes: buf.subarray(3, end) } : { needed: end - 3 };
  } catch (err) {
    return { error: (err as Error).constructor.name };
  }
}

function stringified(value: object): { bytes?: Buffer; error?: string } {
  try {
    return { bytes: Buffer.from(JSON.stringify(value)) };
  } catch (err) {
    return { error: (err as Error).constructor.name };
  }
}

const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  // Lone and paired surrogates, controls, quotes, backslashes, U+2028.
  fc
    .array(
      fc.constantFrom(
        '\ud800',
        '\ud800\ue000',
        '\udbff\uffff',
        '\udc00\ud800',
        '\udfff',
        '\ud83d\ude00',
        '\u0000',
        '\u001f',
        '\u007f',
        '"',
        '\\',
        '\u2028',
        '\b\f\n\r\t',
        'é',
        '語',
      ),
      { maxLength: 8 },
    )
    .map((a) => a.join('')),
);

const value = fc.oneof(
  text,
  fc.double(),
  fc.integer(),
  fc.constantFrom(
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    1e21,
    5e-324,
    true,
    false,
    null,
    undefined,
  ),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constant(new Date(0)),
  fc.constant(() => 1),
  fc.constant(Symbol('s')),
);

describe('writeJson', () => {
  it('writes exactly the UTF-8 bytes of JSON.stringify, for any flat or nested event', () => {
    fc.assert(
      fc.property(fc.dictionary(text, value, { maxKeys: 12 }), (event) => {
        expect(written(event)).toEqual(stringified(event));
      }),
      { numRuns: 2_000 },
    );
  });

  it('keeps key order as JSON.stringify does (integer-like keys first) and ignores inherited properties', () => {
    const event = { b: 1, 2: 'two', a: 'x', 1: 'one' };
    expect(written(event)).toEqual(stringified(event));
    const withProto = Object.assign(Object.create({ inherited: 1 }) as object, { own: 2 });
    expect(written(withProto).bytes!.toString()).toBe('{"own":2}');
    const bare = Object.assign(Object.create(null) as object, { a: '\u0001' });
    expect(written(bare).bytes!.toString()).toBe('{"a":"\\u0001"}');
  });

  it("uses an event's own toJSON, and throws what JSON.stringify throws", () => {
    expect(written({ a: 1, toJSON: () => ({ b: 2 }) }).bytes!.toString()).toBe('{"b":2}');
    expect(written({ a: 1n })).toEqual({ error: 'TypeError' });
    const cycle: Record<string, unknown> = {};
    cycle.self = { cycle };
    expect(written(cycle)).toEqual({ error: 'TypeError' });
  });

  it('writes every number as JSON.stringify does, integers up to 2^53 digit by digit', () => {
    const at = (n: number) => {
      const buf = Buffer.alloc(40, 0xaa);
      const end = writeNumber(n, buf, 3);
      return buf.toString('latin1', 3, end);
    };
    const edges = [0, -0, 1, -1, 9, 10, 99_999_999, 1e8, 1e8 + 1, -1e8, 1_732_272_000_123];
    edges.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21, 0.1, NaN);
    for (const n of edges) expect(at(n), String(n)).toBe(JSON.stringify(n));
    fc.assert(
      fc.property(
        fc.oneof(fc.maxSafeInteger(), fc.integer(), fc.double()),
        (n) => at(n) === JSON.stringify(n),
      ),
      { numRuns: 20_000 },
    );
    // Past the end of the buffer: nothing written there, the length still counted.
    const small = Buffer.alloc(8, 0xaa);
    expect(writeNumber(1_732_272_000_123, small.subarray(0, 4), 0)).toBe(13);
    expect(small.subarray(4).every((b) => b === 0xaa)).toBe(true);
  });

  it('says how much room an event needed when the buffer is too small, and writes nothing past its end', () => {
    const event = { message: '語'.repeat(100), nested: { a: 'é'.repeat(50) } };
    const exact = Buffer.byteLength(JSON.stringify(event));
    const buf = Buffer.alloc(64, 0xaa);
    const guard = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
    expect(writeJson(event, buf.subarray(0, 32), 0)).toBe(exact);
    expect(guard.subarray(32).every((b) => b === 0xaa)).toBe(true);
    expect(written(event, exact + 3).bytes!.toString()).toBe(JSON.stringify(event));
  });
});
