/**
 * Splits a byte stream into lines as its chunks arrive. Each whole line goes to
 * `onLine(buf, start, line)` (numbered from 1) while still bytes, with a newline at its
 * end guaranteed in `buf`: a line cut by chunk boundaries is put together, and a last
 * line without one is given one. `onLine` returns where that newline is (`lineEnd`
 * finds it for a reader that did not). No string the size of a chunk is built.
 */
export type OnLine = (buf: Buffer, start: number, line: number) => number;

export class LineSplitter {
  private line = 0;
  /** Bytes of a line not finished yet. */
  private partial: Buffer[] = [];

  constructor(private readonly onLine: OnLine) {}

  push(chunk: Buffer): void {
    let from = 0;
    if (this.partial.length > 0) {
      const newline = chunk.indexOf(NEWLINE);
      if (newline === -1) {
        this.partial.push(chunk);
        return;
      }
      this.partial.push(chunk.subarray(0, newline + 1));
      const joined = Buffer.concat(this.partial);
      this.lines(joined, 0, joined.length - 1);
      this.partial = [];
      from = newline + 1;
    }
    const last = chunk.lastIndexOf(NEWLINE);
    if (last >= from) {
      this.lines(chunk, from, last);
      from = last + 1;
    }
    // Node does not write into a chunk it has handed out: holding a view of one is safe.
    if (from < chunk.length) this.partial.push(chunk.subarray(from));
  }

  end(): void {
    if (this.partial.length > 0) {
      const bytes = Buffer.concat([...this.partial, LF]);
      this.lines(bytes, 0, bytes.length - 1);
    }
    this.partial = [];
  }

  /** The lines of `buf[from, last]`, `last` a newline. */
  private lines(buf: Buffer, from: number, last: number): void {
    let start = from;
    while (start <= last) {
      let end = this.onLine(buf, start, ++this.line);
      if (end < start) end = lineEnd(buf, start);
      start = end + 1;
    }
  }
}

/** Where the line starting at `start` ends (its newline). */
export function lineEnd(buf: Buffer, start: number): number {
  const end = buf.indexOf(NEWLINE, start);
  return end === -1 ? buf.length : end;
}

const NEWLINE = 0x0a;
const LF = Buffer.from('\n');
