/**
 * A min-heap of deadlines ordered by (time, insertion sequence), so timers due at
 * the same instant fire in the order they were set — the same order live and in a
 * replay. Entries are not removed when superseded; runners ignore stale ones.
 */
export interface Timer<T> {
  at: number;
  seq: number;
  target: T;
  key: string;
  tag: number;
}

export class TimerHeap<T> {
  private heap: Timer<T>[] = [];
  /**
   * Each heap slot's `at` and `seq`, in step with `heap`: the sift loops compare these
   * flat arrays and move the timer objects without reading them (with many keys the
   * objects are scattered, each a cache miss).
   */
  private ats: number[] = [];
  private seqs: number[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  peekTime(): number {
    return this.ats.length > 0 ? this.ats[0]! : Number.POSITIVE_INFINITY;
  }

  push(at: number, target: T, key: string, tag: number): Timer<T> {
    return this.insert({ at, seq: this.seq++, target, key, tag });
  }

  /**
   * A timer restored with the sequence number it was given (incremental snapshots keep
   * it): later pushes are numbered after it.
   */
  load(at: number, seq: number, target: T, key: string, tag: number): void {
    this.insert({ at, seq, target, key, tag });
    if (seq >= this.seq) this.seq = seq + 1;
  }

  /** The sequence number the next push gets (kept by incremental snapshots). */
  get nextSeq(): number {
    return this.seq;
  }

  set nextSeq(seq: number) {
    this.seq = Math.max(this.seq, seq);
  }

  /** Every pending timer, in no order (a copy: the heap moves its entries). */
  all(): Timer<T>[] {
    return this.heap.slice();
  }

  private insert(timer: Timer<T>): Timer<T> {
    const { heap: h, ats, seqs } = this;
    const at = timer.at;
    const seq = timer.seq;
    let i = h.length;
    h.push(timer);
    ats.push(at);
    seqs.push(seq);
    // Sift up: parents after the new timer move down a slot, then it takes the hole.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pa = ats[parent]!;
      if (!(at < pa || (at === pa && seq < seqs[parent]!))) break;
      h[i] = h[parent]!;
      ats[i] = pa;
      seqs[i] = seqs[parent]!;
      i = parent;
    }
    h[i] = timer;
    ats[i] = at;
    seqs[i] = seq;
    return timer;
  }

  pop(): Timer<T> | undefined {
    const { heap: h, ats, seqs } = this;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    const at = ats.pop()!;
    const seq = seqs.pop()!;
    const n = h.length;
    if (n > 0) {
      // Sift down the last timer from the root: smaller children move up a slot.
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let m = l;
        if (r < n && (ats[r]! < ats[l]! || (ats[r] === ats[l] && seqs[r]! < seqs[l]!))) m = r;
        const ma = ats[m]!;
        if (!(ma < at || (ma === at && seqs[m]! < seq))) break;
        h[i] = h[m]!;
        ats[i] = ma;
        seqs[i] = seqs[m]!;
        i = m;
      }
      h[i] = last;
      ats[i] = at;
      seqs[i] = seq;
    }
    return top;
  }

  /** In firing order, for snapshots. */
  entries(): Timer<T>[] {
    return [...this.heap].sort((a, b) => (less(a, b) ? -1 : 1));
  }

  clear(): void {
    this.heap = [];
    this.ats = [];
    this.seqs = [];
    this.seq = 0;
  }
}

function less<T>(a: Timer<T>, b: Timer<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
