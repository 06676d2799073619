/**
 * `npm run bench -- snapshot [--sizes 10000,100000,1000000] [--json]`: rule snapshots
 * against state size, the incremental checkpoint store (pipeline/checkpoint-store.ts)
 * beside the JSON snapshot earlier versions wrote, at the same sizes in the same run.
 *
 * Each size runs in a child process of its own (so RSS is that size's): an engine with a
 * frequency rule keyed by a high-cardinality field (N keys) and a flatline rule keyed by
 * host (N/10 keys), one event per key. Measured for each: the longest time one snapshot
 * holds the event loop (JSON: all of it; incremental: its longest slice, including the
 * capture), the whole snapshot's time, for the first (full) snapshot and for one after
 * 1% of the keys changed; bytes on disk; restore time; RSS.
 */
import { spawn } from 'node:child_process';
import {
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { CheckpointStore, EntryBatch, type WriteStats } from '../pipeline/checkpoint-store.ts';
import type { Event } from '../ingest/model/index.ts';
import { Engine, type EngineSnapshot, type RuleSpec } from '../rules/index.ts';
import { IdSet } from '../rules/id-set.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function rules(): RuleSpec[] {
  const base = { realert: 0, labels: {}, actions: [], enabled: true };
  return [
    {
      ...base,
      name: 'user-burst',
      type: 'frequency',
      num_events: 50,
      timeframe: 3_600_000,
      query_key: ['user.id'],
      filter: { all: [{ fact: 'log.level', operator: 'equal', value: 'error' }] },
    },
    {
      ...base,
      name: 'host-silent',
      type: 'flatline',
      threshold: 1,
      timeframe: 3_600_000,
      expect: [],
      forget_keys: false,
      query_key: ['host.name'],
      realert: 3_600_000,
    },
  ] as unknown as RuleSpec[];
}

function newEngine(keys: number): Engine {
  return new Engine(rules(), {
    allowedLatenessMs: 5_000,
    observedFrom: T0,
    maxKeysPerRule: keys,
    onAlert: () => {},
  });
}

function event(i: number, key: number, keys: number): Event {
  return {
    '@timestamp': T0 + i,
    'user.id': `u${key}`,
    'host.name': `h${key % Math.max(1, Math.floor(keys / 10))}`,
    'log.level': 'error',
    message: 'payment failed',
  };
}

interface One {
  keys: number;
  entries: number;
  timers: number;
  rss_mb: number;
  json: { pause_ms: number; bytes: number; restore_ms: number; rss_after_restore_mb: number };
  /**
   * Recording the ids touched between captures (the runner's `changed`): the longest
   * single add while `keys` distinct ids go in, into a plain Set and into the IdSet
   * that replaced it (rules/id-set.ts), three rounds each, alternating.
   */
  tracking: {
    set_longest_add_ms: number[];
    id_set_longest_add_ms: number[];
    /** The whole loop of adds, ns per add (the timing around each add included). */
    set_ns_per_add: number[];
    id_set_ns_per_add: number[];
  };
  incremental: {
    full: Pause;
    one_percent: Pause;
    bytes: number;
    restore_ms: number;
    rss_after_restore_mb: number;
  };
  /**
   * What a metrics scrape reads of the rules (drover_rule_keys), three times each, ms:
   * Engine.keyCounts() (the maps' sizes), and stats() (every key walked for its bytes:
   * what /v1/rules answers, and what scrapes read before 2026-12-05).
   */
  scrape: { stats_ms: number[]; key_counts_ms: number[] };
  /** The same heap taking events for as long as the full checkpoint took (processing). */
  control: {
    events: number;
    longest_batch_ms: number;
    loop_delay_max_ms: number;
    loop_delay_p99_ms: number;
  };
}

interface Pause {
  /** Longest time the loop was held at once (capture or a slice), wall time. */
  max_pause_ms: number;
  /**
   * The same less the time the loop's thread waited for a core in it (Linux, from
   * /proc/thread-self/schedstat read before and after each slice, outside it; null
   * elsewhere): the longest the snapshot's own work held the loop, on the CPU or blocked.
   * What max_pause_ms holds beyond it is the OS running another thread (another process,
   * the store's writer, V8's helpers) while the slice had the loop: what it would have
   * done to any turn of the loop, snapshot or not (the control's batches below).
   */
  max_own_ms: number | null;
  /** The loop's wait for a core, summed over the capture and the slices (null as above). */
  waited_ms: number | null;
  /** On-loop time of the whole snapshot (all slices), and wall time until committed. */
  on_loop_ms: number;
  wall_ms: number;
  slices: number;
  entries: number;
  /** Pending timers written (a full checkpoint: every one the engine holds). */
  timers: number;
  /**
   * The loop's longest delay while the snapshot ran, from perf_hooks'
   * monitorEventLoopDelay (1 ms timer): the slices and what ran between them (GC tasks,
   * the OS taking the CPU away), which max_pause_ms does not see.
   */
  loop_delay_max_ms: number;
  loop_delay_p99_ms: number;
}

const round = (ms: number) => Math.round(ms * 100) / 100;
const rssMb = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const gc = () => (globalThis as { gc?: () => void }).gc?.();

/**
 * `--trace` (SNAPSHOT_TRACE=1 in each size's process): each checkpoint's slices over
 * TRACE_MS, the gaps between two slices over TRACE_MS (what held the loop outside the
 * slices), and the `gc` performance entries overlapping either, to stderr, in one clock
 * (performance.now()); with each, what the main thread's scheduler counters say of it
 * (ThreadCounters): a slice that waited for a core was the OS's, one that ran throughout
 * (no switch) was its own CPU.
 */
const TRACE = process.env.SNAPSHOT_TRACE === '1';
const TRACE_MS = 4;

/** The store's slice length (`--slice-ms`; the store's default, 2 ms, unless given). */
let sliceMs = 2;

/**
 * The main thread's counters from Linux (read outside the timed slices; printed with
 * `--trace`, and the wait for a core in every run, for max_own_ms):
 * `/proc/thread-self/schedstat`'s run-queue wait (ns, accurate at each read: a wait is
 * added when the thread gets its core back; its run time there is only as fresh as the
 * scheduler's last tick, so it is not used), `/proc/thread-self/sched`'s voluntary and
 * involuntary switches, and the process's CPU (every thread: V8's helpers, SQLite's
 * fold worker) from `process.cpuUsage`. A slice of wall time W that waited Q for a core
 * and made no voluntary switch ran W - Q on the CPU; with a voluntary switch it also
 * blocked (a lock, I/O, V8's helper threads joined) for part of W - Q.
 *
 * What a blocked slice blocked on, told apart by: the main thread's page faults, minor and
 * major (`/proc/thread-self/stat`; a major one waited for the disk), its read and write
 * system calls and the bytes it sent to the disk (`/proc/thread-self/io`), and the
 * process's (every thread's) faults, switches and block I/O from `process.resourceUsage`.
 */
class ThreadCounters {
  private readonly stat = openSync('/proc/thread-self/schedstat', 'r');
  private readonly sched = openSync('/proc/thread-self/sched', 'r');
  private readonly threadStat = openSync('/proc/thread-self/stat', 'r');
  private readonly io = openSync('/proc/thread-self/io', 'r');
  private readonly buf = Buffer.alloc(4096);
  /**
   * At the last read: wait ms, voluntary and involuntary switches, process CPU ms; the
   * thread's minor and major faults, read and write calls, bytes read from and written
   * to storage; the process's minor and major faults, voluntary and involuntary
   * switches, block reads and writes (COUNTERS names them).
   */
  readonly now = new Float64Array(COUNTERS.length);

  read(): Float64Array {
    // The io file first: its own read (counted in it) and the reads after it, this
    // method's own, are taken off the next slice's count of read calls (READS_OWN).
    let n = readSync(this.io, this.buf, 0, this.buf.length, 0);
    const io = this.buf.toString('latin1', 0, n);
    this.now[6] = field(io, SYSCR);
    this.now[7] = field(io, SYSCW);
    this.now[8] = field(io, READ_BYTES);
    this.now[9] = field(io, WRITE_BYTES);
    n = readSync(this.stat, this.buf, 0, this.buf.length, 0);
    const stat = this.buf.toString('latin1', 0, n).split(' ');
    this.now[0] = Number(stat[1]) / 1e6;
    n = readSync(this.sched, this.buf, 0, this.buf.length, 0);
    const sched = this.buf.toString('latin1', 0, n);
    this.now[1] = field(sched, VOLUNTARY);
    this.now[2] = field(sched, INVOLUNTARY);
    n = readSync(this.threadStat, this.buf, 0, this.buf.length, 0);
    // Fields after the command's closing parenthesis: state is the 3rd field, minflt the
    // 10th, majflt the 12th.
    const text = this.buf.toString('latin1', 0, n);
    const after = text.slice(text.lastIndexOf(')') + 2).split(' ');
    this.now[4] = Number(after[7]);
    this.now[5] = Number(after[9]);
    const cpu = process.cpuUsage();
    this.now[3] = (cpu.user + cpu.system) / 1e3;
    const usage = process.resourceUsage();
    this.now[10] = usage.minorPageFault;
    this.now[11] = usage.majorPageFault;
    this.now[12] = usage.voluntaryContextSwitches;
    this.now[13] = usage.involuntaryContextSwitches;
    this.now[14] = usage.fsRead;
    this.now[15] = usage.fsWrite;
    return this.now;
  }
}

const SYSCR = /syscr\s*:\s*(\d+)/;
const SYSCW = /syscw\s*:\s*(\d+)/;
const READ_BYTES = /\nread_bytes\s*:\s*(\d+)/;
const WRITE_BYTES = /\nwrite_bytes\s*:\s*(\d+)/;
const VOLUNTARY = /nr_voluntary_switches\s*:\s*(\d+)/;
const INVOLUNTARY = /nr_involuntary_switches\s*:\s*(\d+)/;
const field = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);

/** ThreadCounters' fields, in order. */
const COUNTERS = [
  'waitMs',
  'voluntary',
  'involuntary',
  'processCpuMs',
  'minflt',
  'majflt',
  'readCalls',
  'writeCalls',
  'readBytes',
  'writeBytes',
  'pMinflt',
  'pMajflt',
  'pVoluntary',
  'pInvoluntary',
  'pFsRead',
  'pFsWrite',
] as const;
/** Read calls ThreadCounters.read makes from its read of the io file on (that one counted). */
const READS_OWN = 4;

/** A file's size in bytes, 0 when there is none. */
function sizeOf(path: string | undefined): number {
  if (path === undefined) return 0;
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** VmRSS of this process, in MB (/proc/self/status). */
function vmRssMb(): number {
  const kb = /VmRSS:\s*(\d+)/.exec(readFileSync('/proc/self/status', 'latin1'))?.[1];
  return Number(kb) / 1024;
}

/** A slice (or a control's batch) as traced: its counters' changes over it. */
interface Traced {
  began: number;
  ms: number;
  commitMs: number;
  entries: number;
  /** Main thread: ms waiting for a core; voluntary, involuntary switches. Process CPU ms. */
  waitMs: number;
  voluntary: number;
  involuntary: number;
  processCpuMs: number;
  /** Every counter's change over the slice (COUNTERS' order). */
  d: Float64Array;
  /** Slices over TRACE_MS: RSS (MB), the store's file and write-ahead log (bytes) after it. */
  rssMb: number;
  dbBytes: number;
  walBytes: number;
  /** The same over the gap before it (from the end of the one before). */
  gapWaitMs: number;
  gapVoluntary: number;
  gapProcessCpuMs: number;
}

/** Records Traced slices from the counters read before and after each. */
class Tracer {
  readonly slices: Traced[] = [];
  private readonly counters = process.platform === 'linux' ? new ThreadCounters() : undefined;
  private readonly before = new Float64Array(COUNTERS.length);
  private readonly after = new Float64Array(COUNTERS.length);

  /** `db`: the store's file, whose size (and its log's) a long slice is traced with. */
  constructor(private readonly db?: string) {}

  start(): void {
    if (this.counters === undefined) return;
    this.counters.read();
    this.before.set(this.counters.now);
  }

  end(began: number, ms: number, commitMs: number, entries: number): void {
    if (this.counters === undefined) return;
    const now = this.counters.read();
    const b = this.before;
    const a = this.after;
    const first = this.slices.length === 0;
    const d = new Float64Array(COUNTERS.length);
    for (let i = 0; i < d.length; i++) d[i] = now[i]! - b[i]!;
    d[6] = d[6]! - READS_OWN;
    const long = ms > TRACE_MS;
    this.slices.push({
      began,
      ms,
      commitMs,
      entries,
      waitMs: d[0]!,
      voluntary: d[1]!,
      involuntary: d[2]!,
      processCpuMs: d[3]!,
      d,
      rssMb: long ? vmRssMb() : 0,
      dbBytes: long ? sizeOf(this.db) : 0,
      walBytes: long ? sizeOf(this.db === undefined ? undefined : `${this.db}-wal`) : 0,
      gapWaitMs: first ? 0 : b[0]! - a[0]!,
      gapVoluntary: first ? 0 : b[1]! - a[1]!,
      gapProcessCpuMs: first ? 0 : b[3]! - a[3]!,
    });
    a.set(now);
  }
}

/** A traced slice's faults, I/O and the process's counters, for its line. */
function counters(s: Traced): string {
  const d = s.d;
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  const files =
    s.dbBytes > 0 || s.walBytes > 0 ? `; db ${mb(s.dbBytes)} MB, wal ${mb(s.walBytes)} MB` : '';
  const rss = s.rssMb > 0 ? `; rss ${s.rssMb.toFixed(0)} MB` : '';
  return `thread: faults ${d[4]}/${d[5]} major, calls ${d[6]}r/${d[7]}w, disk ${d[8]! / 1024}/${d[9]! / 1024} KB; process: faults ${d[10]}/${d[11]} major, switches ${d[12]}v/${d[13]}i, block io ${d[14]}/${d[15]}${rss}${files}`;
}

/**
 * What held the loop past TRACE_MS in a slice: the OS, when the slice is under TRACE_MS
 * without its wait for a core; blocked, when it is not and the thread switched away by
 * itself; else its own CPU.
 */
function cause(ms: number, waitMs: number, voluntary: number): 'os' | 'blocked' | 'cpu' {
  if (ms - waitMs <= TRACE_MS) return 'os';
  return voluntary > 0 ? 'blocked' : 'cpu';
}

function trace(label: string, slices: Traced[], gcs: PerformanceEntry[]): void {
  const kinds: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
  const during = (from: number, to: number) =>
    gcs
      .filter((g) => g.startTime < to && g.startTime + g.duration > from)
      .map(
        (g) =>
          `${kinds[(g as unknown as { detail: { kind: number } }).detail?.kind] ?? '?'} ${g.duration.toFixed(2)}@${(g.startTime - from).toFixed(2)}`,
      )
      .join(' ');
  const out: string[] = [];
  const byKind = new Map<string, number[]>();
  for (const g of gcs) {
    const k = kinds[(g as unknown as { detail: { kind: number } }).detail?.kind] ?? '?';
    (byKind.get(k) ?? byKind.set(k, []).get(k)!).push(g.duration);
  }
  for (const [k, d] of byKind) {
    d.sort((a, b) => a - b);
    out.push(
      `${label} gc ${k}: ${d.length}, median ${d[d.length >> 1]!.toFixed(2)}, max ${d[d.length - 1]!.toFixed(2)}, total ${d.reduce((a, b) => a + b, 0).toFixed(2)} ms`,
    );
  }
  // The capture (slice #0 of a checkpoint) whatever its length: its own work is the instant's.
  const first = slices[0];
  if (first !== undefined && label !== 'control')
    out.push(
      `${label} capture ${first.ms.toFixed(2)} ms [waited ${first.waitMs.toFixed(2)}, switches ${first.voluntary}v/${first.involuntary}i, process cpu ${first.processCpuMs.toFixed(2)}; ${counters(first)}] gc: ${during(first.began, first.began + first.ms)}`,
    );
  const over = { os: 0, blocked: 0, cpu: 0 };
  let longestOwn = 0;
  let waited = 0;
  let wall = 0;
  for (let i = 0; i < slices.length; i++) {
    const s = slices[i]!;
    wall += s.ms;
    waited += s.waitMs;
    // The slice's time less its wait for a core: on the CPU, or blocked.
    const own = s.ms - s.waitMs;
    if (own > longestOwn) longestOwn = own;
    if (s.ms > TRACE_MS) {
      const c = cause(s.ms, s.waitMs, s.voluntary);
      over[c]++;
      out.push(
        `${label} slice #${i} @${s.began.toFixed(2)} ${s.ms.toFixed(2)} ms [${c}: waited ${s.waitMs.toFixed(2)}, switches ${s.voluntary}v/${s.involuntary}i, process cpu ${s.processCpuMs.toFixed(2)}; ${counters(s)}] (commit ${s.commitMs.toFixed(2)}, entries ${s.entries}) gc: ${during(s.began, s.began + s.ms)}`,
      );
    }
    if (i > 0) {
      const end = slices[i - 1]!.began + slices[i - 1]!.ms;
      if (s.began - end > TRACE_MS)
        out.push(
          `${label} gap before #${i} ${(s.began - end).toFixed(2)} ms [waited ${s.gapWaitMs.toFixed(2)}, voluntary ${s.gapVoluntary}, process cpu ${s.gapProcessCpuMs.toFixed(2)}] gc: ${during(end, s.began)}`,
        );
    }
  }
  // The slices' COMMITs (a full checkpoint commits every slice, an incremental one once).
  const commits = slices
    .map((s) => s.commitMs)
    .filter((ms) => ms > 0)
    .sort((a, b) => a - b);
  if (commits.length > 0)
    out.push(
      `${label} commits ${commits.length}: median ${commits[commits.length >> 1]!.toFixed(2)}, p99 ${commits[Math.floor(commits.length * 0.99)]!.toFixed(2)}, max ${commits[commits.length - 1]!.toFixed(2)} ms, over 1 ms ${commits.filter((ms) => ms > 1).length}`,
    );
  // Over every slice: the main thread's faults and I/O, the process's major faults.
  const sum = new Float64Array(COUNTERS.length);
  for (const s of slices) for (let k = 0; k < sum.length; k++) sum[k] = sum[k]! + s.d[k]!;
  out.push(
    `${label} totals: thread faults ${sum[4]}/${sum[5]} major, calls ${sum[6]}r/${sum[7]}w, disk ${sum[8]! / 1024}/${sum[9]! / 1024} KB; process faults ${sum[10]}/${sum[11]} major, switches ${sum[12]}v/${sum[13]}i`,
  );
  // performance.now() to CLOCK_MONOTONIC (an external trace's clock, e.g. `perf -k mono`).
  out.push(
    `${label} clock: monotonic ms = performance.now() + ${(Number(process.hrtime.bigint()) / 1e6 - performance.now()).toFixed(3)}`,
  );
  out.push(
    `${label} slices ${slices.length}: over ${TRACE_MS} ms ${over.os + over.blocked + over.cpu} (os ${over.os}, blocked ${over.blocked}, cpu ${over.cpu}); longest less its wait ${longestOwn.toFixed(2)} ms; waited ${waited.toFixed(1)} of ${wall.toFixed(1)} ms`,
  );
  process.stderr.write(`${out.join('\n')}\n`);
}

async function incremental(
  engine: Engine,
  store: CheckpointStore,
  offset: number,
  label = '',
): Promise<Pause> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  // The monitor's first tick starts its clock: a block before it (the capture) is not seen.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const gcs: PerformanceEntry[] = [];
  const observer = TRACE ? new PerformanceObserver((l) => gcs.push(...l.getEntries())) : undefined;
  observer?.observe({ entryTypes: ['gc'] });
  const tracer = new Tracer(store.path);
  tracer.start();
  const began = performance.now();
  const capture = engine.capture(new EntryBatch());
  const captureMs = performance.now() - began;
  tracer.end(began, captureMs, 0, 0);
  const stats: WriteStats = await store.write(
    capture,
    { 'logs/0': offset },
    {
      sliceMs,
      beforeSlice: () => tracer.start(),
      onSlice: (b, ms, c) => tracer.end(b, ms, c, capture.entries),
    },
  );
  const wall = performance.now() - began;
  delay.disable();
  if (observer !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    observer.disconnect();
    trace(label, tracer.slices, gcs);
  }
  // The write-ahead log is folded by a worker after the commit; the next interval's
  // checkpoint starts once it is done, as between two intervals.
  await store.folded();
  const traced = tracer.slices;
  return {
    max_pause_ms: round(Math.max(captureMs, stats.maxPauseMs)),
    max_own_ms: traced.length === 0 ? null : round(Math.max(...traced.map((t) => t.ms - t.waitMs))),
    waited_ms: traced.length === 0 ? null : round(traced.reduce((a, t) => a + t.waitMs, 0)),
    on_loop_ms: round(captureMs + stats.totalMs),
    wall_ms: round(wall),
    slices: stats.slices,
    entries: stats.entries,
    timers: stats.timers,
    loop_delay_max_ms: round(delay.max / 1e6),
    loop_delay_p99_ms: round(delay.percentile(99) / 1e6),
  };
}

/**
 * The control for loop_delay_max_ms: the same heap taking events instead of writing a
 * checkpoint, in batches of 256 with the loop turning between them (as ingest hands the
 * engine its batches), for `ms` of wall time. What the loop's delay is here (scavenges of
 * this heap, the OS) is not the checkpoint's.
 */
async function processing(engine: Engine, keys: number, from: number, ms: number) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  await new Promise((resolve) => setTimeout(resolve, 5));
  const gcs: PerformanceEntry[] = [];
  const observer = TRACE ? new PerformanceObserver((l) => gcs.push(...l.getEntries())) : undefined;
  observer?.observe({ entryTypes: ['gc'] });
  const tracer = new Tracer();
  const began = performance.now();
  let longest = 0;
  let n = 0;
  while (performance.now() - began < ms) {
    tracer.start();
    const b = performance.now();
    for (let i = 0; i < 256; i++, n++) engine.process(event(from + n, (n * 7919) % keys, keys));
    const took = performance.now() - b;
    longest = Math.max(longest, took);
    tracer.end(b, took, 0, n);
    await new Promise((resolve) => setImmediate(resolve));
  }
  delay.disable();
  if (observer !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    observer.disconnect();
    trace('control', tracer.slices, gcs);
  }
  return {
    events: n,
    longest_batch_ms: round(longest),
    loop_delay_max_ms: round(delay.max / 1e6),
    loop_delay_p99_ms: round(delay.percentile(99) / 1e6),
  };
}

function fileBytes(path: string): number {
  let total = 0;
  for (const p of [path, `${path}-wal`]) {
    try {
      total += statSync(p).size;
    } catch {
      // no such file
    }
  }
  return total;
}

/** One size, in this process. */
/** The longest single `add` of `keys` distinct ids (as the bench's keys, `u<k>`). */
function longestAdd(set: { add(id: string): unknown }, keys: number): [number, number] {
  let longest = 0;
  const start = performance.now();
  for (let k = 0; k < keys; k++) {
    const id = `u${k}`;
    const began = performance.now();
    set.add(id);
    const took = performance.now() - began;
    if (took > longest) longest = took;
  }
  return [round(longest), Math.round(((performance.now() - start) * 1e6) / keys)];
}

async function one(keys: number): Promise<One> {
  const tracking: One['tracking'] = {
    set_longest_add_ms: [],
    id_set_longest_add_ms: [],
    set_ns_per_add: [],
    id_set_ns_per_add: [],
  };
  for (let turn = 0; turn < 3; turn++) {
    const [setLongest, setNs] = longestAdd(new Set<string>(), keys);
    tracking.set_longest_add_ms.push(setLongest);
    tracking.set_ns_per_add.push(setNs);
    gc();
    const [idsLongest, idsNs] = longestAdd(new IdSet(), keys);
    tracking.id_set_longest_add_ms.push(idsLongest);
    tracking.id_set_ns_per_add.push(idsNs);
    gc();
  }
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-snapshot-'));
  try {
    const engine = newEngine(keys);
    engine.trackChanges(true);
    for (let k = 0; k < keys; k++) engine.process(event(k, k, keys));
    gc();
    const rss = rssMb();
    const stats = engine.stats();
    const scrape: One['scrape'] = { stats_ms: [], key_counts_ms: [] };
    for (let t = 0; t < 3; t++) {
      let at = performance.now();
      engine.stats();
      scrape.stats_ms.push(round(performance.now() - at));
      at = performance.now();
      engine.keyCounts();
      scrape.key_counts_ms.push(round(performance.now() - at));
    }

    // Before: the whole state as JSON, written synchronously (pipeline/checkpoint.ts).
    const jsonPath = join(dir, 'rules-snapshot.json');
    let began = performance.now();
    const text = JSON.stringify({
      engine: engine.snapshot(),
      offsets: { 'logs/0': keys },
      at: Date.now(),
    });
    writeFileSync(`${jsonPath}.tmp`, text);
    renameSync(`${jsonPath}.tmp`, jsonPath);
    const jsonPause = performance.now() - began;
    const jsonBytes = Buffer.byteLength(text);

    // After: the checkpoint store, full then incremental.
    const storePath = join(dir, 'rules-state.db');
    const store = new CheckpointStore(storePath);
    // The writer thread started before what is measured (the first write would start it).
    await store.startWriter();
    const full = await incremental(engine, store, keys, 'full');
    // 1% of the keys change (a new event each), as between two snapshot intervals.
    const changed = Math.max(1, Math.floor(keys / 100));
    for (let j = 0; j < changed; j++) engine.process(event(keys + j, (j * 7919) % keys, keys));
    const onePercent = await incremental(engine, store, keys + changed, '1%');
    store.close();
    const control = await processing(engine, keys, keys + changed, Math.min(full.wall_ms, 15_000));
    const storeBytes = fileBytes(storePath);

    // Restore times, each into a fresh engine (the previous one dropped first).
    const restoreJson = () => {
      const t = performance.now();
      const snapshot = (JSON.parse(readFileSync(jsonPath, 'utf8')) as { engine: EngineSnapshot })
        .engine;
      const e = newEngine(keys);
      e.restore(snapshot);
      return { ms: performance.now() - t, engine: e };
    };
    const restoreStore = () => {
      const t = performance.now();
      const s = new CheckpointStore(storePath);
      const e = newEngine(keys);
      e.restoreChanges(s.read()!);
      s.close();
      return { ms: performance.now() - t, engine: e };
    };
    let r1: { ms: number; engine: Engine } | undefined = restoreJson();
    gc();
    const rssJson = rssMb();
    const jsonRestore = r1.ms;
    r1 = undefined;
    gc();
    let r2: { ms: number; engine: Engine } | undefined = restoreStore();
    gc();
    const rssStore = rssMb();
    const storeRestore = r2.ms;
    r2 = undefined;
    began = performance.now();
    return {
      keys: stats.reduce((n, s) => n + s.keys, 0),
      entries: full.entries,
      timers: full.timers,
      rss_mb: rss,
      tracking,
      json: {
        pause_ms: round(jsonPause),
        bytes: jsonBytes,
        restore_ms: round(jsonRestore),
        rss_after_restore_mb: rssJson,
      },
      incremental: {
        full,
        one_percent: onePercent,
        bytes: storeBytes,
        restore_ms: round(storeRestore),
        rss_after_restore_mb: rssStore,
      },
      scrape,
      control,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function child(keys: number, slice: string[]): Promise<One> {
  const script = fileURLToPath(new URL('./index.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        ...process.execArgv,
        '--expose-gc',
        '--max-old-space-size=8192',
        script,
        'snapshot',
        '--one',
        String(keys),
        ...slice,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`the ${keys}-key run exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as One);
    });
  });
}

/**
 * `--large-entry [values]`: one key's entry a sender can make large, alone: a
 * cardinality key holding `values` distinct values of 1,000 characters (default 10,000,
 * the kind's cap: ~10 MB encoded), beside 1,000 small keys. A full checkpoint, then one
 * after every value was seen again (the entry rewritten whole), each in the store's
 * slices; for each, the longest slice, the slice count and, where the store reports them,
 * the bytes written between two checks of its clock, the entry's encoded size and the
 * most bytes one step of the capture encoded.
 */
async function largeEntry(values: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-large-'));
  try {
    const base = { realert: 0, labels: {}, actions: [], enabled: true };
    const engine = new Engine(
      [
        {
          ...base,
          name: 'distinct-users',
          type: 'cardinality',
          cardinality_field: 'user.id',
          max_cardinality: 1_000_000,
          timeframe: 3_600_000,
          query_key: ['host.name'],
        },
      ] as unknown as RuleSpec[],
      { allowedLatenessMs: 5_000, observedFrom: T0, onAlert: () => {} },
    );
    engine.trackChanges(true);
    const at = (i: number) => T0 + i;
    const user = (i: number) => `user-${i}-`.padEnd(1_000, 'x');
    let t = 0;
    for (let i = 0; i < values; i++)
      engine.process({ '@timestamp': at(t++), 'host.name': 'big', 'user.id': user(i) });
    for (let k = 0; k < 1_000; k++)
      engine.process({ '@timestamp': at(t++), 'host.name': `h${k}`, 'user.id': 'u' });
    const store = new CheckpointStore(join(dir, 'rules-state.db'));
    await store.startWriter();
    const once = async () => {
      const began = performance.now();
      const capture = engine.capture(new EntryBatch());
      const captureMs = performance.now() - began;
      const stats = await store.write(capture, { 'logs/0': t }, { sliceMs });
      await store.folded();
      const own = stats as Partial<{
        maxBytesUnchecked: number;
        maxEntryBytes: number;
        maxStepBytes: number;
      }>;
      return {
        max_pause_ms: round(Math.max(captureMs, stats.maxPauseMs)),
        on_loop_ms: round(captureMs + stats.totalMs),
        slices: stats.slices,
        bytes: stats.bytes,
        max_bytes_unchecked: own.maxBytesUnchecked ?? null,
        max_entry_bytes: own.maxEntryBytes ?? null,
        max_step_bytes: own.maxStepBytes ?? null,
      };
    };
    const full = await once();
    for (let i = 0; i < values; i++)
      engine.process({ '@timestamp': at(t++), 'host.name': 'big', 'user.id': user(i) });
    const rewritten = await once();
    store.close();
    return { values, full, rewritten };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function snapshotBench(args: string[]): Promise<number> {
  const sliceAt = args.indexOf('--slice-ms');
  const slice = sliceAt >= 0 ? ['--slice-ms', args[sliceAt + 1]!] : [];
  if (sliceAt >= 0) sliceMs = Number(args[sliceAt + 1]);
  if (!(sliceMs > 0)) throw new Error('--slice-ms: a number of ms above 0');
  const largeAt = args.indexOf('--large-entry');
  if (largeAt >= 0) {
    const n = Number(args[largeAt + 1]);
    process.stdout.write(`${JSON.stringify(await largeEntry(n > 0 ? n : 10_000))}\n`);
    return 0;
  }
  const oneAt = args.indexOf('--one');
  if (oneAt >= 0) {
    process.stdout.write(`${JSON.stringify(await one(Number(args[oneAt + 1])))}\n`);
    return 0;
  }
  const sizesAt = args.indexOf('--sizes');
  const sizes =
    sizesAt >= 0 ? args[sizesAt + 1]!.split(',').map(Number) : [10_000, 100_000, 1_000_000];
  const results: One[] = [];
  for (const size of sizes) results.push(await child(size, slice));
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(results)}\n`);
    return 0;
  }
  const ratio = (a: number, b: number) =>
    b === 0 ? '-' : `${(a / b).toFixed(a / b < 10 ? 2 : 0)}×`;
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
  const lines = [
    '| keys held | JSON: loop pause | incremental full: longest pause, own (on loop, wall) | after 1% changed: longest pause, own (on loop, wall) | pause 1% vs JSON | bytes JSON / store | restore JSON / store | RSS state, after restore JSON / store | loop delay max full / 1% / taking events | tracking: longest add, Set / IdSet |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of results) {
    const i = r.incremental;
    lines.push(
      `| ${r.keys.toLocaleString('en')} | ${r.json.pause_ms} ms | ${i.full.max_pause_ms}, ${i.full.max_own_ms ?? '-'} ms (${i.full.on_loop_ms}, ${i.full.wall_ms} ms) | ${i.one_percent.max_pause_ms}, ${i.one_percent.max_own_ms ?? '-'} ms (${i.one_percent.on_loop_ms}, ${i.one_percent.wall_ms} ms; ${i.one_percent.entries} entries) | ${ratio(i.one_percent.max_pause_ms, r.json.pause_ms)} | ${mb(r.json.bytes)} / ${mb(i.bytes)} (${ratio(i.bytes, r.json.bytes)}) | ${r.json.restore_ms} / ${i.restore_ms} ms (${ratio(i.restore_ms, r.json.restore_ms)}) | ${r.rss_mb} MB; ${r.json.rss_after_restore_mb} / ${i.rss_after_restore_mb} MB | ${i.full.loop_delay_max_ms} / ${i.one_percent.loop_delay_max_ms} / ${r.control.loop_delay_max_ms} ms | ${Math.max(...r.tracking.set_longest_add_ms)} / ${Math.max(...r.tracking.id_set_longest_add_ms)} ms |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
