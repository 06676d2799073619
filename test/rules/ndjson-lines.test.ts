import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { backtest } from '../../rules/index.ts';
import { lineBatches, type TooLong } from '../../rules/ndjson-lines.ts';

/** A byte stream that hands out exactly these chunks. */
const chunks = (...parts: string[]) =>
  new Readable({
    read() {
      const next = parts.shift();
      this.push(next === undefined ? null : Buffer.from(next));
    },
  });

async function all(input: Readable, max?: number): Promise<(string | TooLong)[]> {
  const out: (string | TooLong)[] = [];
  for await (const batch of lineBatches(input, max)) out.push(...batch);
  return out;
}

describe('lineBatches', () => {
  it('joins lines cut by chunk boundaries and keeps a last line without a newline', async () => {
    expect(await all(chunks('{"a":1}\n{"b"', ':2}\n', '\n{"c":3}'))).toEqual([
      '{"a":1}',
      '{"b":2}',
      '',
      '{"c":3}',
    ]);
    expect(await all(chunks('ab', 'cd', 'ef\n'))).toEqual(['abcdef']);
  });

  it('ends lines at \\n only, as ingest does: \\r stays, as JSON whitespace', async () => {
    expect(await all(chunks('{"a":\r1}\r\n{"b":2}\n'))).toEqual(['{"a":\r1}\r', '{"b":2}']);
  });

  it('does not split a multi-byte character cut by a chunk boundary', async () => {
    const bytes = Buffer.from('{"m":"é"}\n');
    const cut = bytes.indexOf(0xc3) + 1;
    const input = new Readable({
      read() {},
    });
    input.push(bytes.subarray(0, cut));
    input.push(bytes.subarray(cut));
    input.push(null);
    expect(await all(input)).toEqual(['{"m":"é"}']);
  });

  it('reports an overlong line by its length, without keeping it, and goes on', async () => {
    const out = await all(
      chunks('ok\n', 'x'.repeat(6), 'y'.repeat(6), 'z\nnext\n', 'w'.repeat(20)),
      10,
    );
    expect(out).toEqual(['ok', { tooLong: 13 }, 'next', { tooLong: 20 }]);
    expect(await all(chunks(`${'a'.repeat(11)}\nb\n`), 10)).toEqual([{ tooLong: 11 }, 'b']);
    expect(await all(chunks('aaaaa', `${'a'.repeat(6)}\nb`), 10)).toEqual([{ tooLong: 11 }, 'b']);
  });

  it('numbers bad lines as ingest does when a lone \\r is in the file', async () => {
    const bad: number[] = [];
    const s = await backtest(
      chunks(
        '{"@timestamp":"2026-01-01T00:00:00Z","message":"a"}\n',
        'not json\r{"x":1}\n',
        '{"@timestamp":"2026-01-01T00:00:01Z","message":"b"}\n',
      ),
      { rules: [], allowedLatenessMs: 0, onBadLine: (n) => bad.push(n) },
    );
    expect(s.events).toBe(2);
    expect(bad).toEqual([2]);
  });
});
