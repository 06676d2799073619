import { deserialize, serialize } from 'node:v8';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../../pipeline/checkpoint-codec.ts';

describe('checkpoint entry codec', () => {
  it('round-trips plain data as node:v8 does (any JSON, ±Infinity, NaN, -0, undefined)', () => {
    const value = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom(Infinity, -Infinity, NaN, -0, undefined, 2 ** 31, -(2 ** 31) - 1),
    );
    fc.assert(
      fc.property(fc.array(value), fc.dictionary(fc.string(), value), (list, dict) => {
        const v = { k: { times: list, sample: dict }, s: [1.5, 3], q: 1 };
        expect(decodeValue(encodeValue(v))).toStrictEqual(deserialize(serialize(v)));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps strings a sender picks (NULs, lone surrogates, wide text) and own __proto__ keys', () => {
    const v = JSON.parse('{"__proto__": {"polluted": 1}, "a": "x"}') as Record<string, unknown>;
    v.s = ['\u0000', '\ud800', 'a\udfffb', 'é', '日本', '\u00ff'];
    const back = decodeValue(encodeValue(v)) as Record<string, unknown>;
    expect(back).toStrictEqual(v);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('writes a long string as Latin-1 or UTF-16 by its widest code unit, wherever it is', () => {
    for (const n of [63, 64, 1_000]) {
      const latin = 'é'.repeat(n);
      // FORMAT_TAG, LATIN1 (6) or UTF16 (7), then the length's varint.
      expect(encodeValue(latin)[1]).toBe(6);
      expect(encodeValue(latin).length).toBe(2 + (n < 128 ? 1 : 2) + n);
      for (const at of [0, n >> 1, n - 1]) {
        const wide = `${latin.slice(0, at)}\u0100${latin.slice(at + 1)}`;
        const bytes = encodeValue(wide);
        expect(bytes[1]).toBe(7);
        expect(bytes.length).toBe(2 + (n < 128 ? 1 : 2) + 2 * n);
        expect(decodeValue(bytes)).toBe(wide);
        expect(decodeValue(encodeValue(`${wide.slice(0, at)}\ud800${wide.slice(at + 1)}`))).toBe(
          `${wide.slice(0, at)}\ud800${wide.slice(at + 1)}`,
        );
      }
    }
  });

  it('writes what is not plain data with node:v8, and reads rows node:v8 wrote', () => {
    const holey: unknown[] = [1];
    holey[2] = 3;
    for (const v of [new Map([['a', 1]]), holey, { d: new Date(5) }, 10n]) {
      const bytes = encodeValue(v);
      expect(bytes[0]).toBe(0xff);
      expect(decodeValue(bytes)).toStrictEqual(v);
    }
    let deep: unknown = 1;
    for (let i = 0; i < 300; i++) deep = [deep];
    expect(decodeValue(encodeValue(deep))).toStrictEqual(deep);
    expect(decodeValue(serialize({ k: { times: [1, 2] } }))).toStrictEqual({
      k: { times: [1, 2] },
    });
  });

  it('refuses damaged rows without allocating past their size', () => {
    const ok = Buffer.from(encodeValue({ a: ['xy', 1] }));
    for (let cut = 1; cut < ok.length; cut++)
      expect(() => decodeValue(ok.subarray(0, cut))).toThrow(/checkpoint entry/);
    // An array claiming 2^32-1 items in a 6-byte row; a length past five varint bytes.
    expect(() => decodeValue(Buffer.from([0xd1, 8, 0xff, 0xff, 0xff, 0x0f]))).toThrow(/truncated/);
    expect(() => decodeValue(Buffer.from([0xd1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(
      /bad length/,
    );
    expect(() => decodeValue(Buffer.from([0xd1, 42]))).toThrow(/bad tag/);
    expect(() => decodeValue(Buffer.from([0xd1, 1, 1]))).toThrow(/past the value/);
  });
});
