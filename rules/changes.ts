/**
 * Incremental snapshots of the engine (docs/architecture.md#checkpoints). The state is
 * split into entries, one per rule and key string (RuleRunner.entry), a small head
 * (watermark, counts, each rule's fingerprint and alert count) and the pending timers,
 * each timer a row of its own under its sequence number.
 *
 * A capture takes, at one instant, the head and what changed since the previous capture:
 * the entries touched, the timers pushed and the timers that ran. The entries are then
 * encoded a few at a time (`step`), between which events go on being processed: an
 * entry about to change that the capture has not taken yet is taken first
 * (copy-on-write, RuleRunner.beforeChange), so everything a capture yields is the state
 * at its instant, whatever ran between its steps.
 */
import { IdSet } from './id-set.ts';
import type { RuleRunner, RunnerEntry, RunnerHead } from './runner.ts';
import { COPY_CHUNK, type HeapCopy, type Timer } from './timers.ts';

export interface EngineHead {
  version: number;
  watermark: number;
  maxEventTime: number;
  observedFrom: number | null;
  lateEvents: number;
  futureEvents: number;
  /** The timer heap's next sequence number. */
  nextTimerSeq: number;
  /** When rules were last swept, and the slice of rules swept next. */
  lastSweep: number;
  sweepSlice: number;
  /** The rules whose entries and timers the state holds. */
  rules: Record<string, { fingerprint: string; head: RunnerHead }>;
}

/** A pending timer: sequence number (its order among timers of one instant), instant, rule, key, tag. */
export type TimerRow = [number, number, string, string, number];

/**
 * Where a capture puts each entry it takes. `put` must encode the entry at once: its data
 * shares arrays with the live state (undefined: the rule holds nothing under the id any
 * more, a deletion).
 */
export interface EntrySink {
  put(rule: string, id: string, entry: RunnerEntry | undefined): void;
  /**
   * The same, given the runner to write `runner.entry(id)` from without making it
   * (RuleRunner.writeEntry); a sink without it is given `entry(id)`.
   */
  putEntry?(rule: string, id: string, runner: RuleRunner): void;
  /**
   * An entry taken by a step that the runner writes in steps (RuleRunner.entryInParts):
   * begun here, then a step of it (about PART_STEP_BYTES) each `stepParts` until true,
   * at once by `finishParts` (before it changes); `abortParts` drops it. A sink without
   * them is given the entry whole.
   */
  beginParts?(rule: string, id: string, runner: RuleRunner): void;
  stepParts?(): boolean;
  finishParts?(): void;
  abortParts?(): void;
}

/**
 * What the engine records between captures while changes are tracked: the timers pushed
 * and not yet run, by sequence number (in push order, which is sequence order), and the
 * sequence numbers of stored timers that ran. A timer pushed and run between two
 * captures is in neither: rules that push a timer per event (flatline's deadline moves
 * with each event) push and run thousands between two captures (18 k per 10 s in the
 * soak benchmark), and writing each as an insert then a delete held the loop for most
 * of a checkpoint's slices. Both are emptied at each capture; if captures stop (a
 * checkpoint store that keeps failing), they are dropped once they pass `cap` and the
 * next capture is a full one, so neither grows past `cap` entries.
 */
export class ChangeLog {
  pushed = new Map<number, Timer<RuleRunner>>();
  popped: number[] = [];
  constructor(
    /** The next capture takes everything (the stored state is not this engine's). */
    public full: boolean,
    private readonly cap: () => number,
  ) {}

  push(timer: Timer<RuleRunner>): void {
    if (this.full) return;
    this.pushed.set(timer.seq, timer);
    if (this.pushed.size > this.cap()) this.overflow();
  }

  pop(seq: number): void {
    if (this.full) return;
    // Pushed since the last capture: never stored, so nothing to delete either.
    if (this.pushed.delete(seq)) return;
    this.popped.push(seq);
    if (this.popped.length > this.cap()) this.overflow();
  }

  private overflow(): void {
    this.full = true;
    this.pushed = new Map();
    this.popped = [];
  }
}

export interface CaptureSource {
  head: EngineHead;
  runners: RuleRunner[];
  log: ChangeLog;
  /** Every pending timer (a full capture), copied from now on, and that copy once read. */
  timers: () => HeapCopy<RuleRunner>;
  releaseTimers: (copy: HeapCopy<RuleRunner>) => void;
}

/** Ids gathered into one sorted run (a sort of this many is a fraction of a millisecond). */
const RUN = 1024;
/**
 * Sorted runs are copied into arrays of at most this many slots (256 KiB), past V8's
 * largest regular object (128 KiB): a scavenge moves such an array whole, without
 * copying it, where it copied every run gathered since the last scavenge (they all stay
 * alive until merged). A part's first array is a run's size, each next one twice the
 * last, so a small capture allocates about what it gathers. Bounded as the runs were:
 * each id the runner holds (its key caps bound them) once per map it is in.
 */
const CHUNK = 32 * RUN;
/**
 * Chunks of parts merged whole, kept for the next gatherings, by length (RUN times a power
 * of two, up to CHUNK): a fresh 256 KiB array's pages were faulted in by the kernel in the
 * gathering slice that made it (bench/README.md "Snapshots"). A chunk comes back only once
 * its part's merge has handed on every id (the merge empties each slot as it goes, so a
 * kept chunk holds no id), and is kept while the pool holds at most POOL_SLOTS slots in
 * all (8 bytes each: 16 MiB), else dropped. An abandoned capture's chunks are not kept.
 */
const POOL_SLOTS = 1 << 21;

/** Kept chunks by length, at most `bound` slots in all (see POOL_SLOTS). */
export class ChunkPool {
  private readonly kept = new Map<number, string[][]>();
  /** Slots of the chunks kept now (at most `bound`). */
  slots = 0;

  constructor(readonly bound: number) {}

  /** A chunk of `size` slots: a kept one, or a new one. */
  take(size: number): string[] {
    const kept = this.kept.get(size)?.pop();
    if (kept === undefined) return new Array<string>(size);
    this.slots -= size;
    return kept;
  }

  /** A part's chunks, every slot handed on (and emptied) by its merge, kept for reuse. */
  keep(chunks: string[][]): void {
    for (const chunk of chunks) {
      if (this.slots + chunk.length > this.bound) break;
      let list = this.kept.get(chunk.length);
      if (list === undefined) this.kept.set(chunk.length, (list = []));
      list.push(chunk);
      this.slots += chunk.length;
    }
    chunks.length = 0;
  }

  /** The chunks kept now (tests). */
  chunks(): string[][] {
    return [...this.kept.values()].flat();
  }
}

/** The captures' pool (this process's, shared by its engines). */
export const chunkPool = new ChunkPool(POOL_SLOTS);

interface Part {
  runner: RuleRunner;
  /** Incremental: the entries still to take (an id leaves once taken). */
  pending: IdSet | undefined;
  /**
   * Full: the ids taken ahead of the merge (copied before a change), and the last id
   * the merge handed on: the merge goes in key order, so an id at or before it is taken
   * (or was not held at the capture's instant). No set of every id: at 1 M keys, one
   * would rehash 1 M strings at once as it grows (~35 ms on the loop).
   */
  early: Set<string> | undefined;
  last: string | undefined;
  /** The ids to gather: the pending set's, or every id the runner holds (full), and the source gathered now. */
  ids: Iterator<string>[];
  source: number;
  /**
   * The sorted runs gathered so far, each put into the merge's heap as it is gathered
   * (O(log runs)), so no step builds a heap of every run at once (~2,000 runs at 1 M
   * keys: 2.4 ms in one step, growing with the keys). Holds each id of the part once
   * per map it is in; read only once `gathered`.
   */
  merge: RunMerge<string>;
  gathered: boolean;
  /** The array the runs are copied into, and the next free slot in it. */
  chunk: string[];
  used: number;
  /** Every chunk of the part (back to the pool once merged whole). */
  chunks: string[][];
}

/** A sort's scratch: a run is gathered and sorted here, then copied into a chunk. */
const sorting: string[] = [];

/**
 * Up to RUN more of a part's ids into run[0, n), source after source; n. Written by
 * index, the array keeps its RUN slots from one run to the next (emptied, it would grow
 * them again each run).
 */
function gather(p: Part, run: string[]): number {
  let n = 0;
  while (p.source < p.ids.length) {
    const ids = p.ids[p.source]!;
    if (typeof ids.return === 'function') {
      // A generator: leaving a for...of early would close it.
      for (;;) {
        const next = ids.next();
        if (next.done === true) break;
        run[n++] = next.value;
        if (n === RUN) return n;
      }
    } else {
      // A Map's or Set's iterator (no `return`: a for...of left early leaves it where it
      // is, and resumes there).
      for (const id of ids as IterableIterator<string>) {
        run[n++] = id;
        if (n === RUN) return n;
      }
    }
    p.source++;
  }
  return n;
}

/**
 * The items of sorted runs in order: a heap of the runs' heads, O(log runs) a run added
 * and an item taken. Runs are added before the first `next`.
 */
class RunMerge<T> {
  private readonly heap: number[] = [];
  /** Run r is runs[r] from at[r] (its next item) to end[r]. */
  private readonly runs: T[][] = [];
  private readonly at: number[] = [];
  private readonly end: number[] = [];

  constructor(
    private readonly key: (item: T) => string | number = (item) => item as string,
    /** Each item's slot emptied as it is handed on (runs in an array kept for later use). */
    private readonly release = false,
  ) {}

  /** Adds the sorted run items[from, to) (kept where it is, not copied). */
  add(items: T[], from = 0, to = items.length): void {
    if (to <= from) return;
    this.at.push(from);
    this.end.push(to);
    this.push(this.runs.push(items) - 1);
  }

  private head(r: number): string | number {
    return this.key(this.runs[r]![this.at[r]!]!);
  }

  private item(r: number): T {
    return this.runs[r]![this.at[r]!]!;
  }

  private push(r: number): void {
    const h = this.heap;
    let i = h.push(r) - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (this.head(h[up]!) <= this.head(r)) break;
      h[i] = h[up]!;
      i = up;
    }
    h[i] = r;
  }

  next(): T | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const r = h[0]!;
    const id = this.item(r);
    if (this.release) (this.runs[r] as Array<T | undefined>)[this.at[r]!] = undefined;
    this.at[r]!++;
    if (this.at[r]! < this.end[r]!) this.down(r);
    else {
      const last = h.pop()!;
      if (h.length > 0) this.down(last);
    }
    return id;
  }

  /** Puts run `r` at the root and moves it down to its place. */
  private down(r: number): void {
    const h = this.heap;
    const key = this.head(r);
    let i = 0;
    for (;;) {
      const a = 2 * i + 1;
      if (a >= h.length) break;
      const b = a + 1;
      const c = b < h.length && this.head(h[b]!) < this.head(h[a]!) ? b : a;
      if (this.head(h[c]!) >= key) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = r;
  }
}

/**
 * One capture (see the file's comment). Each entry taken goes to `sink` (its encoding,
 * and what holds the entries until they are written, are the sink's).
 */
export class Capture<S extends EntrySink = EntrySink> {
  readonly full: boolean;
  readonly head: EngineHead;
  /**
   * Timers to store (a full capture: every pending timer; incremental: those pushed since
   * the last capture and not run), taken in sequence order by `takeTimers` once `step` is
   * done; and sequence numbers to delete. Timers do not change once pushed.
   */
  readonly timerCount: number;
  private timersTaken = 0;
  /** Incremental: the timers pushed since the last capture and not run, in push (sequence) order. */
  private readonly pushed: Iterator<Timer<RuleRunner>> | undefined;
  /**
   * Full: the heap at the capture's instant, copied a chunk at a time (HeapCopy: in this
   * capture's steps, or copy-on-write as events push and pop timers), each chunk sorted
   * by sequence number in place as a run of the merge, then merged as they are taken.
   * Nothing is copied, sorted or allocated per timer at the instant.
   */
  private timerCopy: HeapCopy<RuleRunner> | undefined;
  private readonly timerMerge: RunMerge<Timer<RuleRunner>> | undefined;
  /** The next chunk of the copy to sort (full). */
  private timerChunk = 0;
  readonly timersRemoved: number[];
  private readonly parts: Part[] = [];
  private part = 0;
  private closed = false;
  /**
   * The entry the sink is encoding in steps (EntrySink.beginParts): one at a time, taken
   * by a step and continued by the next ones; an event about to change it has the rest
   * encoded first, as an entry not yet taken is.
   */
  private open: { runner: RuleRunner; id: string } | undefined;
  /** Entries taken so far. */
  entries = 0;

  constructor(
    private readonly source: CaptureSource,
    readonly sink: S,
  ) {
    const log = source.log;
    this.full = log.full;
    this.head = source.head;
    if (this.full) {
      this.timerCopy = source.timers();
      this.timerCount = this.timerCopy.length;
      this.timerMerge = new RunMerge((t) => t.seq, true);
      this.pushed = undefined;
      this.timersRemoved = [];
    } else {
      // Those pushed since that have not run, in sequence order; the stored ones that ran.
      this.timerCount = log.pushed.size;
      this.pushed = log.pushed.values();
      this.timerMerge = undefined;
      this.timersRemoved = log.popped;
    }
    log.full = false;
    log.pushed = new Map();
    log.popped = [];
    for (const runner of source.runners) {
      const pending = this.full ? undefined : runner.changed!;
      const part: Part = {
        runner,
        pending,
        early: undefined,
        last: undefined,
        ids: this.full ? runner.idSources() : [pending!.values()],
        source: 0,
        gathered: false,
        chunk: [],
        used: 0,
        chunks: [],
        // Each id's slot emptied as it is handed on: a chunk merged whole holds none.
        merge: new RunMerge<string>(undefined, true),
      };
      // The ids touched from now on: a full capture's runner starts over in its own set,
      // an incremental one's in the set the last incremental capture drained (pending).
      if (this.full && runner.changed !== undefined) runner.changed.clear();
      else {
        runner.changed = runner.spareChanged ?? new IdSet();
        runner.spareChanged = undefined;
      }
      runner.beforeChange = this.full
        ? (id) => {
            if (this.open !== undefined) this.finishOpen(runner, id);
            if (part.last !== undefined && id <= part.last) return;
            if (part.early === undefined || !part.early.has(id))
              this.take(part.runner, id, (part.early ??= new Set<string>()));
          }
        : (id) => {
            if (this.open !== undefined) this.finishOpen(runner, id);
            if (part.pending!.delete(id)) this.take(part.runner, id, undefined);
          };
      this.parts.push(part);
    }
  }

  /** The entry being encoded in steps, if it is `runner`'s `id`, encoded to its end now. */
  private finishOpen(runner: RuleRunner, id: string): void {
    const open = this.open!;
    if (open.runner !== runner || open.id !== id) return;
    this.open = undefined;
    this.sink.finishParts!();
  }

  /**
   * Takes an entry; by a step (`inStep`), one the runner writes in steps is begun in the
   * sink (EntrySink.beginParts) and continued by the next steps. Taken on an event's
   * copy-on-write, an entry is encoded whole.
   */
  private take(
    runner: RuleRunner,
    id: string,
    taken: Set<string> | undefined,
    inStep = false,
  ): void {
    taken?.add(id);
    const sink = this.sink;
    if (inStep && sink.beginParts !== undefined && runner.entryInParts(id)) {
      sink.beginParts(runner.spec.name, id, runner);
      this.open = { runner, id };
      this.entries++;
      return;
    }
    if (sink.putEntry !== undefined) sink.putEntry(runner.spec.name, id, runner);
    else sink.put(runner.spec.name, id, runner.entry(id));
    this.entries++;
  }

  /**
   * Takes up to `count` more entries; true once every entry is taken (the capture then no
   * longer copies changes; its timers are then taken by `takeTimers`). A full capture
   * first copies and sorts its timers (sortTimers), a step at a time. A part's ids are
   * then gathered into sorted runs of RUN ids (a step gathers at most RUN·⌈count/64⌉; the
   * step that finds the ids done takes none), then taken merged, in key order: the store
   * then writes each page of its index once per checkpoint, which keeps its commit short
   * (see checkpoint-store.ts).
   */
  step(count: number): boolean {
    if (this.timerCopy !== undefined && this.timerChunk < this.timerCopy.chunks) {
      this.sortTimers(count);
      return false;
    }
    // An entry encoded in steps: one more step of it, and nothing else.
    if (this.open !== undefined) {
      if (this.sink.stepParts!()) this.open = undefined;
      return false;
    }
    let left = count;
    while (this.part < this.parts.length) {
      const p = this.parts[this.part]!;
      if (!p.gathered) {
        // Gathering: bounded per step; a live iterator (ids added later are taken first).
        let budget = RUN * Math.ceil(count / 64);
        while (budget > 0) {
          const run = sorting;
          const n = gather(p, run);
          if (run.length !== n) run.length = n;
          budget -= RUN;
          if (n === 0) {
            p.gathered = true;
            break;
          }
          run.sort();
          if (p.used + n > p.chunk.length) {
            p.chunk = chunkPool.take(Math.min(CHUNK, Math.max(RUN, 2 * p.chunk.length)));
            p.chunks.push(p.chunk);
            p.used = 0;
          }
          const chunk = p.chunk;
          const from = p.used;
          for (let i = 0; i < n; i++) chunk[from + i] = run[i]!;
          p.used = from + n;
          p.merge.add(chunk, from, from + n);
        }
        // The first entries are taken in the next step, after the caller's check of time.
        return false;
      }
      for (;;) {
        const id = p.merge.next();
        if (id === undefined) break;
        if (p.pending !== undefined) {
          if (!p.pending.delete(id)) continue;
          this.take(p.runner, id, undefined, true);
        } else {
          // Runs hold an id once per map it is in: the merge hands its copies on in a row.
          if (id === p.last) continue;
          p.last = id;
          if (p.early !== undefined && p.early.has(id)) continue;
          this.take(p.runner, id, undefined, true);
        }
        // An entry begun in steps ends this step (its steps are the next ones).
        if (--left === 0 || this.open !== undefined) return false;
      }
      // Every id handed on: the part's chunks are empty, for the next gatherings.
      chunkPool.keep(p.chunks);
      p.chunk = [];
      // Every pending id taken (each left the set as it was): the next capture's set.
      if (p.pending !== undefined && p.pending.size === 0) p.runner.spareChanged = p.pending;
      this.part++;
    }
    this.detach();
    return true;
  }

  /**
   * Full: up to RUN·⌈count/64⌉ more of the heap's copy, chunk by chunk (copied now if
   * no write copied it yet), each sorted in place by sequence number and added to the
   * merge as a run: O(log runs) a run, no array per run (the copy is kept by the heap
   * between captures, so no run is copied by a scavenge while it waits to be merged).
   */
  private sortTimers(count: number): void {
    const copy = this.timerCopy!;
    const merge = this.timerMerge!;
    const run = sortingTimers;
    let budget = RUN * Math.ceil(count / 64);
    while (budget > 0 && this.timerChunk < copy.chunks) {
      const c = this.timerChunk++;
      copy.ensure(c);
      const out = copy.out;
      const from = c * COPY_CHUNK;
      const to = Math.min(copy.length, from + COPY_CHUNK);
      const n = to - from;
      for (let i = 0; i < n; i++) run[i] = out[from + i]!;
      if (run.length !== n) run.length = n;
      run.sort(bySeq);
      for (let i = 0; i < n; i++) out[from + i] = run[i]!;
      run.fill(undefined as unknown as Timer<RuleRunner>);
      merge.add(out, from, to);
      budget -= COPY_CHUNK;
    }
  }

  /**
   * Up to `max` more timers to store into into[0, n), in sequence order; n (0 once all
   * are taken). A full capture's are merged from its sorted chunks as they are taken.
   */
  takeTimers(into: Array<Timer<RuleRunner>>, max: number): number {
    let n = 0;
    if (this.timerMerge !== undefined) {
      for (; n < max; n++) {
        const t = this.timerMerge.next();
        if (t === undefined) break;
        into[n] = t;
      }
    } else if (this.pushed !== undefined) {
      for (; n < max; n++) {
        const next = this.pushed.next();
        if (next.done === true) break;
        into[n] = next.value;
      }
    }
    this.timersTaken += n;
    if (this.timersTaken === this.timerCount) this.releaseTimers();
    return n;
  }

  /** Timers not taken yet. */
  get timersLeft(): number {
    return this.timerCount - this.timersTaken;
  }

  /** The most timers copied at once (HeapCopy.maxCopied): none at the capture's instant. */
  get maxTimersCopied(): number {
    return this.timerCopy?.maxCopied ?? this.copiedTimers;
  }

  private copiedTimers = 0;

  private releaseTimers(): void {
    const copy = this.timerCopy;
    if (copy === undefined) return;
    this.copiedTimers = copy.maxCopied;
    this.timerCopy = undefined;
    this.source.releaseTimers(copy);
  }

  /** The runners are no longer watched for changes (every entry taken). */
  private detach(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.parts) p.runner.beforeChange = undefined;
  }

  /** Done with (or abandoned: then call ChangeLog's full): detaches from the runners and the timers. */
  close(): void {
    if (this.open !== undefined) {
      this.open = undefined;
      this.sink.abortParts?.();
    }
    this.detach();
    this.releaseTimers();
  }
}

/** A sort's scratch for timers (a chunk of the heap's copy, sorted then written back). */
const sortingTimers: Array<Timer<RuleRunner>> = [];

function bySeq(a: Timer<RuleRunner>, b: Timer<RuleRunner>): number {
  return a.seq - b.seq;
}

export function timerRow(t: Timer<RuleRunner>): TimerRow {
  return [t.seq, t.at, t.target.spec.name, t.key, t.tag];
}
