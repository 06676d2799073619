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
  eachLine(body, 0, onRecord, onError);
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
function eachLine(text: string, line: number, onRecord: OnRecord, onError: OnError): number {
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    line++;
    let lineText = text.slice(start, end);
    start = end + 1;
    // JSON.parse skips JSON's own whitespace; trim only where a line may be blank or
    // carry other whitespace.
    if (
      lineText === '' ||
      isSpace(lineText.charCodeAt(0)) ||
      isSpace(lineText.charCodeAt(lineText.length - 1))
    ) {
      lineText = lineText.trim();
      if (lineText === '') continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (err) {
      onError(line, `invalid JSON: ${(err as Error).message}`);
      continue;
    }
    onRecord(line, value);
  }
  return line;
}

const NEWLINE = 0x0a;

/**
 * NDJSON decoded as its bytes arrive, with the same records, line numbers and errors as
 * `eachNdjsonRecord` over the whole body. Each chunk's run of whole lines is decoded at
 * once; only a line cut by a chunk boundary is copied. No string the size of the body is
 * built: beyond 128 KiB a string is a large object in V8, a mapping of its own with page
 * faults to fill and an munmap to free, which cost more than decoding it.
 *
 * A body whose first non-blank byte is `[` (or not ASCII) may be a JSON array and is
 * held whole until `end`.
 */
export class NdjsonStream {
  private line = 0;
  /** Bytes of a line not finished yet. */
  private partial: Buffer[] = [];
  /** Until the body's first non-blank byte: chunks seen; in array mode, all of them. */
  private held: Buffer[] | undefined = [];
  private array = false;

  constructor(
    private readonly onRecord: OnRecord,
    private readonly onError: OnError,
  ) {}

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
      for (const c of held) this.pushLines(c);
      return;
    }
    this.pushLines(chunk);
  }

  end(): void {
    if (this.held !== undefined) {
      // An array, or a body of blank lines only.
      eachNdjsonRecord(Buffer.concat(this.held).toString('utf8'), this.onRecord, this.onError);
      this.held = [];
      return;
    }
    if (this.partial.length > 0) this.finishLine(Buffer.concat(this.partial));
    this.partial = [];
  }

  private pushLines(chunk: Buffer): void {
    let from = 0;
    if (this.partial.length > 0) {
      const newline = chunk.indexOf(NEWLINE);
      if (newline === -1) {
        this.partial.push(chunk);
        return;
      }
      this.partial.push(chunk.subarray(0, newline));
      this.finishLine(Buffer.concat(this.partial));
      this.partial = [];
      from = newline + 1;
    }
    const last = chunk.lastIndexOf(NEWLINE);
    if (last >= from) {
      this.line = eachLine(
        chunk.toString('utf8', from, last),
        this.line,
        this.onRecord,
        this.onError,
      );
      from = last + 1;
    }
    // The socket's chunks are not reused by Node: holding a view of one is safe.
    if (from < chunk.length) this.partial.push(chunk.subarray(from));
  }

  private finishLine(bytes: Buffer): void {
    this.line = eachLine(bytes.toString('utf8'), this.line, this.onRecord, this.onError);
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
