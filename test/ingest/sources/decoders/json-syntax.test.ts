import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BulkStream } from '../../../../ingest/sources/decoders/bulk.ts';
import { NdjsonStream } from '../../../../ingest/sources/decoders/ndjson.ts';
import {
  INVALID,
  JsonLineParser,
  MESSAGES_FROM_PARSE,
  jsonSyntaxError,
} from '../../../../ingest/sources/decoders/json-syntax.ts';

const accepts = (s: string) => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};

/** JSON text, then cut, spliced or sprinkled with the characters JSON turns on. */
const near = fc
  .tuple(
    fc.json({ maxDepth: 3 }),
    fc.array(
      fc.tuple(
        fc.nat(),
        fc.nat({ max: 3 }),
        fc.oneof(
          fc.constantFrom(...'{}[]",:\\ -+.eE0123456789tfnu\t\n\r\u0001\u2028'.split('')),
          fc.string({ maxLength: 3 }),
        ),
      ),
      { maxLength: 3 },
    ),
  )
  .map(([text, edits]) =>
    edits.reduce((t, [at, cut, put]) => {
      const p = at % (t.length + 1);
      return t.slice(0, p) + put + t.slice(p + cut);
    }, text),
  );

describe('jsonSyntaxError', () => {
  it('accepts exactly what JSON.parse accepts', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.json({ maxDepth: 4 }), near, fc.string(), fc.string({ unit: 'binary' })),
        (s) => {
          expect(jsonSyntaxError(s) === -1).toBe(accepts(s));
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('knows JSON.parse’s corners', () => {
    for (const s of ['1', '-0', '0.5e+3', '"\\u00e9"', ' [ ] ', '{"a":[1,{"b":null}]}', '"\ud800"'])
      expect(jsonSyntaxError(s), s).toBe(-1);
    for (const s of [
      '',
      ' ',
      '01',
      '1.',
      '.5',
      '-',
      '1e',
      '+1',
      '"\\x"',
      '"\\u12"',
      '"a',
      '[1,]',
      '{"a":1,}',
      '{a:1}',
      'tru',
      'nul',
      '[1]]',
      '"\t"',
      '\u00a01',
    ])
      expect(jsonSyntaxError(s), s).toBeGreaterThanOrEqual(0);
  });

  it('takes linear time on deep nesting and long bad lines', () => {
    const started = performance.now();
    expect(jsonSyntaxError('['.repeat(1_000_000))).toBe(1_000_000);
    expect(jsonSyntaxError(`"${'a'.repeat(1_000_000)}`)).toBe(1_000_002 - 1);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('JsonLineParser', () => {
  it('gives JSON.parse’s message for the first bad lines of a body, a short one after', () => {
    const parser = new JsonLineParser();
    for (let i = 0; i < MESSAGES_FROM_PARSE; i++) {
      expect(parser.parse('x')).toBe(INVALID);
      expect(parser.error).toMatch(/^Unexpected token 'x'/);
    }
    expect(parser.parse('{"a":x}')).toBe(INVALID);
    expect(parser.error).toBe('not JSON at position 5');
    expect(parser.parse('{"a":1}')).toEqual({ a: 1 });
  });
});

describe('a body of bad lines', () => {
  /** How many times JSON.parse threw while `run` ran. */
  const throwsDuring = (run: () => void) => {
    const parse = JSON.parse;
    let threw = 0;
    JSON.parse = ((text: string, reviver?: Parameters<typeof parse>[1]) => {
      try {
        return parse(text, reviver) as unknown;
      } catch (err) {
        threw++;
        throw err;
      }
    }) as typeof JSON.parse;
    try {
      run();
    } finally {
      JSON.parse = parse;
    }
    return threw;
  };

  it('costs no thrown SyntaxError per line past the first 100, in NDJSON and in _bulk', () => {
    const lines = 10_000;
    let errors = 0;
    const ndjson = new NdjsonStream(
      () => undefined,
      () => errors++,
    );
    expect(
      throwsDuring(() => {
        ndjson.push(Buffer.from('{"ok":1}\n' + 'x\n'.repeat(lines)));
        ndjson.end();
      }),
    ).toBe(MESSAGES_FROM_PARSE);
    expect(errors).toBe(lines);

    const bulk = new BulkStream(undefined, { parsed: () => undefined });
    expect(
      throwsDuring(() => {
        bulk.push(Buffer.from('{"index":{}}\nx\n'.repeat(lines)));
        bulk.end();
      }),
    ).toBe(MESSAGES_FROM_PARSE);
    expect(bulk.items.filter((i) => i.error)).toHaveLength(lines);
  });
});
