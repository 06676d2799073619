/**
 * Event timestamps of one key, sorted, in a growable array of doubles: 8 bytes per
 * event and no per-event allocation. Events mostly arrive in order, so insertion is an
 * append; a late event is shifted into place.
 *
 * A plain array, not a Float64Array: past 64 bytes a typed array's storage lives
 * outside the JS heap, and every young-generation collection then sweeps the buffers
 * made since the last one (with 1,000 rules, thousands of keys growing their windows).
 * A JS array of doubles has the same layout on the heap, without that sweep. Only
 * indices in [start, end) are ever read; the rest is capacity.
 */
export class Timestamps {
  private buf: number[];
  private start = 0;
  private end = 0;

  constructor(capacity = 4) {
    this.buf = doubles(capacity);
  }

  get length(): number {
    return this.end - this.start;
  }

  /** The i-th oldest timestamp. */
  at(i: number): number {
    return this.buf[this.start + i]!;
  }

  newest(): number | undefined {
    return this.end > this.start ? this.buf[this.end - 1] : undefined;
  }

  oldest(): number | undefined {
    return this.end > this.start ? this.buf[this.start] : undefined;
  }

  add(t: number): void {
    if (this.end === this.buf.length) this.grow();
    let i = this.end;
    // Shift later timestamps right to keep order for a late event.
    while (i > this.start && this.buf[i - 1]! > t) {
      this.buf[i] = this.buf[i - 1]!;
      i--;
    }
    this.buf[i] = t;
    this.end++;
  }

  /** Drops timestamps ≤ t. */
  dropThrough(t: number): void {
    while (this.start < this.end && this.buf[this.start]! <= t) this.start++;
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Keeps only the newest n. */
  keepNewest(n: number): void {
    if (this.length > n) this.start = this.end - n;
  }

  /** Of the timestamps ≤ t, keeps only the newest n; later ones all stay. */
  keepNewestThrough(n: number, t: number): void {
    const through = this.upperBound(t);
    if (through > n) this.start += through - n;
  }

  /** Number of timestamps in (from, to]. */
  countIn(from: number, to: number): number {
    return this.upperBound(to) - this.upperBound(from);
  }

  /** Index (relative) of the first timestamp ≥ t. */
  lowerBound(t: number): number {
    let lo = this.start;
    let hi = this.end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.buf[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.start;
  }

  /** Index (relative) of the first timestamp > t. */
  upperBound(t: number): number {
    let lo = this.start;
    let hi = this.end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.buf[mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.start;
  }

  toArray(): number[] {
    return this.buf.slice(this.start, this.end);
  }

  static from(values: number[]): Timestamps {
    const ts = new Timestamps(Math.max(4, values.length));
    for (const v of values) ts.add(v);
    return ts;
  }

  /** Bytes held, for the memory report. */
  bytes(): number {
    return this.buf.length * 8;
  }

  private grow(): void {
    const live = this.end - this.start;
    // Compact before growing when most of the buffer is already dropped.
    const next = doubles(live * 2 > this.buf.length ? this.buf.length * 2 : this.buf.length);
    const buf = this.buf;
    for (let i = 0; i < live; i++) next[i] = buf[this.start + i]!;
    this.buf = next;
    this.start = 0;
    this.end = live;
  }
}

/**
 * An array of `n` doubles (0.5 each), its storage exactly n doubles: filling with a
 * non-integer makes V8 store it as unboxed doubles from the start, so the timestamps
 * written later neither box nor change its representation.
 */
function doubles(n: number): number[] {
  return new Array<number>(n).fill(0.5);
}

/** Timestamped numeric samples of one key, oldest first, for metric aggregation. */
export class Samples {
  times = new Timestamps();
  values: number[] = [];
  private head = 0;

  get length(): number {
    return this.values.length - this.head;
  }

  add(t: number, v: number): void {
    // Late samples are rare and windows short: place them by a linear scan.
    const newest = this.times.newest();
    this.times.add(t);
    if (newest === undefined || t >= newest) {
      this.values.push(v);
      return;
    }
    let i = this.values.length;
    this.values.push(v);
    const rel = this.times.upperBound(t) - 1 + this.head;
    while (i > rel) {
      this.values[i] = this.values[i - 1]!;
      i--;
    }
    this.values[rel] = v;
  }

  /** The i-th oldest value. */
  valueAt(i: number): number {
    return this.values[this.head + i]!;
  }

  dropThrough(t: number): void {
    const before = this.times.length;
    this.times.dropThrough(t);
    this.head += before - this.times.length;
    if (this.times.length === 0) {
      this.values = [];
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.values.length) {
      this.values = this.values.slice(this.head);
      this.head = 0;
    }
  }

  live(): number[] {
    return this.values.slice(this.head);
  }
}
