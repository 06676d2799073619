import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  createKafkaBus,
  type KafkaBus,
  type KafkaGroupLag,
  type TaskConsumer,
} from '../../ingest/bus/index.ts';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import type { Event } from '../../ingest/model/index.ts';
import { RulesTasks } from '../../pipeline/rules-tasks.ts';
import { createTelemetry } from '../../pipeline/telemetry.ts';
import { type Alert, Engine, parseRuleFile, type RuleSpec } from '../../rules/index.ts';
import { until } from '../support/drover.ts';

/**
 * Rules tasks (pipeline/rules-tasks.ts) in this process, on a real broker, where the
 * order of two things must be forced that a worker's processes cannot make certain:
 *
 * - A task restored behind the group's committed offsets (no snapshot matches the
 *   commit: the changelog lost, or a commit written by a worker from before the
 *   assignment's commit named a snapshot) replays up to them. A read of the group's lag
 *   at the join (the committed offsets: lag 0) that answers during that replay must not
 *   set the task caught up (docs/scale-out.md, "Watermarks and the clock"). The read's
 *   requests are the restore's own (OffsetFetch, ListOffsets, on the same admin
 *   connection), so a relay cannot hold it alone, and a replay is over in a fraction of
 *   a second: here the bus's own read answers late, held by a gate in this process
 *   (the broker's answer, unchanged, given to the bus later), and the replay is held
 *   between two fetches.
 * - A task assigned again while the commit of the assignment that restored it has not
 *   returned (overtaken by the next): the next assignment's commit names the snapshot it
 *   was restored from (Task.base). Here the first commit's answer is held in this process
 *   until a second member has joined and the next assignment has committed. Held at the
 *   restore's first read instead, the task was never restored: the next assignment
 *   restores it (Task.restored). Held at the tombstones of its restore instead, the
 *   overtaken assignment must not go on to commit in the next one's generation.
 * - A task lost by an assignment overtaken before its commit, then given back by one
 *   overtaken after its commit was sent: the next assignment, keeping it, commits the
 *   snapshot it was restored from, not the offsets committed before it was lost.
 * - A seek an assignment made before it was overtaken, for a task the next assignment
 *   gives another worker: kafkajs keeps it until the partition is next fetched. The
 *   task given back, with its start equal to the group's offset, must be fetched from
 *   that start (its restore seeks there too), not from the old seek's offset. The old
 *   assignment's read of the log ends is held until the consumer has seen the rebalance.
 *
 * Everything else is real: kafkajs against the broker, the changelog, the engine.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;
const { Kafka, logLevel } = kafkajs();

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});

function rule(yaml: string): RuleSpec {
  const { rule, diagnostics } = parseRuleFile(yaml, 'r.yaml');
  expect(diagnostics).toEqual([]);
  return rule!;
}

/** Five errors of a service within a minute. */
const RULES = [
  rule(`name: error-burst
type: frequency
num_events: 5
timeframe: 1m
query_key: service.name
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`),
];
const LATENESS_MS = 1_000;

/** A fresh engine as the worker makes one (its clock the wall's). */
function engine(onAlert: (a: Alert) => void): Engine {
  return new Engine(RULES, { allowedLatenessMs: LATENESS_MS, clock: Date.now, onAlert });
}

/** The alert ids `drover backtest` would give: every event in order, in one engine. */
function expectedAlerts(events: Event[]): string[] {
  const ids: string[] = [];
  const e = new Engine(RULES, { allowedLatenessMs: LATENESS_MS, onAlert: (a) => ids.push(a.id) });
  for (const ev of events) e.process(ev);
  return ids.sort();
}

/**
 * `count` info lines of each service over 20 minutes that ended 5 minutes ago (a random
 * message each, so that they compress little and a partition takes several fetches),
 * and a burst of six errors at each of `bursts` (fractions of the stream).
 */
function stream(services: string[], count: number, bursts: number[]): Event[] {
  const start = Date.now() - 25 * 60_000;
  const step = (20 * 60_000) / count;
  const out: Event[] = [];
  for (let i = 0; i < count; i++) {
    const t = Math.round(start + i * step);
    for (const s of services)
      out.push({
        '@timestamp': t,
        'service.name': s,
        'log.level': 'info',
        message: `${randomUUID()} ${randomUUID()}`,
      });
    for (const b of bursts)
      if (i === Math.floor(b * count))
        for (let j = 0; j < 6; j++)
          for (const s of services)
            out.push({
              '@timestamp': t + j,
              'service.name': s,
              'log.level': 'error',
              message: `burst ${j}`,
            });
  }
  return out;
}

/** A logger whose lines the test reads (`msg` and fields). */
function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

/** A bus; its group members' ids begin with `clientId` (the assigner sorts by them). */
async function bus(prefix: string, partitions: number, clientId?: string): Promise<KafkaBus> {
  const b = await createKafkaBus({
    brokers: [brokers!],
    ...(clientId !== undefined && { clientId }),
    topicPrefix: prefix,
    partitions,
    sessionTimeoutMs: 10_000,
  });
  closers.push(() => b.close());
  return b;
}

function tasksOn(
  b: KafkaBus,
  group: string,
  logger: pino.Logger,
  idleAfterMs = 100,
): { tasks: RulesTasks; alerts: string[]; counts: { processed: number; late: number } } {
  const alerts: string[] = [];
  const counts = { processed: 0, late: 0 };
  const tasks = new RulesTasks({
    bus: b,
    group,
    topics: ['logs', 'metrics'],
    newEngine: (onAlert) => engine(onAlert),
    onAlert: (a) => alerts.push(a.id),
    onState: () => {},
    canSnapshot: () => true,
    telemetry: createTelemetry(),
    logger,
    idleAfterMs,
    sessionTimeoutMs: 10_000,
  });
  closers.push(() => tasks.stop());
  return { tasks, alerts, counts };
}

/** Adds what the tasks processed and counted late since the last call. */
function count(t: { tasks: RulesTasks; counts: { processed: number; late: number } }): void {
  const c = t.tasks.takeCounts();
  t.counts.processed += c.processed;
  t.counts.late += c.late;
}

/** Waits until `t` has processed `n` events in all and holds none back. */
async function processedAll(
  what: string,
  t: { tasks: RulesTasks; counts: { processed: number; late: number } },
  n: number,
  ms = 30_000,
): Promise<void> {
  await until(
    what,
    () => {
      count(t);
      return t.counts.processed === n && t.tasks.held() === 0;
    },
    ms,
  );
}

async function publish(b: KafkaBus, events: Event[]): Promise<void> {
  for (let i = 0; i < events.length; i += 5_000) {
    const r = await b.publish(events.slice(i, i + 5_000));
    expect(r.rejected).toEqual([]);
  }
}

async function admin() {
  const a = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING }).admin();
  await a.connect();
  closers.push(() => a.disconnect());
  return a;
}

/** A gate: `wait()` resolves once `open()` is called. */
function gate(): { wait: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { wait: () => opened, open };
}

describe.skipIf(!brokers)(
  `rules tasks, with the order of their reads forced${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('a task restored behind the commit is not caught up by a late read of the group lag', async () => {
      const prefix = `rp${randomUUID().slice(0, 8)}.`;
      const group = `${prefix}rules`;
      const b = await bus(prefix, 1);
      // Bursts early and late in the stream: the late one is past the first fetch.
      const events = stream(['web'], 30_000, [0.1, 0.9]);
      const expected = expectedAlerts(events);
      expect(expected).toHaveLength(2);
      await publish(b, events);
      const end = Number((await b.latest(['logs']))['logs/0']);
      expect(end).toBe(events.length);
      // The group committed at the log end, and the changelog holds nothing (lost): the
      // task starts with no state from offset 0 and replays up to the committed offset.
      const a = await admin();
      for (const topic of ['logs', 'metrics'])
        await a.setOffsets({
          groupId: group,
          topic: `${prefix}${topic}`,
          partitions: [{ partition: 0, offset: topic === 'logs' ? String(end) : '0' }],
        });

      // The group's lag as the bus reads it, answered once the gate opens.
      const probeGate = gate();
      const probes: KafkaGroupLag[][] = [];
      let answered = 0;
      const groupLag = b.groupLag.bind(b);
      b.groupLag = async (g, topics) => {
        const read = await groupLag(g, topics);
        if (g !== group) return read;
        probes.push(read);
        await probeGate.wait();
        answered++;
        return read;
      };
      // The replay held after its first batch of logs, as between two fetches.
      const replayGate = gate();
      const batches: number[] = [];
      let waiting = false;
      const consumeTasks = b.consumeTasks.bind(b);
      b.consumeTasks = (options, mode) =>
        consumeTasks(
          {
            ...options,
            handler: async (batch) => {
              if (batch.topic === 'logs') {
                batches.push(batch.messages.length);
                if (batches.length > 1) {
                  waiting = true;
                  await replayGate.wait();
                }
              }
              return options.handler(batch);
            },
          },
          mode,
        );

      const { logger } = capture();
      const w = tasksOn(b, group, logger);
      await w.tasks.start();
      await until('the replay held after its first batch', () => waiting, 30_000);
      await processedAll('the first batch processed', w, batches[0]!, 10_000);
      expect(batches[0]).toBeLessThan(end);
      // The read of the group's lag answers now, during the replay.
      probeGate.open();
      await until('the lag read answered', () => answered === probes.length, 5_000);
      await new Promise((r) => setTimeout(r, 100));
      const lag = (await w.tasks.lag()).logs;
      // The clock's tick, once the engine has seen no event for the allowed lateness (its
      // idle time): a task caught up would have its watermark driven to the wall clock.
      await new Promise((r) => setTimeout(r, LATENESS_MS + 200));
      await w.tasks.tick();
      replayGate.open();
      await processedAll('the replay processed', w, end);
      console.log(
        `logs batches ${JSON.stringify(batches)}; lag reads at the join ${JSON.stringify(probes.map((p) => p.map((l) => `${l.topic}/${l.partition} lag ${l.lag}`)))}; lag during the replay ${lag}; late ${w.counts.late}; alerts ${w.alerts.length} of ${expected.length}`,
      );
      // Behind by what the first batch did not bring, its clock waiting, no event late.
      expect(lag).toBe(end - batches[0]!);
      expect(w.counts.late).toBe(0);
      expect([...w.alerts].sort()).toEqual(expected);
    }, 60_000);

    it('a quiet partition is not idle by the clock alone: a worker starved past idleAfterMs waits for the fetch', async () => {
      // A worker whose loop did not run for longer than idleAfterMs (CPU starved, a long
      // collection) finds every quiet partition past its deadline when it runs again,
      // the fetch holding their new messages not yet read: by the clock alone, the
      // events it held of the other partition went first and those messages came late.
      const prefix = `ri${randomUUID().slice(0, 8)}.`;
      const group = `${prefix}rules`;
      const b = await bus(prefix, 1);
      const w = tasksOn(b, group, capture().logger, 3_000);
      await w.tasks.start();
      const t0 = Date.now() - 5 * 60_000;
      const metric = (at: number): Event => ({
        '@timestamp': at,
        'service.name': 'web',
        'metric.name': 'cpu',
        'metric.value': 1,
      });
      const logLine: Event = {
        '@timestamp': t0 + 60_000,
        'service.name': 'web',
        'log.level': 'info',
        message: 'a minute on',
      };
      // The first metric is held for the logs partition, quiet but at its end only since
      // the start; the log line, a minute later in event time, comes meanwhile: the metric
      // goes, and the log line is held for the metrics partition, at its end a moment ago.
      await publish(b, [metric(t0)]);
      await until('the metric held', () => w.tasks.held() === 1, 10_000);
      await publish(b, [logLine]);
      await until(
        'the metric processed, the log line held',
        () => {
          count(w);
          return w.counts.processed === 1 && w.tasks.held() === 1;
        },
        10_000,
      );
      // A metric from before the log line is written, and the loop stops for 5 s (more
      // than idleAfterMs) before the fetch answering with it is read.
      await publish(b, [metric(t0 + 10_000)]);
      const stopUntil = Date.now() + 5_000;
      while (Date.now() < stopUntil);
      await processedAll('all three', w, 3);
      console.log(`late ${w.counts.late} of 3`);
      expect(w.counts.late).toBe(0);
    }, 60_000);

    /**
     * A first worker snapshots two tasks and stops; retention then takes the partitions
     * past the snapshots' offsets. Worker A's first assignment (both tasks) is held at
     * `hold`: after its commit reached the broker (`commit`: the tasks restored), at
     * its restore's first read (`restore`: not restored yet), or at the tombstones of its
     * last task's restore (`drop`: both restored, the last not yet marked so, nothing
     * committed). Worker B joins meanwhile, and A's next assignment keeps one task. With
     * `drop`, A then snapshots the task it kept (its commit names the retained start) and
     * its first assignment goes on: it must commit nothing. Then A goes away without a
     * snapshot and B takes the task over from what the group's offsets name.
     */
    const overtaken = async (hold: 'commit' | 'restore' | 'drop') => {
      const prefix = `rb${randomUUID().slice(0, 8)}.`;
      const group = `${prefix}rules`;
      const services = ['api', 'web', 'db', 'cache'];
      const b0 = await bus(prefix, 2);
      // Three errors per service at the end of the first part: in the snapshot's state.
      const first = stream(services, 500, []);
      const t = Number(first.at(-1)!['@timestamp']) + 1_000;
      const line = (s: string, at: number, level: 'error' | 'info'): Event => ({
        '@timestamp': at,
        'service.name': s,
        'log.level': level,
        message: `${level} at ${at - t}`,
      });
      for (let i = 0; i < 3; i++) for (const s of services) first.push(line(s, t + i, 'error'));
      await publish(b0, first);
      const snapshotAt = await b0.latest(['logs']);
      expect(Object.values(snapshotAt).every((n) => n > 0)).toBe(true);
      // A first worker processes it and stops: each task's snapshot is on the changelog
      // and its offsets committed.
      const w0 = tasksOn(b0, group, capture().logger);
      await w0.tasks.start();
      await processedAll('the first worker to process the first part', w0, first.length);
      await w0.tasks.stop();
      const a = await admin();
      const committed = async () => {
        const out: Record<string, number> = {};
        for (const { topic, partitions } of await a.fetchOffsets({
          groupId: group,
          topics: [`${prefix}logs`],
        }))
          for (const p of partitions)
            out[`${topic.slice(prefix.length)}/${p.partition}`] = Number(p.offset);
        return out;
      };
      expect(await committed()).toEqual(snapshotAt);
      // A second part, then retention takes the partitions up to their end: a task
      // restored from the snapshot starts at the retained start, past its offsets.
      const second = services.flatMap((s) => [1, 2, 3].map((i) => line(s, t + i * 1_000, 'info')));
      await publish(b0, second);
      const cut = await b0.latest(['logs']);
      for (const [k, end] of Object.entries(cut))
        await a.deleteTopicRecords({
          topic: `${prefix}logs`,
          partitions: [{ partition: Number(k.split('/')[1]), offset: String(end) }],
        });
      expect(await b0.earliest(['logs'])).toEqual(cut);

      // Worker A: its first assignment held at `hold` (the broker's answer, unchanged,
      // given to A once the gate opens); meanwhile B joins, and A's next assignment keeps
      // one of the tasks the first was given.
      const holdGate = gate();
      let held = false;
      let calls = 0;
      const once = async <T>(answer: T): Promise<T> => {
        if (++calls === 1) {
          held = true;
          await holdGate.wait();
        }
        return answer;
      };
      // A's member id sorts before B's, so that A keeps task 0 in every run (`drop`: the
      // task restored before the held tombstones, for which the first assignment, going
      // on, would commit).
      const b1 = await bus(prefix, 2, 'drover-a');
      // Each of A's assignments' restore and commit, as the bus awaits it.
      const assignments: Array<Promise<void>> = [];
      const consumeTasksOf = b1.consumeTasks.bind(b1);
      b1.consumeTasks = (options, mode) =>
        consumeTasksOf(options, {
          ...mode,
          onAssigned: (tasks, c) => {
            const p = mode.onAssigned(tasks, c);
            assignments.push(p);
            return p;
          },
        });
      if (hold === 'commit') {
        const gated = (c: TaskConsumer): TaskConsumer => ({
          ...c,
          commit: async (positions) => once(await c.commit(positions)),
        });
        const consumeTasks = b1.consumeTasks.bind(b1);
        b1.consumeTasks = async (options, mode) =>
          gated(
            await consumeTasks(options, {
              ...mode,
              onAssigned: (tasks, c) => mode.onAssigned(tasks, gated(c)),
            }),
          );
      } else if (hold === 'drop') {
        // The tombstones of task 1's restore, the last of the assignment's (tasks 0, 1).
        const changelogOf = b1.changelog.bind(b1);
        b1.changelog = async (...args) => {
          const log = await changelogOf(...args);
          const drop = log.dropChunks.bind(log);
          log.dropChunks = async (slot, keys) =>
            slot === 1 ? once(await drop(slot, keys)) : drop(slot, keys);
          return log;
        };
      } else {
        // The restore's first read: the group's committed offsets.
        const committedOf = b1.committed.bind(b1);
        b1.committed = async (g, topics) => once(await committedOf(g, topics));
      }
      const logA = capture();
      const wa = tasksOn(b1, group, logA.logger);
      await wa.tasks.start();
      await until(`A's first assignment held at its ${hold}`, () => held, 30_000);
      const restoredByA = logA.lines.filter((l) => l.msg === 'rules task restored');
      expect(restoredByA.map((l) => l.task).sort()).toEqual(hold === 'restore' ? [] : [0, 1]);
      const b2 = await bus(prefix, 2, 'drover-z');
      const logB = capture();
      const wb = tasksOn(b2, group, logB.logger);
      await wb.tasks.start();
      type Assigned = { tasks: number[]; restored: number[]; generation: number };
      const assigned = (lines: Array<Record<string, unknown>>) =>
        lines.filter((l) => l.msg === 'rules tasks assigned') as unknown as Assigned[];
      const next = await until('A and B to commit the next assignment', () => {
        const l = assigned(logA.lines)[0];
        return l && assigned(logB.lines).length > 0 ? l : undefined;
      });
      const afterNext = await committed();
      expect(next.tasks).toHaveLength(1);
      const kept = next.tasks[0]!;
      expect(kept).toBe(0);
      // `drop`: A snapshots the task it kept: the group's offsets for it move to the
      // retained start (its position), past the snapshot it was restored from.
      let afterFirst: Record<string, number> | undefined;
      if (hold === 'drop') {
        await wa.tasks.snapshotAll();
        const snapshotted = await committed();
        expect(snapshotted[`logs/${kept}`]).toBe(cut[`logs/${kept}`]);
        holdGate.open();
        // The first assignment, overtaken, goes on from its tombstones: it must not
        // restore, seek or commit for the next assignment's tasks in their generation.
        await assignments[0];
        afterFirst = await committed();
      } else holdGate.open();
      // A kept one task: restored by the assignment whose commit it never saw returned,
      // or, if that assignment's restore had not run, restored now.
      expect.soft(next.restored).toEqual(hold === 'restore' ? [kept] : []);

      // A goes away without a snapshot (its bus closed under it, as a crash): B takes
      // the task A kept, and restores it from what the group's offsets name.
      const movedAt = Date.now();
      await b1.close();
      const last = await until('B to hold both tasks', () =>
        assigned(logB.lines).find((l) => l.tasks.length === 2),
      );
      const restoredByB = logB.lines.filter(
        (l) => l.msg === 'rules task restored' && Number(l.time) >= movedAt,
      );
      // Two more errors per service: five within a minute with the snapshot's three.
      const third = services.flatMap((s) => [0, 1].map((i) => line(s, t + 10_000 + i, 'error')));
      await publish(b2, third);
      const expected = expectedAlerts([...first, ...second, ...third]);
      expect(expected).toHaveLength(services.length);
      await until(
        'B to process the third part',
        () => {
          count(wb);
          return wb.counts.processed >= third.length && wb.tasks.held() === 0;
        },
        20_000,
      );
      console.log(
        `${hold} held: A restored ${JSON.stringify(restoredByA.map((l) => ({ task: l.task, offsets: l.offsets })))} and kept task ${kept} in generation ${next.generation}; committed then ${JSON.stringify(afterNext)} (snapshot at ${JSON.stringify(snapshotAt)}, retained from ${JSON.stringify(cut)}); B in generation ${last.generation} restored ${JSON.stringify(restoredByB.map((l) => ({ task: l.task, offsets: l.offsets })))}; B's alerts ${wb.alerts.length} of ${expected.length}${afterFirst ? `; committed after the first assignment went on ${JSON.stringify(afterFirst)}` : ''}`,
      );
      // The overtaken assignment committed nothing: the kept task's offsets are still
      // those of A's snapshot, not rolled back to the one it was restored from.
      if (afterFirst) expect.soft(afterFirst[`logs/${kept}`]).toBe(cut[`logs/${kept}`]);
      // The commit named the snapshot the kept task was restored from (its offsets, not
      // the retained start its position is at), so its next owner restores that snapshot.
      expect.soft(afterNext).toEqual(snapshotAt);
      expect.soft(restoredByB.map((l) => l.task)).toContain(kept);
      expect([...wb.alerts].sort()).toEqual(expected);
    };

    it('a task kept from an assignment overtaken before its commit: the next commit names its snapshot', async () => {
      await overtaken('commit');
    }, 60_000);

    it('a task kept from an assignment overtaken before its restore: restored by the next', async () => {
      await overtaken('restore');
    }, 60_000);

    it('an assignment overtaken at its restore tombstones commits nothing for the next', async () => {
      await overtaken('drop');
    }, 60_000);

    /**
     * Two overtaken assignments in a row (docs/scale-out.md, "Position and state"): A
     * holds both tasks and commits their snapshots; B joins and takes task 1, while A's
     * assignment (task 0) is held at its restore's first read, so it never commits. B
     * snapshots task 1 further on and leaves: A's next assignment gives it task 1 back and
     * restores B's snapshot, its commit's answer held until C joins; A's next assignment
     * keeps task 1. Its commit must name B's snapshot, the one the task was restored
     * from, not the offsets A committed for task 1 before it lost it.
     */
    it('a task lost and given back by overtaken assignments: the commit names its restored snapshot', async () => {
      const prefix = `rc${randomUUID().slice(0, 8)}.`;
      const group = `${prefix}rules`;
      const services = ['api', 'web', 'db', 'cache', 'auth', 'mail'];
      // Member ids begin with the client id: C sorts first, then A, then B. Tasks are
      // dealt round-robin in that order: with A and B, A gets task 0; with A and C, task 1.
      const b1 = await bus(prefix, 2, 'drover-m');
      // Each service's partition, from publishing its part alone.
      const partitionOf = new Map<string, number>();
      for (const s of services) {
        const was = await b1.latest(['logs']);
        await publish(b1, stream([s], 100, []));
        const now = await b1.latest(['logs']);
        partitionOf.set(s, now['logs/1']! > (was['logs/1'] ?? 0) ? 1 : 0);
      }
      const onOne = services.filter((s) => partitionOf.get(s) === 1);
      expect(onOne.length).toBeGreaterThan(0);
      expect(onOne.length).toBeLessThan(services.length);
      const firstEnd = await b1.latest(['logs']);

      // A's restore's first read (the group's committed offsets) and A's commit's answer,
      // each held once when armed (the broker's answer, unchanged, given later).
      let holdRead: ReturnType<typeof gate> | undefined;
      let holdCommit: ReturnType<typeof gate> | undefined;
      let heldRead = false;
      let heldCommit = false;
      const committedOf = b1.committed.bind(b1);
      b1.committed = async (g, topics) => {
        const read = await committedOf(g, topics);
        const h = holdRead;
        if (h && g === group) {
          holdRead = undefined;
          heldRead = true;
          await h.wait();
        }
        return read;
      };
      const gated = (c: TaskConsumer): TaskConsumer => ({
        ...c,
        commit: async (positions) => {
          const generation = await c.commit(positions);
          const h = holdCommit;
          if (h) {
            holdCommit = undefined;
            heldCommit = true;
            await h.wait();
          }
          return generation;
        },
      });
      let assignments = 0;
      const consumeTasks = b1.consumeTasks.bind(b1);
      b1.consumeTasks = async (options, mode) =>
        gated(
          await consumeTasks(options, {
            ...mode,
            onAssigned: (tasks, c) => {
              assignments++;
              return mode.onAssigned(tasks, gated(c));
            },
          }),
        );
      const a = await admin();
      const committed = async () => {
        const out: Record<string, number> = {};
        for (const { topic, partitions } of await a.fetchOffsets({
          groupId: group,
          topics: [`${prefix}logs`],
        }))
          for (const p of partitions)
            out[`${topic.slice(prefix.length)}/${p.partition}`] = Number(p.offset);
        return out;
      };
      type Assigned = { tasks: number[]; restored: number[]; generation: number };
      const assigned = (lines: Array<Record<string, unknown>>) =>
        lines.filter((l) => l.msg === 'rules tasks assigned') as unknown as Assigned[];

      // A alone: both tasks, processed to the end and snapshotted (their commits).
      const logA = capture();
      const wa = tasksOn(b1, group, logA.logger);
      await wa.tasks.start();
      const total = Object.values(firstEnd).reduce((x, y) => x + y, 0);
      await processedAll('A to process the first part', wa, total);
      await wa.tasks.snapshotAll();
      expect(await committed()).toEqual(firstEnd);

      // B joins: A's assignment (task 0) held at its restore's first read.
      holdRead = gate();
      const readGate = holdRead;
      const b2 = await bus(prefix, 2, 'drover-z');
      const logB = capture();
      const wb = tasksOn(b2, group, logB.logger);
      await wb.tasks.start();
      await until("A's second assignment held at its restore", () => heldRead, 30_000);
      await until("B's assignment of task 1", () =>
        assigned(logB.lines).find((l) => l.tasks.join() === '1'),
      );
      // B processes more of task 1 and snapshots it there.
      const more = onOne.flatMap((s) => stream([s], 50, []));
      await publish(b2, more);
      await processedAll('B to process the second part', wb, more.length);
      await wb.tasks.snapshotAll();
      const bSnapshot = await committed();
      expect(bSnapshot['logs/1']).toBe(firstEnd['logs/1']! + more.length);

      // B leaves: A's next assignment gives it both tasks, task 1 restored from B's
      // snapshot; its commit reaches the broker, its answer is held.
      holdCommit = gate();
      const commitGate = holdCommit;
      const before = assignments;
      await wb.tasks.stop();
      await until("A's third assignment", () => assignments > before, 30_000);
      readGate.open();
      await until("A's third assignment's commit held", () => heldCommit, 30_000);
      const restoredByA = logA.lines.filter((l) => l.msg === 'rules task restored');
      expect(
        restoredByA.map((l) => [l.task, (l.offsets as Record<string, number>)['logs/1']]),
      ).toEqual([[1, bSnapshot['logs/1']]]);

      // C joins: A's next assignment keeps task 1, and commits.
      const b3 = await bus(prefix, 2, 'drover-a');
      const wc = tasksOn(b3, group, capture().logger);
      await wc.tasks.start();
      const next = await until("A's next assignment committed", () => assigned(logA.lines)[1]);
      const afterNext = await committed();
      commitGate.open();
      console.log(
        `A committed ${JSON.stringify(firstEnd)} for both tasks; B's snapshot of task 1 at ${bSnapshot['logs/1']}; A restored ${JSON.stringify(restoredByA.map((l) => ({ task: l.task, offsets: l.offsets })))}, kept ${JSON.stringify(next.tasks)} (restored ${JSON.stringify(next.restored)}) in generation ${next.generation}; committed then ${JSON.stringify(afterNext)}`,
      );
      expect(next.tasks).toEqual([1]);
      expect(next.restored).toEqual([]);
      expect(afterNext['logs/1']).toBe(bSnapshot['logs/1']);
    }, 60_000);

    /**
     * A seek left behind by an overtaken assignment (docs/scale-out.md, "Position and
     * state"): kafkajs keeps a seek in its consumer group's seek map, across generations,
     * until the partition is next fetched. The group committed at the log end and the
     * changelog holds nothing (lost): A's first assignment restores task 0 with no state
     * from offset 0 and seeks logs/0 there. Its answer to the log ends is held until A's
     * consumer has seen the rebalance B's join began (kafkajs's REBALANCING, just before
     * it rejoins): the seek is made then, and no fetch of logs/0 follows it in that
     * generation. B (its member id sorts first) takes the task, processes the first part,
     * snapshots it at the log end and leaves: A's next assignment restores B's snapshot,
     * whose offsets equal the group's. A must fetch logs/0 from there, not from the old
     * seek's offset 0.
     */
    it('a seek of an overtaken assignment: the task given back fetches from its restore', async () => {
      const prefix = `rs${randomUUID().slice(0, 8)}.`;
      const group = `${prefix}rules`;
      const b0 = await bus(prefix, 1);
      const first = stream(['web'], 2_000, [0.5]);
      await publish(b0, first);
      const end = Number((await b0.latest(['logs']))['logs/0']);
      expect(end).toBe(first.length);
      const a = await admin();
      for (const topic of ['logs', 'metrics'])
        await a.setOffsets({
          groupId: group,
          topic: `${prefix}${topic}`,
          partitions: [{ partition: 0, offset: topic === 'logs' ? String(end) : '0' }],
        });

      // A: its first answer to the log ends held until its consumer sees a rebalance; its
      // seeks and the batches of logs/0 its handler is given, recorded.
      const b1 = await bus(prefix, 1, 'drover-z');
      const rebalance = gate();
      let heldEnds = false;
      let assignments = 0;
      const seeks: Array<{ at: string; offset: number; assignments: number }> = [];
      const delivered: Array<{ first: number; count: number }> = [];
      const gated = (c: TaskConsumer): TaskConsumer => ({
        ...c,
        readEnds: async () => {
          await c.readEnds();
          if (!heldEnds) {
            heldEnds = true;
            await rebalance.wait();
          }
        },
        seek: (topic, partition, offset) => {
          seeks.push({ at: `${topic}/${partition}`, offset, assignments });
          c.seek(topic, partition, offset);
        },
      });
      const consumeTasks = b1.consumeTasks.bind(b1);
      b1.consumeTasks = async (options, mode) =>
        gated(
          await consumeTasks(
            {
              ...options,
              handler: (batch) => {
                if (batch.topic === 'logs')
                  delivered.push({
                    first: Number(batch.messages[0]?.offset ?? -1),
                    count: batch.messages.length,
                  });
                return options.handler(batch);
              },
            },
            {
              ...mode,
              onAssigned: (tasks, c) => {
                assignments++;
                return mode.onAssigned(tasks, gated(c));
              },
              onRebalancing: () => {
                mode.onRebalancing();
                rebalance.open();
              },
            },
          ),
        );
      const logA = capture();
      const wa = tasksOn(b1, group, logA.logger);
      await wa.tasks.start();
      await until("A's first assignment held at its log ends", () => heldEnds, 30_000);

      // B joins: A's consumer sees the rebalance, its first assignment seeks and is
      // overtaken; B holds the task.
      const b2 = await bus(prefix, 1, 'drover-a');
      const logB = capture();
      const wb = tasksOn(b2, group, logB.logger);
      await wb.tasks.start();
      type Assigned = { tasks: number[]; restored: number[]; generation: number };
      const assigned = (lines: Array<Record<string, unknown>>) =>
        lines.filter((l) => l.msg === 'rules tasks assigned') as unknown as Assigned[];
      await until("B's assignment of task 0", () =>
        assigned(logB.lines).find((l) => l.tasks.join() === '0'),
      );
      await until("A's next assignment", () => assignments >= 2);
      const overtakenSeeks = [...seeks];
      // The first assignment sought logs/0 to 0 before the next one came.
      expect(overtakenSeeks).toContainEqual({ at: 'logs/0', offset: 0, assignments: 1 });
      expect(overtakenSeeks.every((s) => s.assignments === 1)).toBe(true);
      await processedAll('B to process the first part', wb, first.length);
      await wb.tasks.snapshotAll();
      const assignedBefore = assigned(logA.lines).length;
      await wb.tasks.stop();
      const committed = (await a.fetchOffsets({ groupId: group, topics: [`${prefix}logs`] }))[0]!
        .partitions[0]!.offset;
      expect(Number(committed)).toBe(end);

      // A's next assignment: task 0 back, restored from B's snapshot at the log end.
      await until("A's assignment of task 0", () =>
        assigned(logA.lines)
          .slice(assignedBefore)
          .find((l) => l.tasks.join() === '0'),
      );
      const restored = logA.lines.filter((l) => l.msg === 'rules task restored');
      expect(restored.map((l) => (l.offsets as Record<string, number>)['logs/0'])).toEqual([end]);
      // A second part after the first: a burst A's engine sees with B's state.
      const t = Number(first.at(-1)!['@timestamp']) + 1_000;
      const second: Event[] = [];
      for (let i = 0; i < 200; i++)
        second.push({
          '@timestamp': t + i * 100,
          'service.name': 'web',
          'log.level': i >= 100 && i < 106 ? 'error' : 'info',
          message: `second ${i}`,
        });
      await publish(b0, second);
      await processedAll('A to process the second part', wa, second.length);
      const expected = expectedAlerts([...first, ...second]);
      expect(expected).toHaveLength(2);
      const below = delivered.filter((d) => d.first < end);
      console.log(
        `A's overtaken assignment sought ${JSON.stringify(overtakenSeeks)}; B's snapshot and the group's offset at ${end}; A restored ${JSON.stringify(restored.map((l) => l.offsets))} and sought ${JSON.stringify(seeks.slice(overtakenSeeks.length))}; A's handler was given logs/0 batches from ${JSON.stringify(delivered.map((d) => d.first))} (${below.reduce((n, d) => n + d.count, 0)} messages in batches from before ${end}); alerts B ${wb.alerts.length}, A ${wa.alerts.length} of ${expected.length}; late A ${wa.counts.late}`,
      );
      // A's fetch of logs/0 starts where its restore put the task, not at the old seek.
      expect.soft(below).toEqual([]);
      expect.soft(delivered[0]?.first).toBe(end);
      expect(wa.counts.late).toBe(0);
      expect([...wb.alerts, ...wa.alerts].sort()).toEqual(expected);
    }, 60_000);
  },
);
