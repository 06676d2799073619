/**
 * NDJSON (one JSON object per line) or a JSON array. A malformed line is reported with
 * its number and does not stop the rest.
 *
 * Calls `onRecord` for each object (1-based line, or array position) as it is parsed:
 * ingest normalizes and serializes it there, so the parsed objects die young. Calls
 * `onError` for each malformed line.
 */
export function eachNdjsonRecord(
  body: string,
  onRecord: (line: number, value: unknown) => void,
  onError: (line: number, error: string) => void,
): void {
  const trimmed = body.trimStart();
  if (trimmed.startsWith('[')) {
    let array: unknown[] | undefined;
    try {
      array = JSON.parse(body) as unknown[];
    } catch {
      // Not a JSON array after all: an NDJSON line may start with "[". Fall through.
    }
    if (array !== undefined) {
      array.forEach((value, i) => onRecord(i + 1, value));
      return;
    }
  }
  let line = 0;
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf('\n', start);
    if (end === -1) end = body.length;
    line++;
    let text = body.slice(start, end);
    start = end + 1;
    // JSON.parse skips JSON's own whitespace; trim only where a line may be blank or
    // carry other whitespace.
    if (text === '' || isSpace(text.charCodeAt(0)) || isSpace(text.charCodeAt(text.length - 1))) {
      text = text.trim();
      if (text === '') continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      onError(line, `invalid JSON: ${(err as Error).message}`);
      continue;
    }
    onRecord(line, value);
  }
}

function isSpace(code: number): boolean {
  return (
    code <= 32 ||
    code === 0xa0 ||
    code === 0x1680 ||
    code === 0xfeff ||
    (code >= 0x2000 && code <= 0x3000)
  );
}
