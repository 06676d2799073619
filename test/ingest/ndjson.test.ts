import { describe, expect, it } from 'vitest';
import { eachNdjsonRecord } from '../../ingest/decoders/ndjson.ts';

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
