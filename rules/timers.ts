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
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  peekTime(): number {
    return this.heap.length > 0 ? this.heap[0]!.at : Number.POSITIVE_INFINITY;
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
    const h = this.heap;
    h.push(timer);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
    return timer;
  }

  pop(): Timer<T> | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }

  /** In firing order, for snapshots. */
  entries(): Timer<T>[] {
    return [...this.heap].sort((a, b) => (less(a, b) ? -1 : 1));
  }

  clear(): void {
    this.heap = [];
    this.seq = 0;
  }
}

function less<T>(a: Timer<T>, b: Timer<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
