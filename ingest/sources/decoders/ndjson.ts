import { INVALID, JsonLineParser } from './json-syntax.ts';
import { LineSplitter, lineEnd } from './lines.ts';

/**
 * NDJSON (one JSON object per line) or a JSON array. A malformed line is reported with
 * its number and does not stop the rest.
 *
 * `onRecord` is called for each value (1-based line, or array position) as it is parsed:
 * ingest normalizes and serializes it there, so the parsed objects die young. `onError`
 * is called for each malformed line.
 */
export type OnRecord = (line: number, value: unknown) => void;
export type OnError = (line: number, error: string) => void;

/** Decodes a whole body held as one string. */
export function eachNdjsonRecord(body: string, onRecord: OnRecord, onError: OnError): void {
  const trimmed = body.trimStart();
  if (trimmed.startsWith('[') && eachArrayElement(trimmed, onRecord)) return;
  eachLine(body, 0, onRecord, onError, new JsonLineParser());
}

/**
 * A body that is one JSON array (a BOM or other leading space already trimmed): its
 * elements, numbered from 1. False if it is not one.
 */
function eachArrayElement(body: string, onRecord: OnRecord): boolean {
  let array: unknown;
  try {
    array = JSON.parse(body);
  } catch {
    // Not a JSON array after all: an NDJSON line may start with "[".
    return false;
  }
  if (!Array.isArray(array)) return false;
  array.forEach((value, i) => onRecord(i + 1, value));
  return true;
}

/**
 * Every line of `text` (the last one need not end with a newline), numbered after
 * `line`. Returns the number of the last line read.
 */
function eachLine(
  text: string,
  line: number,
  onRecord: OnRecord,
  onError: OnError,
  parser: JsonLineParser,
): number {
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    oneLine(text.slice(start, end), ++line, onRecord, onError, parser);
    start = end + 1;
  }
  return line;
}

function oneLine(
  text: string,
  line: number,
  onRecord: OnRecord,
  onError: OnError,
  parser: JsonLineParser,
): void {
  // JSON.parse skips JSON's own whitespace; trim only where a line may be blank or
  // carry other whitespace.
  if (text === '' || isSpace(text.charCodeAt(0)) || isSpace(text.charCodeAt(text.length - 1))) {
    text = text.trim();
    if (text === '') return;
  }
  // A bad line is found without a thrown SyntaxError (json-syntax.ts).
  const value = parser.parse(text);
  if (value === INVALID) onError(line, `invalid JSON: ${parser.error}`);
  else onRecord(line, value);
}

/**
 * Takes a whole line as bytes, `buf[start]` up to a newline that is there, before it is
 * decoded: returns the newline's position when it dealt with the line, or -1 to have it
 * decoded and parsed as text.
 */
export type LineReader = (buf: Buffer, start: number, line: number) => number;

/**
 * NDJSON decoded as its bytes arrive, with the same records, line numbers and errors as
 * `eachNdjsonRecord` over the whole body. Lines are handled as bytes (see LineSplitter);
 * no string the size of the body is built: beyond 128 KiB a string is a large object in
 * V8, a mapping of its own with page faults to fill and an munmap to free, which cost
 * more than decoding it.
 *
 * A body whose first non-blank byte is `[` (or not ASCII) may be a JSON array and is
 * held whole until `end`.
 */
export class NdjsonStream {
  private readonly lines: LineSplitter;
  /** Until the body's first non-blank byte: chunks seen; in array mode, all of them. */
  private held: Buffer[] | undefined = [];
  private array = false;
  /** JSON.parse's messages for the first bad lines of the body, short ones after. */
  private readonly parser = new JsonLineParser();

  constructor(
    private readonly onRecord: OnRecord,
    private readonly onError: OnError,
    readLine?: LineReader,
  ) {
    this.lines = new LineSplitter((buf, start, line) => {
      const end = readLine ? readLine(buf, start, line) : -1;
      if (end >= 0) return end;
      const lf = lineEnd(buf, start);
      oneLine(buf.toString('utf8', start, lf), line, this.onRecord, this.onError, this.parser);
      return lf;
    });
  }

  push(chunk: Buffer): void {
    if (this.held !== undefined) {
      this.held.push(chunk);
      if (this.array) return;
      const first = firstNonBlank(chunk);
      if (first === -1) return;
      this.array = first === 0x5b || first >= 0x80;
      if (this.array) return;
      const held = this.held;
      this.held = undefined;
      for (const c of held) this.lines.push(c);
      return;
    }
    this.lines.push(chunk);
  }

  end(): void {
    if (this.held !== undefined) {
      // An array, or a body of blank lines only.
      eachNdjsonRecord(Buffer.concat(this.held).toString('utf8'), this.onRecord, this.onError);
      this.held = [];
      return;
    }
    this.lines.end();
  }
}

/** The first byte that is not JSON whitespace, or -1. */
function firstNonBlank(chunk: Buffer): number {
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!;
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return b;
  }
  return -1;
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
