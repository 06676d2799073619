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

/** Slots of the heap a copy takes at once (HeapCopy): 8 KiB of pointers, a few microseconds. */
export const COPY_CHUNK = 1024;

/**
 * The heap's timers at one instant (a full capture's, rules/changes.ts), copied a chunk
 * of COPY_CHUNK slots at a time into `out`: by the copy's owner (`ensure`, chunk by
 * chunk), or by the heap just before it writes or drops a slot of a chunk not copied yet
 * (copy-on-write). Whatever is pushed or popped after the instant, `out[0, length)` is
 * then the heap as it was: a chunk is copied whole before its first slot changes. Nothing
 * is copied at the instant (at 110,000 timers the copy was 880 KB at once, and often a
 * scavenge with it).
 *
 * Bounds: `out` is the heap's spare array (TimerHeap.reserveCopies: grown with the heap,
 * so a copy allocates nothing; without it, a copy grows it once for a heap larger than
 * before), holding the references its owner has not released yet (RunMerge releases each
 * as it hands it on; an abandoned copy's are overwritten by the next): at most its
 * length. A write copies at most one chunk per slot it changes (a push or pop changes
 * O(log n) slots); every chunk is copied once.
 */
export class HeapCopy<T> {
  /** Chunks: 0 not copied, 1 copied. */
  private readonly copied: Uint8Array;
  readonly chunks: number;
  private left: number;
  /** The most slots copied in one go (one chunk: by `ensure`, or by a write's copy-on-write). */
  maxCopied = 0;

  constructor(
    private readonly heap: TimerHeap<T>,
    /** The heap's length at the instant. */
    readonly length: number,
    private src: Timer<T>[],
    public out: Timer<T>[],
  ) {
    this.chunks = Math.ceil(length / COPY_CHUNK);
    this.left = this.chunks;
    this.copied = new Uint8Array(this.chunks);
  }

  get done(): boolean {
    return this.left === 0;
  }

  /** Before slot `i` of the heap changes (or goes): its chunk copied, if it is the instant's. */
  before(i: number): void {
    if (i < this.length && this.copied[Math.floor(i / COPY_CHUNK)] === 0) {
      const n = this.copy(Math.floor(i / COPY_CHUNK));
      if (n > this.maxCopied) this.maxCopied = n;
    }
  }

  /** The heap's array was replaced (clear): whatever is left copied from the old one first. */
  replaced(): void {
    let n = 0;
    for (let c = 0; c < this.chunks; c++) if (this.copied[c] === 0) n += this.copy(c);
    if (n > this.maxCopied) this.maxCopied = n;
  }

  /** Chunk `c` (slots from c·COPY_CHUNK) copied, if it is not yet. */
  ensure(c: number): void {
    if (this.copied[c] === 1) return;
    const n = this.copy(c);
    if (n > this.maxCopied) this.maxCopied = n;
  }

  private copy(c: number): number {
    if (this.out.length < this.length) {
      // Grown once for a heap larger than at any copy before (a quarter to spare).
      const out = new Array<Timer<T>>(this.length + (this.length >> 2));
      for (let k = 0; k < this.chunks; k++)
        if (this.copied[k] === 1)
          for (let i = k * COPY_CHUNK; i < Math.min(this.length, (k + 1) * COPY_CHUNK); i++)
            out[i] = this.out[i]!;
      this.out = out;
    }
    const from = c * COPY_CHUNK;
    const to = Math.min(this.length, from + COPY_CHUNK);
    const src = this.src;
    const out = this.out;
    for (let i = from; i < to; i++) out[i] = src[i]!;
    this.copied[c] = 1;
    if (--this.left === 0) this.heap.copied(this);
    return to - from;
  }
}

export class TimerHeap<T> {
  private heap: Timer<T>[] = [];
  /** A copy at an instant being taken (HeapCopy), and the array copies go into. */
  private copying: HeapCopy<T> | undefined;
  private spare: Timer<T>[] = [];
  /**
   * Copies are taken (reserveCopies): the spare array then grows with the heap, on the
   * event path as the heap's own arrays do (to twice the heap's length, so amortized
   * O(1) a push), not in a checkpoint's slice, where allocating 880 KB at once (110,000
   * timers) brought a scavenge into that slice. Bound: at most twice the largest length
   * the heap has had, 8 bytes a slot; it holds references only while a copy is read
   * (released as merged). Not grown while lent to a copy.
   */
  private reserve = false;
  private lent = false;
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

  /**
   * Every pending timer now, in no order, copied in chunks from now on (HeapCopy); one
   * copy at a time (a copy still being taken is finished first). Give `out` back with
   * `release` once read.
   */
  copy(): HeapCopy<T> {
    this.copying?.replaced();
    const out = this.spare;
    this.spare = [];
    this.lent = true;
    const copy = new HeapCopy(this, this.heap.length, this.heap, out);
    if (!copy.done) this.copying = copy;
    return copy;
  }

  /**
   * A copy no longer read (its owner done with it, or abandoned): its array is the next
   * copy's, and it is copied into no more.
   */
  release(copy: HeapCopy<T>): void {
    if (this.copying === copy) this.copying = undefined;
    this.lent = false;
    if (copy.out.length > this.spare.length) this.spare = copy.out;
    copy.out = [];
  }

  /** From now on the array a copy goes into grows with the heap (see `reserve`). */
  reserveCopies(): void {
    this.reserve = true;
    this.growSpare();
  }

  private growSpare(): void {
    if (!this.lent && this.spare.length <= this.heap.length)
      this.spare = new Array<Timer<T>>(2 * this.heap.length + COPY_CHUNK);
  }

  /** Called by a copy once every chunk is copied. */
  copied(copy: HeapCopy<T>): void {
    if (this.copying === copy) this.copying = undefined;
  }

  private insert(timer: Timer<T>): Timer<T> {
    const { heap: h, ats, seqs } = this;
    const at = timer.at;
    const seq = timer.seq;
    let i = h.length;
    const copying = this.copying;
    if (copying !== undefined) {
      // The slots the sift may write: the new one and its ancestors.
      for (let j = i; j > 0; j = (j - 1) >> 1) copying.before(j);
      copying.before(0);
    }
    h.push(timer);
    if (this.reserve && h.length > this.spare.length) this.growSpare();
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
    const copying = this.copying;
    if (copying !== undefined) copying.before(h.length - 1);
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
        if (copying !== undefined) copying.before(i);
        h[i] = h[m]!;
        ats[i] = ma;
        seqs[i] = seqs[m]!;
        i = m;
      }
      if (copying !== undefined) copying.before(i);
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
    this.copying?.replaced();
    this.copying = undefined;
    this.heap = [];
    this.ats = [];
    this.seqs = [];
    this.seq = 0;
  }
}

function less<T>(a: Timer<T>, b: Timer<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
