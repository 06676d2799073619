/**
 * The lines of a request that were refused, as its response reports them: at most
 * `limit` (the first by line number), and how many more there were. A body of bad lines
 * can be millions of lines long (16 MiB of "x\n" is 8 million), and echoing each one
 * made the response many times the size of the request.
 */
export interface Rejection {
  line: number;
  error: string;
}

export interface Rejections {
  add(line: number, error: string): void;
  /** How many were added. */
  readonly total: number;
  /** The first `limit` by line number, in line order. */
  shown(): Rejection[];
}

/** Characters of one line's reason a response echoes, as for a `_bulk` item. */
export const REASON_CHARS = 200;

/** Rejected lines a response echoes by default. */
export const ECHOED_REJECTIONS = 100;

export function createRejections(limit = ECHOED_REJECTIONS): Rejections {
  // Kept: at most 2 × limit; sorting drops the later half (those cannot be among the
  // first `limit`), once every `limit` additions, so adding stays linear. Once `limit`
  // are kept, a line after the last of them cannot be shown either: it is only counted
  // (a body of bad lines, refused in line order, allocates nothing more per line).
  let kept: Rejection[] = [];
  let total = 0;
  let cutoff = Infinity;
  const trim = () => {
    kept.sort((a, b) => a.line - b.line);
    kept = kept.slice(0, limit);
    if (kept.length === limit) cutoff = kept[limit - 1]!.line;
  };
  return {
    add(line, error) {
      total++;
      if (line > cutoff) return;
      if (kept.length >= 2 * limit) trim();
      // A reason may quote a refused value of any size: clipped, its length said.
      if (error.length > REASON_CHARS)
        error = `${error.slice(0, REASON_CHARS)}… (${error.length} characters)`;
      kept.push({ line, error });
    },
    get total() {
      return total;
    },
    shown() {
      trim();
      return kept;
    },
  };
}
