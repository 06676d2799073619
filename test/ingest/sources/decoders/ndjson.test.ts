import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { eachNdjsonRecord, NdjsonStream } from '../../../../ingest/sources/decoders/ndjson.ts';

function decodeNdjson(body: string) {
  const records: Array<{ line: number; value: unknown }> = [];
  const errors: Array<{ line: number; error: string }> = [];
  eachNdjsonRecord(
    body,
    (line, value) => records.push({ line, value }),
    (line, error) => errors.push({ line, error }),
  );
  return { records, errors };
}

describe('NDJSON decoding', () => {
  it('numbers lines as sent, skips blank ones of any whitespace, and reports each bad line', () => {
    const body = [
      '{"a":1}',
      '',
      '  {"a":2}\r',
      '\u00a0\ufeff\u2028\t',
      '{"a":',
      '\u3000{"a":3}',
      '[1, 2]',
      'not json',
      '{"a":4}',
    ].join('\n');
    const { records, errors } = decodeNdjson(`${body}\n`);
    expect(records).toEqual([
      { line: 1, value: { a: 1 } },
      { line: 3, value: { a: 2 } },
      { line: 6, value: { a: 3 } },
      { line: 7, value: [1, 2] },
      { line: 9, value: { a: 4 } },
    ]);
    expect(errors.map((e) => e.line)).toEqual([5, 8]);
    expect(errors[0]!.error).toMatch(/^invalid JSON: /);
  });

  it('reads a JSON array as one record per element, and a line that only starts with "[" as NDJSON', () => {
    expect(decodeNdjson(' [{"a":1},{"a":2}]').records).toEqual([
      { line: 1, value: { a: 1 } },
      { line: 2, value: { a: 2 } },
    ]);
    expect(decodeNdjson('[1]\n{"a":1}\n').records).toEqual([
      { line: 1, value: [1] },
      { line: 2, value: { a: 1 } },
    ]);
  });
});

describe('NDJSON decoded as it streams in', () => {
  function decodeStream(chunks: Buffer[]) {
    const records: Array<{ line: number; value: unknown }> = [];
    const errors: Array<{ line: number; error: string }> = [];
    const stream = new NdjsonStream(
      (line, value) => records.push({ line, value }),
      (line, error) => errors.push({ line, error }),
    );
    for (const c of chunks) stream.push(c);
    stream.end();
    return { records, errors };
  }

  /** The body's bytes cut at the given positions (which may fall inside a character). */
  function cut(bytes: Buffer, at: number[]): Buffer[] {
    const points = [...new Set(at.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let from = 0;
    for (const p of [...points, bytes.length]) {
      out.push(Buffer.from(bytes.subarray(from, p)));
      from = p;
    }
    return out;
  }

  const lineArb = fc.oneof(
    fc
      .dictionary(fc.string({ unit: 'grapheme', maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), {
        maxKeys: 4,
      })
      .map((o) => JSON.stringify(o)),
    fc.constantFrom(
      '',
      '   ',
      '\t',
      '\r',
      '{"a":',
      'not json',
      '[1, 2]',
      '\u00a0\ufeff',
      '{"é":"語"}\r',
    ),
    fc.string({ unit: 'grapheme', maxLength: 8 }),
  );

  it('gives the same records, line numbers and errors as the whole body, however it is cut', () => {
    fc.assert(
      fc.property(
        fc.array(lineArb, { maxLength: 12 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 40 }),
        (lines, trailingNewline, at) => {
          const body = lines.join('\n') + (trailingNewline ? '\n' : '');
          const whole = { records: [], errors: [] } as ReturnType<typeof decodeNdjson>;
          eachNdjsonRecord(
            body,
            (line, value) => whole.records.push({ line, value }),
            (line, error) => whole.errors.push({ line, error }),
          );
          expect(decodeStream(cut(Buffer.from(body), at))).toEqual(whole);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('cut at every pair of places, gives what the whole body gives', () => {
    const body = '{"a":1}\n\n\r\n{"b":"é語"}\n\n{"a":\n  \n{"c":3}\r\n\n';
    const whole = decodeNdjson(body);
    expect(whole.records.map((r) => r.line)).toEqual([1, 4, 8]);
    const bytes = Buffer.from(body);
    for (let i = 0; i <= bytes.length; i++)
      for (let j = i; j <= bytes.length; j++)
        expect(decodeStream(cut(bytes, [i, j]))).toEqual(whole);
  });

  it('reads a JSON array cut into pieces, after blank lines, a BOM or other Unicode space', () => {
    for (const lead of [' \n\t', '\ufeff', '\u00a0', '']) {
      const body = Buffer.from(`${lead}[{"a":"é"},\n{"a":2}]\n`);
      for (let i = 0; i <= body.length; i++) {
        expect(decodeStream(cut(body, [i])).records).toEqual([
          { line: 1, value: { a: 'é' } },
          { line: 2, value: { a: 2 } },
        ]);
      }
    }
  });

  it('keeps a line longer than many chunks whole', () => {
    const long = JSON.stringify({ message: '語'.repeat(50_000) });
    const body = Buffer.from(`{"a":1}\n${long}\n{"a":2}`);
    const chunks = cut(
      body,
      Array.from({ length: 40 }, (_, i) => 3 + i * 3_777),
    );
    const { records, errors } = decodeStream(chunks);
    expect(errors).toEqual([]);
    expect(records.map((r) => r.line)).toEqual([1, 2, 3]);
    expect((records[1]!.value as { message: string }).message).toBe('語'.repeat(50_000));
    expect(records[2]!.value).toEqual({ a: 2 });
  });
});
