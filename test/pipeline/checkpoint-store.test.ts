import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { deserialize, serialize } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Event } from '../../ingest/model/index.ts';
import { openSqlite } from '../../ingest/storage/sqlite.ts';
import { CheckpointStore, EntryBatch, PART_BYTES } from '../../pipeline/checkpoint-store.ts';
import { writerThreads } from '../../pipeline/checkpoint-writer.ts';
import { BACKGROUND_PRIORITY } from '../../pipeline/thread-priority.ts';
import type { RuleRunner } from '../../rules/runner.ts';
import { type Alert, Engine, type EngineSnapshot, type RuleSpec } from '../../rules/index.ts';
import type { Capture } from '../../rules/changes.ts';
import type { Timer } from '../../rules/timers.ts';
import { RULES, stream } from '../rules/fleet-state.ts';
import { ev, m, rule, s, T0 } from '../rules/helpers.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function storePath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drover-ckpt-'));
  dirs.push(dir);
  return join(dir, 'rules-state.db');
}

function engine(rules: RuleSpec[], alerts: Map<string, Alert>): Engine {
  return new Engine(rules, {
    allowedLatenessMs: s(2),
    observedFrom: T0,
    onAlert: (a) => alerts.set(a.id, a),
  });
}

/**
 * A frequency rule by host over an hour, firing at `numEvents`, its changes tracked,
 * with `hosts` keys (h0, h1...) seen once each.
 */
function hostEngine(numEvents: number, hosts: number): { rules: RuleSpec[]; e: Engine } {
  const rules = [
    rule({
      name: 'freq',
      type: 'frequency',
      num_events: numEvents,
      timeframe: m(60),
      query_key: ['host'],
    }),
  ];
  const e = engine(rules, new Map());
  e.trackChanges(true);
  for (let k = 0; k < hosts; k++) e.process(ev(k, { host: `h${k}` }));
  return { rules, e };
}

/** The files a process killed now leaves, copied to another path (no -shm: rebuilt). */
function crashCopy(path: string): string {
  const copy = `${path}-crashed`;
  copyFileSync(path, copy);
  if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
  return copy;
}

/** A snapshot with its per-key lists in one order (a restored Map holds keys in another). */
function canonical(snapshot: EngineSnapshot): unknown {
  const byKey = (list: unknown) =>
    Array.isArray(list)
      ? [...(list as unknown[])].sort((a, b) => {
          const ka = JSON.stringify(Array.isArray(a) ? a[0] : a);
          const kb = JSON.stringify(Array.isArray(b) ? b[0] : b);
          return ka < kb ? -1 : ka > kb ? 1 : 0;
        })
      : list;
  const rules = Object.fromEntries(
    Object.entries(snapshot.rules).map(([name, r]) => {
      const st = r.state;
      return [
        name,
        {
          fingerprint: r.fingerprint,
          state: {
            ...st,
            keys: byKey(st.keys),
            keyValues: byKey(st.keyValues),
            silences: byKey(st.silences),
            pending: byKey(st.pending),
            episodes: byKey(st.episodes),
            quietPending: byKey(st.quietPending),
            extra: byKey(st.extra),
          },
        },
      ];
    }),
  );
  return JSON.parse(JSON.stringify({ ...snapshot, rules }));
}

interface Plan {
  /** After how many events a checkpoint is taken. */
  checkpoints: number[];
  /** After how many events the process "dies" (restarted from the store). */
  restarts: number[];
  /** Checkpoints written in slices, events processed between them. */
  sliced: boolean;
  /** A restart while a sliced checkpoint is being written: its transaction is lost. */
  crashMidWrite: boolean;
}

/**
 * Runs the stream as `drover serve` would with checkpoints and restarts: a restarted
 * engine is restored from the store and replays the stream from the offset the
 * checkpoint recorded. Alerts are collected by id (a replay repeats ids).
 */
async function withRestarts(rules: RuleSpec[], events: Event[], plan: Plan) {
  const path = storePath();
  let store = new CheckpointStore(path);
  const alerts = new Map<string, Alert>();
  let e = engine(rules, alerts);
  e.trackChanges(true);
  const checkpoints = new Set(plan.checkpoints);
  const restarts = new Set(plan.restarts);
  let restarted = 0;
  let i = 0;
  /** A restart point reached (events go on while a checkpoint is written in slices). */
  const due = () => {
    for (const r of restarts) {
      if (r > i) continue;
      restarts.delete(r);
      return true;
    }
    return false;
  };
  const restart = () => {
    store.close();
    store = new CheckpointStore(path);
    e = engine(rules, alerts);
    const stored = store.read();
    if (stored) {
      e.restoreChanges(stored);
      i = stored.offsets['bus/0']!;
    } else {
      e.trackChanges(true);
      i = 0;
    }
    restarted++;
  };
  while (i < events.length) {
    e.process(structuredClone(events[i]!));
    i++;
    if (checkpoints.has(i)) {
      checkpoints.delete(i);
      const capture = e.capture(new EntryBatch());
      if (!plan.sliced) store.writeNow(capture, { 'bus/0': i });
      else {
        let done = false;
        const writing = store
          .write(capture, { 'bus/0': i }, { sliceMs: 0, step: 1 })
          .then(() => (done = true))
          .catch(() => (done = true));
        // Events go on between the slices: copy-on-write keeps the capture at its instant.
        let crashed = false;
        while (!done && i < events.length) {
          e.process(structuredClone(events[i]!));
          i++;
          if (plan.crashMidWrite && due()) {
            restart();
            crashed = true;
            break;
          }
          await new Promise((r) => setImmediate(r));
        }
        await writing;
        if (crashed) continue;
      }
    }
    if (due()) restart();
  }
  e.finish();
  store.close();
  return { alerts, snapshot: e.snapshot(), restarted };
}

function uninterrupted(rules: RuleSpec[], events: Event[]) {
  const alerts = new Map<string, Alert>();
  const e = engine(rules, alerts);
  for (const event of events) e.process(structuredClone(event));
  e.finish();
  return { alerts, snapshot: e.snapshot() };
}

describe('incremental checkpoints', () => {
  const events = stream();
  const expected = uninterrupted(RULES, events);

  it('restored and replayed after random checkpoints and restarts, state and alerts equal an uninterrupted run', async () => {
    expect(expected.alerts.size).toBeGreaterThan(10);
    const point = fc.integer({ min: 1, max: events.length });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(point, { minLength: 1, maxLength: 8 }),
        fc.uniqueArray(point, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        fc.boolean(),
        async (checkpoints, restarts, sliced, crashMidWrite) => {
          const got = await withRestarts(RULES, events, {
            checkpoints,
            restarts,
            sliced,
            crashMidWrite,
          });
          expect(got.restarted).toBeGreaterThan(0);
          expect([...got.alerts.keys()].sort()).toEqual([...expected.alerts.keys()].sort());
          expect(canonical(got.snapshot)).toEqual(canonical(expected.snapshot));
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);

  it('records what sweeps drop: keys forgotten are deleted, windows emptied are rewritten', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const rules = [
      rule({
        name: 'freq',
        type: 'frequency',
        num_events: 3,
        timeframe: m(1),
        query_key: ['host'],
      }),
      rule({
        name: 'flat',
        type: 'flatline',
        threshold: 1,
        timeframe: m(1),
        expect: [],
        forget_keys: false,
        query_key: ['host'],
        realert: m(30),
      }),
    ];
    const e = engine(rules, new Map());
    e.trackChanges(true);
    for (let k = 0; k < 50; k++) e.process(ev(s(k), { host: `h${k}` }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 50 });
    const count = () =>
      [...store.read()!.entries].filter(([r, , entry]) => r === 'freq' && entry.k !== undefined)
        .length;
    expect(count()).toBe(50);
    // Ten minutes later every window has emptied: the sweep forgets frequency's keys,
    // and empties flatline's (which it keeps).
    for (let k = 0; k < 20; k++) e.process(ev(m(10) + s(k), { host: 'late-one' }));
    const stats = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 70 });
    expect(stats.full).toBe(false);
    expect(count()).toBe(1);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });

  it('records a window a sweep emptied in part, with no event or timer of the key since', () => {
    const store = new CheckpointStore(storePath());
    const rules = [
      rule({
        name: 'flat',
        type: 'flatline',
        threshold: 1,
        timeframe: m(1),
        expect: [],
        forget_keys: false,
        query_key: ['host'],
        realert: m(30),
      }),
    ];
    const e = engine(rules, new Map());
    e.trackChanges(true);
    for (let k = 0; k <= 50; k++) e.process(ev(s(k), { host: 'a' }));
    // a's first deadline (60 s) runs and moves on to 110 s before the first checkpoint.
    for (let t = s(60.5); t <= s(64); t += 500) e.process(ev(t, { host: 'b' }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 59 });
    // Only b reports now: the sweeps drop a's oldest times, and nothing else touches a.
    for (let t = s(64.5); t <= s(108); t += 500) e.process(ev(t, { host: 'b' }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 150 });
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });

  it('a later checkpoint writes only what changed', () => {
    const store = new CheckpointStore(storePath());
    const { e } = hostEngine(3, 1_000);
    const first = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 1000 });
    expect(first).toMatchObject({ full: true, entries: 1000 });
    for (let k = 0; k < 10; k++) e.process(ev(1000 + k, { host: `h${k * 7}` }));
    const second = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 1010 });
    expect(second).toMatchObject({ full: false, entries: 10 });
    store.close();
  });

  it('timers pushed and run between two checkpoints are neither written nor deleted', async () => {
    // A flatline deadline moves with each event of its key: a timer pushed per event, and
    // run (as a stale deadline) once the watermark passes it.
    const rules = [
      rule({
        name: 'silent',
        type: 'flatline',
        threshold: 1,
        timeframe: s(5),
        query_key: ['host'],
        expect: [],
        forget_keys: false,
      }),
    ];
    const alerts = new Map<string, Alert>();
    const e = engine(rules, alerts);
    e.trackChanges(true);
    const path = storePath();
    const store = new CheckpointStore(path);
    for (let k = 0; k < 10; k++) e.process(ev(k * 100, { host: `h${k}` }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 10 });
    // 3,000 events over the same 10 hosts, 100 ms apart: 30 s of event time, past the
    // 5 s timeframe and the 2 s lateness many times over.
    for (let k = 10; k < 3010; k++) e.process(ev(k * 100, { host: `h${k % 10}` }));
    const capture = e.capture(new EntryBatch());
    // At most a pending deadline per host and rule; the stored ones that ran, deleted.
    expect(capture.timerCount).toBeLessThanOrEqual(30);
    expect(capture.timersRemoved.length).toBeLessThanOrEqual(30);
    const written = await store.write(capture, { 'bus/0': 3010 });
    expect(written.timers).toBeLessThanOrEqual(30);
    store.close();
    // What is stored restores to the state the engine holds.
    const back = new CheckpointStore(path);
    const restored = engine(rules, new Map());
    const stored = back.read()!;
    restored.restoreChanges(stored);
    expect(canonical(restored.snapshot())).toEqual(canonical(e.snapshot()));
    back.close();
  });

  it('a capture hands entries on in key order, and a full one timers in sequence order', () => {
    // Two timeframes: timers pushed later fall due earlier, so the heap is not in seq order.
    const rules = [m(60), s(30)].map((timeframe, r) =>
      rule({
        name: `silent-${r}`,
        type: 'flatline',
        threshold: 1,
        timeframe,
        query_key: ['host'],
        expect: [],
        forget_keys: false,
      }),
    );
    const e = engine(rules, new Map());
    e.trackChanges(true);
    const order = (n: number) => Array.from({ length: n }, (_, k) => `h${(k * 7919) % n}`);
    order(5000).forEach((host, k) => e.process(ev(k, { host })));
    const sorted = (capture: Capture<EntryBatch>) => {
      const rows: string[][] = [];
      const drain = () => {
        const b = capture.sink;
        for (let i = 0; i < b.rows; i++)
          rows.push([b.rules[i]!, b.bytes.toString('utf16le', b.spans[3 * i], b.spans[3 * i + 1])]);
        b.clear();
      };
      while (!capture.step(64)) drain();
      drain();
      for (const name of ['silent-0', 'silent-1']) {
        const ids = rows.filter((r) => r[0] === name).map((r) => r[1]!);
        expect(ids).toEqual([...ids].sort());
      }
      return rows.length;
    };
    const full = e.capture(new EntryBatch());
    expect(sorted(full)).toBe(10_000);
    const seqs: number[] = [];
    const taken: Timer<RuleRunner>[] = [];
    for (let n; (n = full.takeTimers(taken, 100)) > 0;)
      for (let i = 0; i < n; i++) seqs.push(taken[i]!.seq);
    expect(seqs.length).toBeGreaterThan(5000);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    order(3000).forEach((host, k) => e.process(ev(5000 + k, { host })));
    expect(sorted(e.capture(new EntryBatch()))).toBe(6000);
  });

  it('a full capture stays at its instant while entries before and after its merge change', async () => {
    const store = new CheckpointStore(storePath());
    const { rules, e } = hostEngine(50, 3_000);
    const atInstant = canonical(e.snapshot());
    const capture = e.capture(new EntryBatch());
    let done = false;
    const writing = store
      .write(capture, { 'bus/0': 3000 }, { sliceMs: 0, step: 8 })
      .then(() => (done = true));
    // Between slices, events for keys the merge has passed, keys it has not reached
    // (in key order, both ends of the range), and keys new since the instant.
    for (let j = 0; !done; j++) {
      const k = (j * 7919) % 3000;
      e.process(ev(3000 + j, { host: `h${k}` }));
      e.process(ev(3000 + j, { host: `h${2999 - k}` }));
      e.process(ev(3000 + j, { host: `new${j}` }));
      await new Promise((r) => setImmediate(r));
    }
    await writing;
    expect(canonical(e.snapshot())).not.toEqual(atInstant);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(atInstant);
    store.close();
  });

  it('a full capture copies its timers a chunk at a time, none at its instant, and stays at it', async () => {
    // Flatline deadlines: a timer pushed per event, run once the watermark passes it. At
    // 110,000 timers the capture's instant copied all of them (880 KB at once).
    const rules = [m(10), s(30)].map((timeframe, r) =>
      rule({
        name: `silent-${r}`,
        type: 'flatline',
        threshold: 1,
        timeframe,
        realert: m(60),
        query_key: ['host'],
        expect: [],
        forget_keys: false,
      }),
    );
    const e = engine(rules, new Map());
    e.trackChanges(true);
    const hosts = 4000;
    // Over 40 s: the 30 s rule's deadlines are due from the first events between slices.
    for (let k = 0; k < hosts; k++) e.process(ev(10 * k, { host: `h${(k * 7919) % hosts}` }));
    const heap = (e as unknown as { timers: { all(): Timer<RuleRunner>[] } }).timers;
    const row = (t: Timer<RuleRunner>) => [t.seq, t.at, t.target.spec.name, t.key, t.tag];
    const atInstant = heap
      .all()
      .sort((a, b) => a.seq - b.seq)
      .map(row);
    expect(atInstant.length).toBeGreaterThan(4 * 1024);
    // The array the copy goes into was grown with the heap, before the checkpoint.
    const spare = () => (heap as unknown as { spare: unknown[] }).spare;
    const before = spare();
    expect(before.length).toBeGreaterThan(atInstant.length);
    const path = storePath();
    const store = new CheckpointStore(path);
    const capture = e.capture(new EntryBatch());
    let done = false;
    const writing = store
      .write(capture, { 'bus/0': hosts }, { sliceMs: 0, step: 8 })
      .then((stats) => {
        done = true;
        return stats;
      });
    // Between slices, events push timers and move the watermark past others (which run).
    for (let j = 0; !done; j++) {
      e.process(ev(10 * hosts + 100 * j, { host: `h${(j * 31) % hosts}` }));
      await new Promise((r) => setImmediate(r));
    }
    const stats = await writing;
    // Timers of the instant ran (popped) and others were pushed while it was copied.
    const now = new Set(heap.all().map((t) => t.seq));
    expect(atInstant.filter(([seq]) => !now.has(seq as number)).length).toBeGreaterThan(100);
    expect(
      [...now].filter((seq) => seq >= (atInstant.at(-1)![0] as number)).length,
    ).toBeGreaterThan(100);
    expect(stats.timers).toBe(atInstant.length);
    expect(stats.maxTimersCopied).toBeGreaterThan(0);
    expect(stats.maxTimersCopied).toBeLessThanOrEqual(1024);
    const db = openSqlite(path, { readonly: true });
    const set = deserialize(
      (db.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as { value: Uint8Array })
        .value,
    ) as string;
    const stored = (
      db.prepare(`SELECT seq, at, rule, key, tag FROM timers${set} ORDER BY seq`).all() as Array<{
        seq: number;
        at: number;
        rule: string;
        key: Uint8Array;
        tag: number;
      }>
    ).map((r) => [
      Number(r.seq),
      r.at,
      r.rule,
      Buffer.from(r.key).toString('utf16le'),
      Number(r.tag),
    ]);
    db.close();
    expect(stored).toEqual(atInstant);
    expect(spare()).toBe(before);
    store.close();
  });

  it('a full capture keeps no set of every id it took (one rehashed 1 M ids at once)', () => {
    const { e } = hostEngine(3, 5_000);
    const capture = e.capture(new EntryBatch());
    const add = vi.spyOn(Set.prototype, 'add');
    try {
      while (!capture.step(64)) capture.sink.clear();
      expect(capture.entries).toBe(5000);
      expect(add.mock.calls.length).toBeLessThan(100);
    } finally {
      add.mockRestore();
    }
  });

  it('a full checkpoint over a stored one deletes the old rows a chunk at a time, in slices', async () => {
    const store = new CheckpointStore(storePath());
    const { rules, e } = hostEngine(3, 5_000);
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 5000 });
    for (let k = 0; k < 100; k++) e.process(ev(5000 + k, { host: `g${k}` }));
    e.trackChanges(true); // the next capture is full (as after a failed write)
    const stats = await store.write(e.capture(new EntryBatch()), { 'bus/0': 5100 }, { sliceMs: 0 });
    expect(stats).toMatchObject({ full: true, entries: 5100 });
    // 5,100 entries at 64 a slice, after 5,000 old rows at 256 a slice.
    expect(stats.slices).toBeGreaterThanOrEqual(Math.ceil(5100 / 64) + Math.floor(5000 / 256));
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });

  it('a failed write leaves the previous checkpoint, and the next one is whole', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const alerts = new Map<string, Alert>();
    const e = engine(RULES, alerts);
    e.trackChanges(true);
    const half = Math.floor(events.length / 2);
    for (let k = 0; k < half; k++) e.process(structuredClone(events[k]!));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': half });
    const atHalf = canonical(e.snapshot());
    for (let k = half; k < half + 100; k++) e.process(structuredClone(events[k]!));

    // Another connection makes every write of an entry fail, as a full disk would mid-way.
    const other = openSqlite(path);
    for (const table of ['entries', 'entries_b'])
      other.exec(
        `CREATE TRIGGER refuse${table} BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'refused'); END`,
      );
    const capture = e.capture(new EntryBatch());
    await expect(
      store.write(capture, { 'bus/0': half + 100 }, { sliceMs: 0, step: 1 }),
    ).rejects.toThrow(/refused/);
    e.abandonCapture(capture);
    const kept = store.read()!;
    expect(kept.offsets).toEqual({ 'bus/0': half });
    const restored = engine(RULES, new Map());
    restored.restoreChanges(kept);
    expect(canonical(restored.snapshot())).toEqual(atHalf);

    for (const table of ['entries', 'entries_b']) other.exec(`DROP TRIGGER refuse${table}`);
    other.close();
    const next = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': half + 100 });
    expect(next.full).toBe(true);
    const again = engine(RULES, new Map());
    again.restoreChanges(store.read()!);
    expect(canonical(again.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });

  it('a rule removed or changed behaves as with the full snapshot: reset, and gone from the store', () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    for (const event of events.slice(0, 400)) e.process(structuredClone(event));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 400 });
    const full = e.snapshot();

    // freq-errors changed (num_events), any-fatal removed, a new rule added.
    const changed = RULES.filter((r) => r.name !== 'any-fatal').map((r) =>
      r.name === 'freq-errors' ? { ...r, num_events: 9 } : r,
    );
    changed.push(rule({ name: 'added', type: 'any', query_key: ['host.name'] }));
    const viaStore = engine(changed, new Map());
    const viaJson = engine(changed, new Map());
    expect(viaStore.restoreChanges(store.read()!).reset).toEqual(['freq-errors', 'added']);
    expect(viaJson.restore(full).reset).toEqual(['freq-errors', 'added']);
    expect(canonical(viaStore.snapshot())).toEqual(canonical(viaJson.snapshot()));

    // The next checkpoint replaces what is stored: the removed rule's entries go.
    expect(store.writeNow(viaStore.capture(new EntryBatch()), { 'bus/0': 400 }).full).toBe(true);
    const rulesStored = new Set([...store.read()!.entries].map(([r]) => r));
    expect(rulesStored.has('any-fatal')).toBe(false);
    expect(rulesStored.has('freq-errors')).toBe(false);
    store.close();
  });

  it('keys a sender picks come back unchanged (NULs, lone surrogates)', () => {
    const store = new CheckpointStore(storePath());
    const rules = [
      rule({ name: 'freq', type: 'frequency', num_events: 9, timeframe: m(60), query_key: ['k'] }),
    ];
    const e = engine(rules, new Map());
    e.trackChanges(true);
    const hostile = ['a\u0000b', '\ud800', '\udfff\ud800x', '', 'é\u2028'];
    for (const [n, k] of hostile.entries()) e.process(ev(n, { k }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': hostile.length });
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    expect(back.stats()[0]!.keys).toBe(hostile.length);
    store.close();
  });

  it('stores a timer whose key is empty, alone in its statement', () => {
    // Timers are written by multi-row statements cutting their keys out of one BLOB;
    // with every key of a statement empty that BLOB would be empty, which SQLite reads
    // as NULL.
    const store = new CheckpointStore(storePath());
    const rules = [
      rule({
        name: 'silent',
        type: 'flatline',
        threshold: 1,
        timeframe: m(1),
        query_key: ['k'],
        expect: [],
        forget_keys: false,
      }),
    ];
    const e = engine(rules, new Map());
    e.trackChanges(true);
    e.process(ev(0, { k: 'x' }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 1 });
    e.process(ev(1, { k: '' }));
    const stats = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 2 });
    expect(stats).toMatchObject({ full: false, timers: 1 });
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    expect([...store.read()!.timers].map((t) => t[3]).sort()).toEqual(['', 'x']);
    store.close();
  });
});

describe('what a checkpoint writes', () => {
  /** The rows of the set of tables holding the checkpoint, ids, keys and values as hex. */
  function rows(path: string) {
    const db = openSqlite(path, { readonly: true });
    try {
      const named = db.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as {
        value: Uint8Array;
      };
      const set = deserialize(named.value) as string;
      const entries = db
        .prepare(
          `SELECT rule, hex(id) AS id, hex(value) AS value FROM entries${set} ORDER BY rule, id`,
        )
        .all() as Array<{ rule: string; id: string; value: string }>;
      const timers = db
        .prepare(`SELECT seq, at, rule, hex(key) AS key, tag FROM timers${set} ORDER BY seq`)
        .all() as Array<{ seq: number; at: number; rule: string; key: string; tag: number }>;
      return {
        entries: entries.map((r) => [r.rule, r.id, r.value]),
        timers: timers.map((r) => [Number(r.seq), r.at, r.rule, r.key, Number(r.tag)]),
      };
    } finally {
      db.close();
    }
  }

  it('is, row for row and byte for byte, what the format-3 store of before wrote', () => {
    // The fixture: the rows the store wrote before entries were batched (commit 12f20d1),
    // for this state: a full checkpoint of the fleet stream's first 60%, then an
    // incremental one after the rest and keys a sender picks (NULs, lone surrogates).
    const before = JSON.parse(
      readFileSync(new URL('./fixtures/checkpoint-rows-format3.json', import.meta.url), 'utf8'),
    ) as Record<'full' | 'incremental', ReturnType<typeof rows>>;
    const events = stream();
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    const cut = Math.floor(events.length * 0.6);
    const path = storePath();
    const store = new CheckpointStore(path);
    for (const event of events.slice(0, cut)) e.process(structuredClone(event));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': cut });
    expect(rows(path)).toEqual(before.full);
    for (const event of events.slice(cut)) e.process(structuredClone(event));
    const last = events.at(-1)!['@timestamp'] - T0;
    ['a\u0000b', '\ud800', '\udfff\ud800x', '', 'é\u2028', '日本'].forEach((h, n) =>
      e.process(
        ev(last + n, {
          'host.name': h,
          'service.name': h,
          'log.level': 'error',
          'error.fingerprint': h,
          user: h,
        }),
      ),
    );
    const stats = store.writeNow(e.capture(new EntryBatch()), { 'bus/0': events.length + 6 });
    expect(stats.full).toBe(false);
    expect(rows(path)).toEqual(before.incremental);
    store.close();
  });

  it('takes and writes an entry with no Buffer, key list or row array of its own', async () => {
    // Allocation per entry drives V8's incremental marking, whose steps run inside the
    // slices: at 1.1 M keys it held a full checkpoint's longest slice past 5 ms.
    const { rules, e } = hostEngine(3, 5_000);
    const store = new CheckpointStore(storePath());
    const spies = [
      vi.spyOn(Buffer, 'allocUnsafe'),
      vi.spyOn(Buffer, 'from'),
      vi.spyOn(Object, 'keys'),
      vi.spyOn(Array, 'from'),
    ];
    let stats;
    try {
      stats = await store.write(e.capture(new EntryBatch()), { 'bus/0': 5000 }, { sliceMs: 1 });
      for (const spy of spies) expect(spy.mock.calls.length).toBeLessThan(50);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(stats).toMatchObject({ full: true, entries: 5000 });
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });
});

describe('an entry larger than one part', () => {
  // One key's state a sender can make large: a cardinality key holding many long values
  // (here 2,000 of 1,000 characters, ~2 MB encoded; the kind keeps up to 10,000 values of
  // up to an event's size). Before, such an entry was written by one statement between
  // two checks of the slice's clock.
  const rules = [
    rule({
      name: 'card',
      type: 'cardinality',
      cardinality_field: 'user',
      max_cardinality: 100_000,
      timeframe: m(10),
      query_key: ['host'],
    }),
    rule({ name: 'freq', type: 'frequency', num_events: 3, timeframe: m(10), query_key: ['host'] }),
  ];
  const VALUES = 2_000;
  const big = (i: number, tag: string) => `${tag}${i}`.padEnd(1_000, 'x');

  function bigEngine(): Engine {
    const e = engine(rules, new Map());
    e.trackChanges(true);
    for (let i = 0; i < VALUES; i++) e.process(ev(i, { host: 'big', user: big(i, 'u') }));
    for (let k = 0; k < 300; k++) e.process(ev(VALUES + k, { host: `h${k}`, user: 'x' }));
    return e;
  }

  /** The stored value of one entry, its parts put back together (or the row's own). */
  function storedValue(path: string, rule: string, id: string): Buffer {
    const db = openSqlite(path, { readonly: true });
    try {
      const named = db.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as {
        value: Uint8Array;
      };
      const set = deserialize(named.value) as string;
      const key = Buffer.from(id, 'utf16le');
      const row = db
        .prepare(`SELECT value FROM entries${set} WHERE rule = ? AND id = ?`)
        .get(rule, key) as { value: Uint8Array };
      const parts = db
        .prepare(`SELECT bytes FROM parts${set} WHERE rule = ? AND id = ? ORDER BY part`)
        .all(rule, key) as Array<{ bytes: Uint8Array }>;
      return parts.length === 0 ? Buffer.from(row.value) : Buffer.concat(parts.map((r) => r.bytes));
    } finally {
      db.close();
    }
  }

  /** The bytes a capture encodes for one entry (what the store must give back). */
  function encoded(e: Engine, rule: string, id: string): Buffer {
    const batch = new EntryBatch();
    const runner = (e as unknown as { compiled: Array<{ runner: RuleRunner }> }).compiled.find(
      (c) => c.runner.spec.name === rule,
    )!.runner;
    batch.putEntry(rule, id, runner);
    return Buffer.from(batch.bytes.subarray(batch.spans[1], batch.spans[2]));
  }

  function count(path: string, table: string): number {
    const db = openSqlite(path, { readonly: true });
    try {
      return Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
    } finally {
      db.close();
    }
  }

  it('is written a part between two checks of the clock, and restored byte for byte', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = bigEngine();
    const want = encoded(e, 'card', 'big');
    expect(want.length).toBeGreaterThan(20 * PART_BYTES);
    const stats = await store.write(e.capture(new EntryBatch()), { 'bus/0': 1 }, { sliceMs: 0 });
    expect(stats.full).toBe(true);
    expect(stats.maxEntryBytes).toBe(want.length);
    // The store's own accounting: past a slice's budget, at most one part's bytes (and a
    // step's small rows) were written before its clock was checked again.
    expect(stats.maxBytesUnchecked).toBeLessThanOrEqual(PART_BYTES + 16 * 512);
    expect(stats.slices).toBeGreaterThan(Math.ceil(want.length / PART_BYTES));
    expect(storedValue(path, 'card', 'big').equals(want)).toBe(true);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
    // Read again by a store opened afresh.
    const reopened = new CheckpointStore(path);
    const again = engine(rules, new Map());
    again.restoreChanges(reopened.read()!);
    expect(canonical(again.snapshot())).toEqual(canonical(e.snapshot()));
    reopened.close();
  });

  it('is encoded in steps of about one part, the rows byte for byte those of one step', async () => {
    // Before, the capture encoded the whole entry (~2 MB here, 20-43 ms for 10 MB) in the
    // one step that took it.
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = bigEngine();
    const want = encoded(e, 'card', 'big');
    const stats = await store.write(e.capture(new EntryBatch()), { 'bus/0': 1 }, { sliceMs: 0 });
    expect(stats.maxEntryBytes).toBe(want.length);
    // The store's own accounting: no step of the capture encoded more than a part and
    // one value (1,000 characters, and its intervals).
    expect(stats.maxStepBytes).toBeGreaterThan(0);
    expect(stats.maxStepBytes).toBeLessThanOrEqual(PART_BYTES + 2_048);
    expect(storedValue(path, 'card', 'big').equals(want)).toBe(true);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));

    // Rewritten whole by an incremental checkpoint: in steps too.
    for (let i = 0; i < VALUES; i++)
      e.process(ev(VALUES + 300 + i, { host: 'big', user: big(i, 'u') }));
    const again = await store.write(e.capture(new EntryBatch()), { 'bus/0': 2 }, { sliceMs: 0 });
    expect(again.full).toBe(false);
    expect(again.maxStepBytes).toBeLessThanOrEqual(PART_BYTES + 2_048);
    expect(storedValue(path, 'card', 'big').equals(encoded(e, 'card', 'big'))).toBe(true);
    const back2 = engine(rules, new Map());
    back2.restoreChanges(store.read()!);
    expect(canonical(back2.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });

  it('holds the state of its instant when events change it between two of its steps', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = bigEngine();
    const capture = e.capture(new EntryBatch());
    const atInstant = canonical(e.snapshot());
    const want = encoded(e, 'card', 'big');
    const finished = vi.spyOn(EntryBatch.prototype, 'finishParts');
    let slices = 0;
    let t = VALUES + 300;
    const stats = await store.write(
      capture,
      { 'bus/0': 1 },
      {
        sliceMs: 0,
        // Mid-way through the entry's steps: a new value, and an old one seen again.
        onSlice: () => {
          if (++slices === 6) {
            e.process(ev(t++, { host: 'big', user: big(0, 'n') }));
            e.process(ev(t++, { host: 'big', user: big(VALUES - 1, 'u') }));
          }
        },
      },
    );
    expect(slices).toBeGreaterThan(6);
    expect(stats.maxStepBytes).toBeLessThanOrEqual(PART_BYTES + 2_048);
    expect(storedValue(path, 'card', 'big').equals(want)).toBe(true);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(atInstant);
    // The event found the entry begun and not done: the rest was encoded before it.
    expect(finished).toHaveBeenCalledTimes(1);
    finished.mockRestore();
    store.close();
  });

  it('reads only the parts its head counts', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = bigEngine();
    await store.write(e.capture(new EntryBatch()), { 'bus/0': 1 }, { sliceMs: 0 });
    store.close();
    // A part past the count, as a write whose bookkeeping was lost could leave.
    const db = openSqlite(path);
    db.prepare('INSERT INTO parts_b (rule, id, part, bytes) VALUES (?, ?, ?, ?)').run(
      'card',
      Buffer.from('big', 'utf16le'),
      1_000,
      Buffer.from('stale'),
    );
    db.close();
    const reopened = new CheckpointStore(path);
    const back = engine(rules, new Map());
    back.restoreChanges(reopened.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    reopened.close();
  });

  it('an incremental checkpoint rewrites it in parts, and a crash mid-way keeps the previous one', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = bigEngine();
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 1 });
    const before = canonical(e.snapshot());
    // The key grows: 2,500 values more.
    for (let i = 0; i < VALUES + 500; i++)
      e.process(ev(VALUES + 300 + i, { host: 'big', user: big(i, 'w') }));
    const writing = store.write(e.capture(new EntryBatch()), { 'bus/0': 2 }, { sliceMs: 0 });
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(store.busy).toBe(true);
    const crashed = new CheckpointStore(crashCopy(path));
    const kept = crashed.read()!;
    expect(kept.offsets).toEqual({ 'bus/0': 1 });
    const restored = engine(rules, new Map());
    restored.restoreChanges(kept);
    expect(canonical(restored.snapshot())).toEqual(before);
    crashed.close();

    const stats = await writing;
    expect(stats.full).toBe(false);
    expect(stats.maxBytesUnchecked).toBeLessThanOrEqual(PART_BYTES + 16 * 512);
    expect(storedValue(path, 'card', 'big').equals(encoded(e, 'card', 'big'))).toBe(true);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));

    // Swept past its timeframe, the key is forgotten: its row and every part deleted.
    const parts = () => count(path, 'parts') + count(path, 'parts_b');
    expect(parts()).toBeGreaterThan(20);
    // (A rule is swept every minute of event time at most: two minutes of events.)
    for (let k = 0; k < 120; k++) e.process(ev(m(30) + s(k), { host: 'h0', user: 'y' }));
    const gone = await store.write(e.capture(new EntryBatch()), { 'bus/0': 3 }, { sliceMs: 0 });
    expect(gone.maxBytesUnchecked).toBeLessThanOrEqual(PART_BYTES + 16 * 512);
    expect(parts()).toBe(0);
    const last = engine(rules, new Map());
    last.restoreChanges(store.read()!);
    expect(canonical(last.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();
  });
});

describe('a full checkpoint', () => {
  const rules = [
    rule({ name: 'freq', type: 'frequency', num_events: 3, timeframe: m(60), query_key: ['host'] }),
  ];

  it('commits a transaction a slice, and a crash mid-way keeps the previous checkpoint', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = engine(rules, new Map());
    e.trackChanges(true);
    for (let k = 0; k < 5000; k++) e.process(ev(k, { host: `h${k}` }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 5000 });
    const before = canonical(e.snapshot());
    for (let k = 0; k < 100; k++) e.process(ev(5000 + k, { host: `g${k}` }));
    e.trackChanges(true); // the next capture is full
    // The thread started ahead (else the write starts it): the turns below count its commits.
    await store.startWriter();
    const writing = store.write(e.capture(new EntryBatch()), { 'bus/0': 5100 }, { sliceMs: 0 });
    const other = openSqlite(path, { readonly: true });
    const count = (table: string) =>
      Number((other.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
    // The writer thread commits: 30 turns of the loop, and more until its first commit of
    // this checkpoint lands (a turn of the loop no longer runs a commit of its own).
    for (let i = 0; i < 30 || (i < 5000 && count('entries') + count('entries_b') <= 5000); i++)
      await new Promise((resolve) => setImmediate(resolve));
    expect(store.busy).toBe(true);

    // Mid-way, another connection sees rows of the new checkpoint committed, in the set
    // of tables not in use, and the previous head.
    expect(count('entries') + count('entries_b')).toBeGreaterThan(5000);
    const crashed = new CheckpointStore(crashCopy(path));
    const kept = crashed.read()!;
    expect(kept.offsets).toEqual({ 'bus/0': 5000 });
    const restored = engine(rules, new Map());
    restored.restoreChanges(kept);
    expect(canonical(restored.snapshot())).toEqual(before);
    other.close();

    const stats = await writing;
    expect(stats.full).toBe(true);
    expect(stats.commits).toBeGreaterThan(10);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    store.close();

    // The crashed store's next full checkpoint clears what the crash left, and holds.
    e.trackChanges(true);
    await crashed.write(e.capture(new EntryBatch()), { 'bus/0': 5100 }, { sliceMs: 0 });
    crashed.close();
    const reopened = new CheckpointStore(crashed.path);
    const again = engine(rules, new Map());
    again.restoreChanges(reopened.read()!);
    expect(canonical(again.snapshot())).toEqual(canonical(e.snapshot()));
    expect(reopened.read()!.offsets).toEqual({ 'bus/0': 5100 });
    const db = openSqlite(crashed.path, { readonly: true });
    const rows = (table: string) =>
      Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
    // One set holds the checkpoint; the other was cleared after the switch.
    expect([rows('entries'), rows('entries_b')].sort((a, b) => a - b)).toEqual([0, 5100]);
    db.close();
    reopened.close();
  });

  it('failing after some slices were committed keeps the previous checkpoint', async () => {
    const path = storePath();
    const store = new CheckpointStore(path);
    const e = engine(rules, new Map());
    e.trackChanges(true);
    for (let k = 0; k < 3000; k++) e.process(ev(k, { host: `h${k}` }));
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': 3000 });
    const before = canonical(e.snapshot());
    for (let k = 0; k < 100; k++) e.process(ev(3000 + k, { host: `g${k}` }));
    e.trackChanges(true);
    // Writes into either set fail once it holds 1,000 rows (as a disk filling up).
    const other = openSqlite(path);
    for (const table of ['entries', 'entries_b'])
      other.exec(
        `CREATE TRIGGER full${table} BEFORE INSERT ON ${table} WHEN (SELECT count(*) FROM ${table}) >= 1000 BEGIN SELECT RAISE(ABORT, 'disk full'); END`,
      );
    const capture = e.capture(new EntryBatch());
    await expect(store.write(capture, { 'bus/0': 3100 }, { sliceMs: 0 })).rejects.toThrow(
      /disk full/,
    );
    e.abandonCapture(capture);
    for (const table of ['entries', 'entries_b']) other.exec(`DROP TRIGGER full${table}`);
    other.close();
    const kept = store.read()!;
    expect(kept.offsets).toEqual({ 'bus/0': 3000 });
    const restored = engine(rules, new Map());
    restored.restoreChanges(kept);
    expect(canonical(restored.snapshot())).toEqual(before);
    store.close();
  });
});

/** Folds asked of the worker while `run` runs. */
async function foldsAsked(run: () => Promise<void>): Promise<number> {
  const post = vi.spyOn(Worker.prototype, 'postMessage');
  try {
    await run();
    return post.mock.calls.filter(([m]) => (m as { op?: string }).op === 'fold').length;
  } finally {
    post.mockRestore();
  }
}

describe('the write-ahead log', () => {
  it('is asked to fold once, not at every commit while its file stays large', async () => {
    const store = new CheckpointStore(storePath(), { foldBytes: 1 });
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    const events = stream();
    for (const event of events.slice(0, 400)) e.process(structuredClone(event));
    await store.write(e.capture(new EntryBatch()), { 'bus/0': 400 });
    await store.folded();
    // The log was folded whole: small checkpoints now write over it, the file no larger.
    const asked = await foldsAsked(async () => {
      for (let k = 400; k < 410; k++) {
        e.process(structuredClone(events[k]!));
        await store.write(e.capture(new EntryBatch()), { 'bus/0': k + 1 });
        await store.folded();
      }
    });
    expect(asked).toBe(0);
    expect(store.foldFailures).toBe(0);
    store.close();
  });

  it("starts its worker thread in a turn of the event loop of its own, not in a checkpoint's slice", async () => {
    // `new Worker` holds the loop 0.5-2 ms: made in the slice whose commit asks for the
    // first fold, it took that slice past its budget. Threads are seen as the process's
    // task ids (Linux), read before and after each slice. The log of this checkpoint is
    // 60-100 KiB: past foldBytes, for the worker, and under 8 times it (folded here).
    const store = new CheckpointStore(storePath(), { foldBytes: 32 * 1024 });
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    for (const event of stream().slice(0, 400)) e.process(structuredClone(event));
    const threads = () => new Set(readdirSync('/proc/self/task'));
    const before = threads();
    let atSlice = before;
    let startedInSlices = 0;
    let slices = 0;
    const asked = await foldsAsked(async () => {
      await store.write(
        e.capture(new EntryBatch()),
        { 'bus/0': 400 },
        {
          beforeSlice: () => (atSlice = threads()),
          onSlice: () => {
            slices++;
            for (const t of threads()) if (!atSlice.has(t)) startedInSlices++;
          },
        },
      );
      await store.folded();
    });
    expect(slices).toBeGreaterThan(0);
    expect(asked).toBe(1);
    expect(store.foldFailures).toBe(0);
    // The worker was started, and folded, but in no slice.
    expect([...threads()].some((t) => !before.has(t))).toBe(true);
    expect(startedInSlices).toBe(0);
    store.close();
  });

  it('folded() waits for a fold running and starts none', async () => {
    const store = new CheckpointStore(storePath(), { foldBytes: 1 });
    expect(await foldsAsked(() => store.folded())).toBe(0);
    store.close();
  });

  it('is folded into the database file by a worker once past its bound', async () => {
    const path = storePath();
    // This checkpoint's log is 60-100 KiB: past foldBytes, and under 8 times it, so the
    // worker folds it (past 8 times the store folds it on its own thread: below). The fold
    // runs while later slices commit, so the file alone need not hold the whole checkpoint.
    const store = new CheckpointStore(path, { foldBytes: 32 * 1024 });
    const empty = statSync(path).size;
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    for (const event of stream().slice(0, 400)) e.process(structuredClone(event));
    const asked = await foldsAsked(async () => {
      await store.write(e.capture(new EntryBatch()), { 'bus/0': 400 });
      await store.folded();
    });
    expect(asked).toBe(1);
    expect(store.foldFailures).toBe(0);
    // The worker copied the log's pages into the file.
    expect(statSync(path).size).toBeGreaterThan(empty + 16 * 1024);
    store.close();
  });

  it('is read back by the worker once folded whole, before the writer starts it over', async () => {
    // The writer starts a log folded whole over from the file's beginning; its frames are
    // not aligned with the file's pages, so a page dropped from the page cache would be
    // read from the disk in a COMMIT, on the loop. The worker reads the log back first.
    const path = storePath();
    const store = new CheckpointStore(path, { foldBytes: 32 * 1024 });
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    for (const event of stream().slice(0, 400)) e.process(structuredClone(event));
    expect(store.logReadBack).toBe(0);
    await store.write(e.capture(new EntryBatch()), { 'bus/0': 400 });
    await store.folded();
    expect(store.foldFailures).toBe(0);
    // This checkpoint's log was 60-100 KiB when folded: read back whole, once per fold.
    const wal = statSync(`${path}-wal`).size;
    expect(store.logReadBack).toBeGreaterThan(32 * 1024);
    expect(store.logReadBack % wal).toBe(0);
    store.close();
  });

  it('is folded into the database file on its own thread once past 8 times its bound', async () => {
    const path = storePath();
    const store = new CheckpointStore(path, { foldBytes: 1 });
    const e = engine(RULES, new Map());
    e.trackChanges(true);
    for (const event of stream().slice(0, 400)) e.process(structuredClone(event));
    await store.write(e.capture(new EntryBatch()), { 'bus/0': 400 });
    await store.folded();
    expect(store.foldFailures).toBe(0);
    // The database file alone, without its log, holds the checkpoint.
    const copy = `${path}-copy`;
    copyFileSync(path, copy);
    const alone = new CheckpointStore(copy);
    const back = engine(RULES, new Map());
    back.restoreChanges(alone.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    alone.close();
    store.close();
  });
});

describe('the event loop', () => {
  it('runs no SQLite statement while a checkpoint is written, full or incremental', async () => {
    // Every slice found blocked in the kernel at 1 M keys was the store's SQLite work on
    // the loop (COMMITs writing the log, upserts reading evicted pages): the store's own
    // accounting of the statements its thread ran during each write.
    const path = storePath();
    const store = new CheckpointStore(path);
    const { rules, e } = hostEngine(3, 5_000);
    const full = await store.write(e.capture(new EntryBatch()), { 'bus/0': 5000 }, { sliceMs: 1 });
    expect(full).toMatchObject({ full: true, entries: 5000, loopStatements: 0 });
    for (let k = 0; k < 200; k++) e.process(ev(5000 + k, { host: `h${k * 7}` }));
    const some = await store.write(e.capture(new EntryBatch()), { 'bus/0': 5200 }, { sliceMs: 1 });
    expect(some).toMatchObject({ full: false, loopStatements: 0 });
    expect(some.entries).toBeGreaterThan(0);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    expect(store.read()!.offsets).toEqual({ 'bus/0': 5200 });
    store.close();
  });
});

/** Turns of the event loop (setImmediate) until `done()`, at most `max`; how many ran. */
async function turnsUntil(done: () => boolean, max = 100_000): Promise<number> {
  let turns = 0;
  while (!done() && turns < max) {
    await new Promise((resolve) => setImmediate(resolve));
    turns++;
  }
  return turns;
}

describe("the writer thread's start", () => {
  /** A store holding a checkpoint of `hosts` keys at offset `hosts`, closed. */
  function stored(hosts: number): { path: string; rules: RuleSpec[]; e: Engine } {
    const path = storePath();
    const { rules, e } = hostEngine(3, hosts);
    const store = new CheckpointStore(path);
    store.writeNow(e.capture(new EntryBatch()), { 'bus/0': hosts });
    store.close();
    return { path, rules, e };
  }

  it('a store opened, read, written at once (writeNow) and closed starts no thread', () => {
    const before = writerThreads().started;
    const { path, rules, e } = stored(50);
    const store = new CheckpointStore(path);
    expect(store.writerState).toBe('none');
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    expect(canonical(back.snapshot())).toEqual(canonical(e.snapshot()));
    for (let k = 0; k < 10; k++) back.process(ev(50 + k, { host: `h${k}` }));
    store.writeNow(back.capture(new EntryBatch()), { 'bus/0': 60 });
    store.close();
    expect(writerThreads().started - before).toBe(0);
  });

  it('the first checkpoint starts it, the loop turning while it opens, and is written', async () => {
    const { path, rules } = stored(200);
    const store = new CheckpointStore(path);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    for (let k = 0; k < 20; k++) back.process(ev(200 + k, { host: `h${k}` }));
    const before = writerThreads().started;
    const writing = store.write(back.capture(new EntryBatch()), { 'bus/0': 220 });
    // The loop turns while the thread loads and opens its connection (not blocked for it).
    let whileStarting = 0;
    let done = false;
    void writing.finally(() => (done = true));
    while (!done) {
      if (store.writerState === 'starting') whileStarting++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const stats = await writing;
    expect(writerThreads().started - before).toBe(1);
    expect(whileStarting).toBeGreaterThan(0);
    expect(stats).toMatchObject({ full: false, loopStatements: 0 });
    expect(stats.entries).toBeGreaterThan(0);
    expect(store.writerState).toBe('ready');
    store.close();
    const reopened = new CheckpointStore(path);
    const again = engine(rules, new Map());
    const read = reopened.read()!;
    expect(read.offsets).toEqual({ 'bus/0': 220 });
    again.restoreChanges(read);
    expect(canonical(again.snapshot())).toEqual(canonical(back.snapshot()));
    reopened.close();
  });

  it('closed before the thread is ready: the write fails, nothing lands, the thread ends', async () => {
    const { path, rules } = stored(100);
    const store = new CheckpointStore(path);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    for (let k = 0; k < 20; k++) back.process(ev(100 + k, { host: `h${k}` }));
    const running = writerThreads().running;
    const capture = back.capture(new EntryBatch());
    const writing = store.write(capture, { 'bus/0': 120 });
    await turnsUntil(() => store.writerState !== 'none');
    expect(store.writerState).toBe('starting');
    store.close();
    await expect(writing).rejects.toThrow(/checkpoint store closed/);
    back.abandonCapture(capture);
    // The thread opens its connection, then reads the close and ends.
    await vi.waitFor(() => expect(writerThreads().running).toBe(running), {
      timeout: 20_000,
      interval: 10,
    });
    const reopened = new CheckpointStore(path);
    expect(reopened.read()!.offsets).toEqual({ 'bus/0': 100 });
    reopened.close();
  });

  it('a thread that cannot open fails the checkpoint with why, and the previous one is kept', async () => {
    const { path, rules } = stored(100);
    const store = new CheckpointStore(path);
    const back = engine(rules, new Map());
    back.restoreChanges(store.read()!);
    for (let k = 0; k < 20; k++) back.process(ev(100 + k, { host: `h${k}` }));
    // Another connection names a set of tables that is none: the thread's open reads it.
    const other = openSqlite(path);
    const tables = other.prepare("SELECT value FROM meta WHERE name = 'tables'").get() as {
      value: Uint8Array;
    };
    other.prepare("UPDATE meta SET value = ? WHERE name = 'tables'").run(serialize('_none'));
    const capture = back.capture(new EntryBatch());
    await expect(store.write(capture, { 'bus/0': 120 })).rejects.toThrow(
      /checkpoint writer thread could not start: .*no such set of checkpoint tables/,
    );
    back.abandonCapture(capture);
    expect(store.writerState).toBe('failed');
    other.prepare("UPDATE meta SET value = ? WHERE name = 'tables'").run(tables.value);
    other.close();
    expect(store.read()!.offsets).toEqual({ 'bus/0': 100 });
    store.close();
  });
});

describe("the writer's and the fold's threads", () => {
  /** A thread's nice value, from /proc/self/task/<tid>/stat (field 19). */
  const nice = (tid: string) =>
    Number(readFileSync(`/proc/self/task/${tid}/stat`, 'latin1').split(') ')[1]!.split(' ')[16]);

  it.runIf(process.platform === 'linux')(
    "run below the event loop's priority, the loop's own left as it was",
    async () => {
      // A slice the scheduler took the core from, to run the writer, held the loop for the
      // writer's turn too (thread-priority.ts): the two threads the store starts are
      // lowered, the loop and every other thread are not. The log of this checkpoint is
      // past foldBytes and under 8 times it: folded by the fold's thread.
      const threads = () => new Set(readdirSync('/proc/self/task'));
      const before = threads();
      const loop = nice(String(process.pid));
      const store = new CheckpointStore(storePath(), { foldBytes: 32 * 1024 });
      const e = engine(RULES, new Map());
      e.trackChanges(true);
      for (const event of stream().slice(0, 400)) e.process(structuredClone(event));
      await store.write(e.capture(new EntryBatch()), { 'bus/0': 400 });
      await store.folded();
      const started = [...threads()].filter((tid) => !before.has(tid));
      const lowered = started.filter((tid) => nice(tid) === BACKGROUND_PRIORITY);
      expect(BACKGROUND_PRIORITY).toBeGreaterThan(loop);
      expect(lowered).toHaveLength(2);
      expect(nice(String(process.pid))).toBe(loop);
      for (const tid of threads()) if (!lowered.includes(tid)) expect(nice(tid)).toBe(loop);
      store.close();
    },
  );
});
