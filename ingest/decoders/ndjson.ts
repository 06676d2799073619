/**
 * NDJSON (one JSON object per line) or a JSON array. A malformed line is reported with
 * its number and does not stop the rest.
 */
export interface Decoded {
  /** 1-based line (or array position) of each object. */
  records: Array<{ line: number; value: unknown }>;
  errors: Array<{ line: number; error: string }>;
}

export function decodeNdjson(body: string): Decoded {
  const trimmed = body.trimStart();
  if (trimmed.startsWith('[')) {
    try {
      const array = JSON.parse(body) as unknown[];
      return { records: array.map((value, i) => ({ line: i + 1, value })), errors: [] };
    } catch {
      // Not a JSON array after all: an NDJSON line may start with "[". Fall through.
    }
  }
  const records: Decoded['records'] = [];
  const errors: Decoded['errors'] = [];
  let line = 0;
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf('\n', start);
    if (end === -1) end = body.length;
    line++;
    const text = body.slice(start, end).trim();
    start = end + 1;
    if (text === '') continue;
    try {
      records.push({ line, value: JSON.parse(text) });
    } catch (err) {
      errors.push({ line, error: `invalid JSON: ${(err as Error).message}` });
    }
  }
  return { records, errors };
}
