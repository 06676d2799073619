/**
 * Rules workers on Kafka (docs/scale-out.md, "Rules workers"): the rules group hands
 * out tasks (partition i of `logs` and `metrics`, co-partitioned by `service.name`),
 * and this process holds one engine, one event-time merge (rules-input.ts) and one
 * snapshot per task it is assigned.
 *
 * - Position: the group's committed offsets follow processing. A task's snapshot (the
 *   engine's state and the next offset per partition it reflects) is written to the
 *   compacted changelog `<topicPrefix>rules-state` (ingest/bus/kafka-changelog.ts), and
 *   only then are those offsets committed, with the member's generation (the broker
 *   refuses a stale one). The handler commits nothing.
 * - Assignment: a task new to this process is restored from the changelog (the head
 *   chooseHead picks against the group's committed offsets), then replayed from the
 *   offsets it records; messages before them are skipped by offset. Its alerts are
 *   emitted once the generation is known (learned from the assignment's commit, which
 *   names each task's snapshot: the head a restored task restored, or a kept task's last
 *   committed offsets, never a kept task's position past them).
 *   A task whose changelog partition holds a corrupt batch (the same one at two reads)
 *   stops alone until the next assignment (stopTask()): its partitions are paused, and
 *   the assignment's other tasks restore and run.
 * - Revocation: at a rebalance every task stops emitting (alerts are held) and each is
 *   snapshotted and committed while the old generation still stands, unless it holds
 *   alerts by its turn (it keeps its last committed snapshot, from before them); at the
 *   assignment the held alerts of kept tasks go out and those of lost tasks are dropped
 *   (counted as fenced): the new owner replays from the last committed snapshot and
 *   fires them.
 * - Alerts carry `task: { id, generation }`; the action store turns away a claim from a
 *   generation older than one it has seen for the task (actions/journal).
 * - Stalls: a process stopped, or an event loop blocked, a third of the session timeout
 *   or longer may have been removed from the group while it could not heartbeat, its
 *   tasks given to others. From the moment it notices (a watchdog timer that fires late,
 *   or an emission that finds the watchdog silent) every task holds its alerts, and no
 *   snapshot is taken, until a commit sent after the stall succeeds in the generation the
 *   tasks were assigned in (membership confirmed: the held alerts go out) or an
 *   assignment comes (the member may have been removed and rejoined: every task it held
 *   is dropped with its held alerts, counted as fenced, and restored from the changelog).
 * - The lease: a heartbeat or commit the broker accepted in the tasks' generation proves
 *   the membership until the session timeout after it was sent. With none for 0.9 of it
 *   (heartbeats lost on the network while the process runs on) the worker acts as after
 *   a stall, before the broker can have removed it.
 * - Event time: each task's merge has its own watermark; an idle partition stops holding
 *   back the others after `idleAfterMs` (rules-input.ts). The clock drives a task's
 *   watermark (its absences fire) once that task has nothing left to process.
 * - Global (`global: true`, docs/scale-out.md, "Keys that do not follow the
 *   partitioning"): the same machinery for the rules whose key does not follow the
 *   partitioning, in a group of its own whose one task (GLOBAL_TASK) is every partition
 *   of every topic, held by one member while the others stand by; its snapshots go to a
 *   changelog of their own (`<topicPrefix>rules-global-state`, one partition).
 */
import type { Engine, EngineSnapshot } from '../rules/index.ts';
import type { Alert, Explanation, StateChange } from '../rules/index.ts';
import type {
  BusBatch,
  BusMessage,
  InputFlow,
  InputRef,
  KafkaBus,
  TaskConsumer,
  Topic,
} from '../ingest/bus/index.ts';
import {
  chooseHead,
  type KafkaChangelog,
  type TaskHistory,
} from '../ingest/bus/kafka-changelog.ts';
import { DEFAULT_SESSION_TIMEOUT_MS, type StoppedPartition } from '../ingest/bus/kafka.ts';
import { CorruptRecordBatchError } from '../ingest/bus/kafka-fetch.ts';
import type { Logger } from './logger.ts';
import { createRulesInput, type RulesInput } from './rules-input.ts';
import type { Telemetry } from './telemetry.ts';

export interface RulesTasksOptions {
  bus: KafkaBus;
  group: string;
  topics: Topic[];
  /** A fresh engine; its alerts and state changes go to the callbacks given. */
  newEngine(
    onAlert: (alert: Alert, explanation?: Explanation) => void,
    onState: (change: StateChange) => void,
  ): Engine;
  onAlert(alert: Alert, explanation?: Explanation): void;
  onState(change: StateChange): void;
  /** Whether a snapshot may be taken now (no remediation in flight). */
  canSnapshot(): boolean;
  telemetry: Telemetry;
  logger: Logger;
  maxAttempts?: number;
  idleAfterMs?: number;
  /** The group's session timeout (KafkaBusOptions.sessionTimeoutMs); sets the stall bound. */
  sessionTimeoutMs?: number;
  /** One task of every partition (GLOBAL_TASK) instead of a task per partition number. */
  global?: boolean;
}

/**
 * The global task's id in alerts (`task.id`) and in the action store's fence: distinct
 * from every partition task's id (partition numbers, 0 and up), since its generations
 * are another group's and must not be compared with partition task 0's.
 */
export const GLOBAL_TASK = -1;

/**
 * Alerts a task holds while it may be moving (between a rebalance's start and the
 * assignment that follows). Bound: this many per task; past it the oldest is dropped and
 * counted (a replay by whoever holds the task next fires it again).
 */
const MAX_HELD_ALERTS = 10_000;

/**
 * The clock's tick reads the log ends the consumer's fetches bring (TaskConsumer.ends);
 * a partition none has reported on for this long (not fetched: paused) is read from the
 * broker again. Every fetch answers for each partition it asks for, those with nothing
 * new too, so an idle worker's partitions have readings at most one fetch wait old and
 * it does not ask the broker for them.
 */
const ENDS_READ_EVERY_MS = 30_000;

/**
 * A scrape's lag (lag()) reads a partition's log end from the broker when the fetches'
 * last reading of it is older than this. Every partition a consumer fetches is answered
 * at least once per fetch wait (1 s by default, KafkaBusOptions.sessionTimeoutMs), and
 * more often while messages come, so only a partition just assigned (not fetched yet)
 * or a consumer busy with a batch for this long gets here; one not fetched (paused or
 * stopped) is read from the broker at every scrape.
 */
const LAG_READING_MAX_AGE_MS = 5_000;

/**
 * A stall at least this fraction of the session timeout fences the tasks. kafkajs
 * heartbeats after each fetch, which waits at most a third of the session timeout, once
 * a heartbeat interval (at most a third) has passed (KafkaBusOptions.sessionTimeoutMs):
 * the broker hears from a live member at least every two thirds, so a stall shorter
 * than a third cannot by itself cost the membership.
 */
const STALL_FRACTION = 1 / 3;

/**
 * The membership lease, as a fraction of the session timeout. The broker removes a member
 * a session timeout after it last received a heartbeat (or a join, sync or commit) from
 * it, and received it no earlier than it was sent: a member whose request sent at S
 * succeeded cannot have been removed before S + the session timeout. Past this fraction
 * of it with no newer confirmation the worker may have lost its tasks without knowing
 * (its heartbeats lost on the network, the broker unreachable), and treats that as a
 * stall. A live member's heartbeats go out at least every two thirds (STALL_FRACTION's
 * reasoning), so the lease lapses only when one is late or lost.
 */
const LEASE_FRACTION = 0.9;

interface Task {
  id: number;
  engine: Engine;
  input: RulesInput;
  /** Next offset per `topic/partition` the engine has processed. */
  offsets: Record<string, number>;
  /** The member's generation once known for this assignment; undefined until then. */
  generation: number | undefined;
  held: Array<
    | { kind: 'alert'; alert: Alert; explanation?: Explanation }
    | { kind: 'state'; change: StateChange }
  >;
  /**
   * Where it was restored: the offsets of the head it restored, or, with none, where it
   * started with no state (restoreAndCommit()). What the assignment's commit names for it
   * until a commit of its own has succeeded (committedPositions).
   */
  base: Record<string, number>;
  /**
   * Whether its restore ran (restoreAndCommit(): engine, offsets and base from its head,
   * or its start with none). An assignment overtaken before then leaves it unrestored:
   * the next assignment restores it anew rather than keep it (assigned()).
   */
  restored: boolean;
  /** Offsets below which processing is a replay (the log end when it was restored). */
  replayUntil: Record<string, number>;
  /** The log end per `topic/partition` the bus last reported delivering up to. */
  seenEnd: Record<string, number>;
  counted: { late: number; future: number };
  /**
   * Set when its restore stopped at a corrupt changelog batch (stopTask()): until the
   * next assignment it processes, emits, snapshots and commits nothing, and its
   * partitions are paused.
   */
  stopped: StoppedPartition | undefined;
}

export class RulesTasks {
  private readonly tasks = new Map<number, Task>();
  private consumer: TaskConsumer | undefined;
  private changelog!: KafkaChangelog;
  private rebalancing = false;
  private closing = false;
  /** Counts assignments, so work begun under one can tell it was overtaken. */
  private epoch = 0;
  /** Events processed, and engine counts, not yet added to the counters. */
  private processed = 0;
  /** When a failed read of the log ends for an idleness confirmation was last logged. */
  private endsFailureSaid = Number.NEGATIVE_INFINITY;
  private late = 0;
  private future = 0;
  private snapshotting: Promise<void> | undefined;
  /** The latest assignment's restore and commit, while it runs (stop waits for it). */
  private assigning: Promise<void> | undefined;
  /** The bus's wake-ups for paused partitions (one consumer: one or two). */
  private readonly wakers = new Set<() => void>();
  /** A gap of the monotonic clock this long between watchdog beats is a stall (ms). */
  private readonly stallMs: number;
  /** How long after a confirmed request was sent the membership is known to stand (ms). */
  private readonly leaseMs: number;
  /**
   * When (performance.now()) the latest request that confirmed the membership in the
   * tasks' generation was sent: a heartbeat the broker accepted or a commit.
   */
  private confirmedSent = performance.now();
  /** When the watchdog last ran (performance.now()). */
  private lastBeat = performance.now();
  private watchdog: NodeJS.Timeout | undefined;
  /**
   * Set when a stall is noticed (performance.now() then): the tasks hold their alerts
   * until a commit sent after it succeeds, or the next assignment.
   */
  private stalledAt: number | undefined;
  /** The confirming commit in flight, while the tasks are fenced after a stall. */
  private confirming: Promise<void> | undefined;
  /** Changelog partitions stopped restores listed: at most one per task held. */
  private restoreStops: StoppedPartition[] = [];
  /**
   * The offsets last committed per `topic/partition` (a confirmation commits them again).
   * Only of the tasks held: a task's entries go when it is revoked or restored anew
   * (assigned()), so bounded by the partitions of the tasks held.
   */
  private committedPositions: Record<string, number> = {};
  /** Partitions per topic (the same for each), read at start. */
  private partitions = 0;
  private readonly global: boolean;
  /** How this group's logs name its tasks. */
  private readonly what: string;

  constructor(private readonly o: RulesTasksOptions) {
    const session = o.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    this.stallMs = session * STALL_FRACTION;
    this.leaseMs = session * LEASE_FRACTION;
    this.global = o.global === true;
    this.what = this.global ? 'rules global task' : 'rules tasks';
  }

  /** The task a partition's messages belong to. */
  private taskOf(partition: number): number {
    return this.global ? GLOBAL_TASK : partition;
  }

  /** A task's `topic/partition`s: partition id of each topic, or (global) all of them. */
  private partitionsOf(id: number): string[] {
    if (!this.global) return this.o.topics.map((t) => `${t}/${id}`);
    const out: string[] = [];
    for (const t of this.o.topics) for (let p = 0; p < this.partitions; p++) out.push(`${t}/${p}`);
    return out;
  }

  /** The changelog partition (and key) of a task: its id, or 0 for the global task. */
  private slot(id: number): number {
    return this.global ? 0 : id;
  }

  /**
   * Notices a stall: the watchdog's beat, or an emission, finding the monotonic clock
   * past the last beat by stallMs. Returns whether the tasks are fenced.
   */
  private checkStall(): boolean {
    const now = performance.now();
    if (this.stalledAt === undefined && now - this.lastBeat >= this.stallMs) {
      this.stalledAt = now;
      this.o.telemetry.stalls.inc();
      this.o.logger.warn(
        { stalledMs: Math.round(now - this.lastBeat), tasks: [...this.tasks.keys()] },
        `${this.what}: the worker stalled past a third of the session timeout; its tasks hold their alerts until its membership is confirmed`,
      );
      void this.confirm();
    } else if (
      this.stalledAt === undefined &&
      now - this.confirmedSent >= this.leaseMs &&
      !this.rebalancing &&
      [...this.tasks.values()].some((t) => t.generation !== undefined)
    ) {
      // During a rebalance the tasks hold anyway, and the assignment's commit confirms.
      this.stalledAt = now;
      this.o.telemetry.leaseLapses.inc();
      this.o.logger.warn(
        { unconfirmedMs: Math.round(now - this.confirmedSent), tasks: [...this.tasks.keys()] },
        `${this.what}: the worker's membership went unconfirmed for most of the session timeout (heartbeats lost?); its tasks hold their alerts until it is confirmed`,
      );
      void this.confirm();
    }
    this.lastBeat = now;
    return this.stalledAt !== undefined;
  }

  /**
   * Commits the last committed offsets again, in the member's generation, until one sent
   * after the stall succeeds (the tasks' held alerts go out) or an assignment overtakes.
   */
  private confirm(): Promise<void> {
    this.confirming ??= (async () => {
      try {
        for (let attempt = 0; this.stalledAt !== undefined && !this.closing; attempt++) {
          const epoch = this.epoch;
          const generation = this.generation();
          const since = this.stalledAt;
          const consumer = this.consumer;
          // No tasks held, or an assignment in progress: the assignment's commit confirms.
          // (A commit of nothing sends no request, so it would confirm nothing.)
          if (generation === undefined || !consumer || this.rebalancing) return;
          if (Object.keys(this.committedPositions).length === 0) return;
          try {
            const sent = performance.now();
            const now = await consumer.commit({ ...this.committedPositions });
            if (epoch === this.epoch && now === generation && sent >= since) {
              this.unfence(sent);
              return;
            }
          } catch (err) {
            this.o.logger.info(
              { err, generation },
              'the rules worker could not confirm its membership after a stall',
            );
          }
          if (epoch !== this.epoch) return;
          await new Promise((r) => setTimeout(r, Math.min(5_000, 500 * 2 ** attempt)));
        }
      } finally {
        this.confirming = undefined;
      }
    })();
    return this.confirming;
  }

  /**
   * The generation the tasks run in: that of the first task that has one (a task whose
   * restore stopped has none); undefined while none does.
   */
  private generation(): number | undefined {
    for (const t of this.tasks.values()) if (t.generation !== undefined) return t.generation;
    return undefined;
  }

  /**
   * A commit or heartbeat sent at `sent` succeeded in the tasks' generation: the lease
   * runs from it, and a stall noticed before it no longer fences.
   */
  private unfence(sent: number): void {
    if (sent > this.confirmedSent) this.confirmedSent = sent;
    if (this.stalledAt === undefined || sent < this.stalledAt) return;
    this.stalledAt = undefined;
    this.o.logger.info(
      { tasks: [...this.tasks.keys()] },
      'rules worker membership confirmed after a stall',
    );
    if (this.rebalancing) return;
    for (const t of this.tasks.values()) {
      if (t.generation === undefined) continue;
      const held = t.held;
      t.held = [];
      for (const h of held) this.deliver(t, h);
    }
  }

  /**
   * `seed` (the global task, started by a reload that brought its first rules): unless
   * the group has members or a seed already ends its changelog, an empty engine at the log
   * ends is written to the changelog first, and the task starts from there (seed()).
   * `seed: 'new'` (the global task at a start, not a reload): the same, only for a group
   * that never ran (no committed offset, no snapshot in its changelog).
   */
  async start(o: { seed?: boolean | 'new' } = {}): Promise<void> {
    this.lastBeat = performance.now();
    this.watchdog = setInterval(
      () => this.checkStall(),
      Math.max(50, Math.min(1_000, this.stallMs / 4)),
    );
    this.watchdog.unref();
    const counts = await this.o.bus.partitionCounts(this.o.topics);
    const distinct = new Set(this.o.topics.map((t) => counts[t]));
    if (distinct.size !== 1)
      throw new Error(
        `the rules' topics must have the same number of partitions (co-partitioned by service.name): ${this.o.topics.map((t) => `${t} ${counts[t]}`).join(', ')}`,
      );
    this.partitions = counts[this.o.topics[0]!];
    this.changelog = this.global
      ? await this.o.bus.changelog(1, 'rules-global-state')
      : await this.o.bus.changelog(this.partitions);
    if (o.seed !== undefined && o.seed !== false && this.global) await this.seed(o.seed === 'new');
    const flow = this.flow();
    this.consumer = await this.o.bus.consumeTasks(
      {
        group: this.o.group,
        topics: this.o.topics,
        flow,
        ...(this.o.maxAttempts !== undefined && { maxAttempts: this.o.maxAttempts }),
        handler: (batch) => this.handle(batch),
      },
      {
        ...(this.global && { assigner: 'global' as const }),
        onAssigned: (partitions, consumer) => {
          // Called from within consumeTasks (kafkajs joins before run() resolves).
          this.consumer = consumer;
          const ids = this.global ? (partitions.length > 0 ? [GLOBAL_TASK] : []) : partitions;
          const assigning = this.assigned(ids);
          this.assigning = assigning;
          return assigning;
        },
        onRebalancing: () => this.onRebalancing(),
        onHeartbeat: (sent, generation) => {
          const held = this.generation();
          if (held !== undefined && held === generation) this.unfence(sent);
        },
      },
    );
  }

  /**
   * Where the global task starts when a reload brings its first rules (docs/scale-out.md,
   * "Adding and removing global rules"): at the log ends read now, with no state, as a
   * new rule judges events from its reload on. Not from the group's committed offsets:
   * a new group has none (it would replay every retained event and alert on old
   * incidents), and a group whose rules were removed before has those of its last run.
   * Skipped when the group has members (the task runs: this worker joins it) or the
   * changelog already ends with a seed (another worker's reload, not yet joined): the
   * restore takes the earliest seed after the last snapshot (chooseHead).
   * `onlyNew` (a start, not a reload): also skipped when the group ran before (it has a
   * committed offset or a snapshot): a restart resumes the task's state.
   */
  private async seed(onlyNew = false): Promise<void> {
    const ends = await this.o.bus.latest(this.o.topics);
    if ((await this.o.bus.groupMembers(this.o.group)) > 0) return;
    const history = (await this.changelog.read([0])).get(0);
    // A changelog with a corrupt batch holds records (the group ran, or was seeded): not
    // seeded over. The task's restore meets the batch and stops the global task alone,
    // visibly (stopTask()); the partition tasks, and this start, go on.
    if (history?.corrupt) {
      this.o.logger.warn(
        { err: history.corrupt, group: this.o.group },
        'rules global task not seeded: its changelog holds a corrupt record batch',
      );
      return;
    }
    const heads = history?.heads ?? [];
    if (heads.at(-1)?.seed === true) return;
    if (onlyNew) {
      if (heads.length > 0) return;
      const committed = await this.o.bus.committed(this.o.group, this.o.topics);
      if (Object.keys(committed).length > 0) return;
    }
    const noop = () => {};
    const state = JSON.stringify(this.o.newEngine(noop, noop).snapshot());
    await this.changelog.write(
      0,
      { generation: 0, offsets: ends, at: Date.now(), seed: true },
      state,
    );
    this.o.logger.info(
      { group: this.o.group, offsets: ends },
      'rules global task seeded at the log ends: its new rules judge events from here on',
    );
  }

  /** Routes the bus's flow calls to each task's merge. */
  private flow(): InputFlow {
    const wakers = this.wakers;
    return {
      assigned: (refs) => {
        const byTask = new Map<number, InputRef[]>();
        for (const r of refs) {
          const id = this.taskOf(r.partition);
          byTask.set(id, [...(byTask.get(id) ?? []), r]);
        }
        for (const [id, t] of this.tasks) t.input.flow.assigned(byTask.get(id) ?? []);
      },
      caughtUp: (ref, at) => {
        const task = this.tasks.get(this.taskOf(ref.partition));
        // A stopped task processes nothing: what was delivered of it is not done.
        if (!task || task.stopped) return;
        // The log end the bus delivered up to, unreadable messages (dead-lettered, never
        // processed) included: with nothing held, the task is done up to there.
        const k = `${ref.topic}/${ref.partition}`;
        task.seenEnd[k] = Math.max(task.seenEnd[k] ?? 0, at);
        task.input.flow.caughtUp(ref, at);
      },
      isPaused: (ref) => {
        const task = this.tasks.get(this.taskOf(ref.partition));
        return task !== undefined && (task.stopped !== undefined || task.input.flow.isPaused(ref));
      },
      onResume: (wake) => {
        wakers.add(wake);
        return () => wakers.delete(wake);
      },
      reading: (ref, end, asked) => {
        const task = this.tasks.get(this.taskOf(ref.partition));
        if (task && !task.stopped) task.input.flow.reading?.(ref, end, asked);
      },
      skipped: (ref, next) => {
        // A corrupt batch skipped (`bus.corruptBatch: skip`): a gap in the task's input.
        // With nothing held in its merge no message before the gap waits to be processed,
        // so its position (what the next snapshot records) moves past it; otherwise the
        // next message processed past the gap moves it.
        const task = this.tasks.get(this.taskOf(ref.partition));
        const k = `${ref.topic}/${ref.partition}`;
        if (task && !task.stopped && task.input.held() === 0 && (task.offsets[k] ?? 0) < next)
          task.offsets[k] = next;
      },
    };
  }

  private newTask(id: number): Task {
    const task: Task = {
      id,
      engine: undefined as unknown as Engine,
      input: undefined as unknown as RulesInput,
      offsets: {},
      base: {},
      restored: false,
      generation: undefined,
      held: [],
      replayUntil: {},
      seenEnd: {},
      counted: { late: 0, future: 0 },
      stopped: undefined,
    };
    task.engine = this.o.newEngine(
      (alert, explanation) => this.emit(task, { kind: 'alert', alert, explanation }),
      (change) => this.emit(task, { kind: 'state', change }),
    );
    task.input = this.inputFor(task);
    task.input.flow.onResume(() => {
      for (const wake of this.wakers) wake();
    });
    return task;
  }

  private inputFor(task: Task): RulesInput {
    return createRulesInput({
      ...(this.o.idleAfterMs !== undefined && { idleAfterMs: this.o.idleAfterMs }),
      // Idle only once a reading of the broker's log ends asked for after the quiet
      // period confirms it (rules-input.ts): the fetches' readings come through flow()'s
      // `reading`, and one read of every end is asked for where none came.
      clock: () => performance.now(),
      confirmIdle: () => {
        void this.consumer?.readEnds().catch((err: Error) => {
          // Asked for at most once a second an input: said once a minute.
          if (performance.now() - this.endsFailureSaid < 60_000) return;
          this.endsFailureSaid = performance.now();
          this.o.logger.warn(
            { err, group: this.o.group },
            'could not read the log ends: quiet partitions hold the others back until a fetch answers for them',
          );
        });
      },
      process: (m: BusMessage) => {
        const at = `${m.topic}/${m.partition}`;
        const offset = Number(m.offset);
        // Already in the restored state (a redelivery, or the fetch began before it).
        if (offset < (task.offsets[at] ?? 0)) return;
        task.engine.process(m.event);
        task.offsets[at] = offset + 1;
        this.processed++;
        if (offset < (task.replayUntil[at] ?? 0)) this.o.telemetry.taskReplayedEvents.inc();
      },
      onError: (err, m) =>
        this.o.logger.error(
          { err, topic: m.topic, partition: m.partition, offset: m.offset },
          'the rules could not process an event; it is skipped',
        ),
    });
  }

  private emit(task: Task, what: Task['held'][number]): void {
    const live =
      !this.checkStall() &&
      !this.rebalancing &&
      task.generation !== undefined &&
      this.tasks.get(task.id) === task;
    if (!live) {
      task.held.push(what);
      if (task.held.length > MAX_HELD_ALERTS) {
        task.held.shift();
        this.o.telemetry.fencedAlerts.inc({ reason: 'held-overflow' });
      }
      return;
    }
    this.deliver(task, what);
  }

  private deliver(task: Task, what: Task['held'][number]): void {
    if (what.kind === 'alert')
      this.o.onAlert(
        { ...what.alert, task: { id: task.id, generation: task.generation! } },
        what.explanation,
      );
    else this.o.onState(what.change);
  }

  private async handle(batch: BusBatch): Promise<void> {
    const task = this.tasks.get(this.taskOf(batch.partition));
    // Not (or no longer) this process's task, its restore stopped (its partitions are
    // paused: this is a batch fetched before), or stopping: nothing is processed, and
    // nothing is committed for it here.
    if (!task || task.stopped || this.closing) return;
    const end = this.o.telemetry.ruleEvaluation.startTimer();
    await task.input.handler(batch);
    end();
  }

  private onRebalancing(): void {
    if (this.rebalancing) return;
    this.rebalancing = true;
    this.o.logger.info(
      { group: this.o.group, tasks: [...this.tasks.keys()] },
      'rules group rebalancing',
    );
    // The last snapshot and commit under the generation that still stands.
    void this.snapshotAll();
  }

  private async assigned(ids: number[]): Promise<void> {
    const epoch = ++this.epoch;
    this.forgetRestoreStops();
    this.o.telemetry.rebalances.inc();
    // After a stall not confirmed, the member may have been removed and its tasks held by
    // others meanwhile: none is kept, each assigned is restored from the changelog.
    const stalled = this.checkStall();
    // Synchronously, before the bus hands the new assignment's partitions to the flow.
    for (const [id, task] of this.tasks)
      if (stalled || !ids.includes(id) || task.stopped || !task.restored) {
        this.tasks.delete(id);
        // A task whose restore stopped, or never ran (the assignment that gave it was
        // overtaken first), assigned again: restored anew. It holds nothing: it had no
        // generation and processed nothing (the bus's handler waits for the assignment).
        // Kept as it was, it ran on an empty engine from the group's offset, and the
        // commit named no snapshot of it (its base unset: the earliest offsets).
        if ((task.stopped || !task.restored) && !stalled && ids.includes(id)) continue;
        const alerts = task.held.filter((h) => h.kind === 'alert').length;
        const reason = stalled ? 'stalled' : 'revoked';
        if (alerts > 0) this.o.telemetry.fencedAlerts.inc({ reason }, alerts);
        this.o.logger.info(
          { group: this.o.group, task: id, dropped: alerts, reason },
          'rules task revoked',
        );
      }
    // Only the tasks kept keep their last committed offsets (none after a stall: the
    // assignment's commit names each task's restored snapshot). A task revoked, or
    // restored anew, loses them here, not at the next successful commit: after two
    // assignments overtaken in a row, a task lost at the first and given back by the
    // second (restored there, its commit's answer never seen) is kept by the third,
    // which committed the offsets this process had committed for it before it lost it
    // (an older snapshot's) instead of those of the snapshot it was restored from.
    const keptKeys = new Set([...this.tasks.keys()].flatMap((id) => this.partitionsOf(id)));
    for (const k of Object.keys(this.committedPositions))
      if (!keptKeys.has(k)) delete this.committedPositions[k];
    const fresh = ids.filter((id) => !this.tasks.has(id));
    for (const id of fresh) this.tasks.set(id, this.newTask(id));
    for (const t of this.tasks.values()) t.generation = undefined;
    this.rebalancing = false;
    if (this.global) this.o.telemetry.globalTaskAssigned.set(this.tasks.size);
    else this.o.telemetry.tasksAssigned.set(this.tasks.size);
    // A rebalance that completes while this process stops (another worker left just
    // before): nothing is restored or committed, the generation stays unknown (no task
    // is snapshotted), and the bus is about to close.
    if (ids.length === 0 || this.closing) return;
    // A restore or commit that fails (a broker away, a read that timed out) is retried
    // until it succeeds or a newer assignment overtakes it: until then the tasks hold
    // their alerts and the bus's handler waits. Except a commit the group refuses because
    // this assignment is over (membershipLost()): see there.
    // A corrupt changelog batch stops the restore of its task alone (readHistories()).
    // Per task, the corrupt batch its last read met (`topic/partition@firstOffset`):
    // bounded by the tasks assigned.
    const corrupt = new Map<number, string>();
    for (let attempt = 0; ; attempt++) {
      try {
        await this.restoreAndCommit(epoch, ids, fresh, attempt > 0, corrupt);
        return;
      } catch (err) {
        if (epoch !== this.epoch || this.closing) return;
        if (membershipLost(err)) {
          // The group moved on while this assignment was restored: a rebalance began, or
          // the member was removed (its process stalled past the session timeout, as a
          // worker starved of CPU does). The commit cannot succeed in this generation,
          // and no newer assignment can overtake this one while it runs: kafkajs rejoins
          // only from its fetch loop, which waits for the batches it handed out, and those
          // wait for this assignment (the bus's handler). Retrying here wedged the worker
          // for good (its commit refused every 5 s, never rejoining). So the assignment
          // ends: the tasks keep no generation (they hold their alerts and are not
          // snapshotted), and, as after a stall, the next assignment drops every task with
          // what it held and restores each from the changelog, since others may have held
          // them meanwhile.
          this.stalledAt ??= performance.now();
          this.o.telemetry.faults.inc({ kind: 'task-restore' });
          this.o.logger.warn(
            { err, tasks: ids },
            `${this.what}: the group refused this assignment's commit (a rebalance began or the worker was removed); its tasks hold until the next assignment restores them`,
          );
          return;
        }
        this.o.telemetry.faults.inc({ kind: 'task-restore' });
        this.o.logger.warn(
          { err, tasks: ids },
          'restoring the assigned rules tasks failed; retrying',
        );
        await new Promise((r) => setTimeout(r, Math.min(5_000, 500 * 2 ** attempt)));
        if (epoch !== this.epoch || this.closing) return;
      }
    }
  }

  /**
   * The changelog histories of the tasks `ids` (by slot). A task whose read meets a
   * corrupt batch is read again (a read damaged on the way heals), alone, after a pause;
   * the same batch corrupt again, its restore stops (stopTask()) and the others go on.
   * A batch corrupt at each read but never the same one is read again, with the pause
   * growing to 5 s, until the read succeeds or an assignment overtakes this one.
   */
  private async readHistories(
    epoch: number,
    ids: number[],
    corrupt: Map<number, string>,
  ): Promise<Map<number, TaskHistory>> {
    const out = new Map<number, TaskHistory>();
    let pending = ids;
    for (let attempt = 0; pending.length > 0; attempt++) {
      const read = await this.changelog.read(pending.map((id) => this.slot(id)));
      if (epoch !== this.epoch || this.closing) return out;
      const again: number[] = [];
      for (const id of pending) {
        const h = read.get(this.slot(id));
        const bad = h?.corrupt;
        if (!bad) {
          corrupt.delete(id);
          if (h) out.set(this.slot(id), h);
          continue;
        }
        const at = `${bad.topic}/${bad.partition}@${bad.firstOffset}`;
        if (corrupt.get(id) === at) {
          this.stopTask(this.tasks.get(id)!, bad);
          continue;
        }
        corrupt.set(id, at);
        again.push(id);
        this.o.telemetry.faults.inc({ kind: 'task-restore' });
        this.o.logger.warn(
          { err: bad, task: id },
          'a rules task changelog read met a corrupt record batch; reading it again',
        );
      }
      pending = again;
      if (pending.length === 0) break;
      await new Promise((r) => setTimeout(r, Math.min(5_000, 500 * 2 ** attempt)));
      if (epoch !== this.epoch || this.closing) return out;
    }
    return out;
  }

  /**
   * A task's restore met the same corrupt batch of its changelog partition twice: it
   * stops, visibly, until the next assignment (a rebalance or a restart retries it); the
   * assignment's other tasks restore and run. Logged once as an error naming the
   * changelog's topic, partition and offsets and the task; counted in
   * drover_bus_corrupt_batches_total; listed by /readyz, /healthz and
   * drover_bus_stopped_partitions (KafkaBus.noteStoppedRestore()). The task gets no
   * generation, so it emits nothing and is neither snapshotted nor committed (nothing is
   * committed for its partitions past its last snapshot); its partitions are paused in
   * the consumer, and a batch of them fetched before is dropped unprocessed (handle()),
   * so no event is processed into an engine that was not restored. Each task has its own
   * event-time merge, so its paused partitions hold back no other task's watermark.
   */
  private stopTask(task: Task, err: CorruptRecordBatchError): void {
    const entry = this.o.bus.noteStoppedRestore(this.o.group, err);
    task.stopped = entry;
    task.seenEnd = {};
    this.restoreStops.push(entry);
    this.o.telemetry.busCorruptBatches.inc({
      group: entry.group,
      topic: entry.topic,
      partition: String(entry.partition),
    });
    this.o.logger.error(
      {
        err,
        group: this.o.group,
        topic: entry.topic,
        partition: entry.partition,
        firstOffset: entry.firstOffset,
        lastOffset: entry.lastOffset,
        task: task.id,
      },
      'a corrupt Kafka record batch in the rules changelog: the restore of its task stopped',
    );
    for (const k of this.partitionsOf(task.id)) {
      const slash = k.lastIndexOf('/');
      this.consumer?.pause(k.slice(0, slash) as Topic, Number(k.slice(slash + 1)));
    }
  }

  /** Unlists the changelog partitions stopped restores listed (a new assignment, a stop). */
  private forgetRestoreStops(): void {
    for (const e of this.restoreStops) this.o.bus.forgetStopped(e);
    this.restoreStops = [];
  }

  private async restoreAndCommit(
    epoch: number,
    ids: number[],
    fresh: number[],
    again: boolean,
    corrupt: Map<number, string>,
  ): Promise<void> {
    // Tasks whose restore stopped in an earlier attempt of this assignment stay stopped.
    const restoring = fresh.filter((id) => !this.tasks.get(id)!.stopped);
    if (again)
      for (const id of restoring) {
        // A restore that failed half-way starts over on an empty engine.
        const task = this.tasks.get(id)!;
        task.engine = this.o.newEngine(
          (alert, explanation) => this.emit(task, { kind: 'alert', alert, explanation }),
          (change) => this.emit(task, { kind: 'state', change }),
        );
        task.offsets = {};
        task.counted = { late: 0, future: 0 };
        task.restored = false;
      }
    const began = performance.now();
    const committed = await this.o.bus.committed(this.o.group, this.o.topics);
    const earliest = await this.o.bus.earliest(this.o.topics);
    const history =
      restoring.length > 0
        ? await this.readHistories(epoch, restoring, corrupt)
        : new Map<number, TaskHistory>();
    // The log ends now: where a restored task's replay ends, and the tick's first reading.
    await this.consumer!.readEnds();
    const ends = this.consumer!.ends();
    if (epoch !== this.epoch || this.closing) return;
    const partitionsOf = (id: number) => this.partitionsOf(id);
    for (const id of fresh) {
      const task = this.tasks.get(id)!;
      if (task.stopped) {
        // Not restored, not processed: where the group stands is its position (the lag).
        for (const k of partitionsOf(id))
          task.offsets[k] = Math.max(committed[k] ?? 0, earliest[k] ?? 0);
        continue;
      }
      const mine = Object.fromEntries(
        partitionsOf(id)
          .filter((k) => committed[k] !== undefined)
          .map((k) => [k, committed[k]!]),
      );
      const slot = this.slot(id);
      const h = history.get(slot);
      const head = h ? chooseHead(h.heads, mine) : undefined;
      if (head) {
        const { reset } = task.engine.restore(JSON.parse(h!.state(head)) as EngineSnapshot);
        const c = task.engine.counts();
        task.counted = { late: c.lateEvents, future: c.futureEvents };
        task.offsets = { ...head.offsets };
        this.o.logger.info(
          {
            group: this.o.group,
            task: id,
            offsets: head.offsets,
            generation: head.generation,
            reset,
          },
          'rules task restored',
        );
        // Chunks no restore will use (older snapshots, a crashed writer's) go.
        const keep = new Set(
          Array.from({ length: head.chunks }, (_, n) => `${slot}/${head.id}/${n}`),
        );
        await this.changelog
          .dropChunks(
            slot,
            h!.chunkKeys.filter((k: string) => !keep.has(k)),
          )
          .catch(() => {});
        // Overtaken during that await, this assignment is over: the next one may have
        // dropped this task (unrestored) and made its own, or given the next task of this
        // loop a Task of its own, running. Going on would seek for, restore into and
        // commit (in the consumer's current generation) the next assignment's tasks.
        if (epoch !== this.epoch || this.closing) return;
      }
      // What the assignment commits for it: the offsets of the head it restored (a
      // snapshot on the changelog, even where retention moved the start past them), or,
      // with none, where it starts with no state.
      const base: Record<string, number> = {};
      for (const k of partitionsOf(id)) {
        // Retention may have dropped what the snapshot still wanted: from the earliest.
        const from = Math.max(task.offsets[k] ?? 0, earliest[k] ?? 0);
        base[k] = head?.offsets[k] ?? from;
        task.offsets[k] = from;
        task.replayUntil[k] = ends.get(k)?.end ?? 0;
        // Sought to its start, even where that is the group's committed offset (where a
        // new generation's fetch starts): kafkajs keeps a seek, across generations, until
        // the partition is next fetched, so one an overtaken assignment made for this
        // partition (docs/scale-out.md, "Position and state") would move the fetch back
        // to where that assignment restored the task. This seek replaces it; a batch
        // fetched before it is dropped unprocessed (stale) and fetched again from here.
        // A log end seen before the restore says nothing about the replay from here.
        delete task.seenEnd[k];
        const slash = k.lastIndexOf('/');
        this.consumer?.seek(k.slice(0, slash) as Topic, Number(k.slice(slash + 1)), from);
      }
      task.base = base;
      task.restored = true;
    }
    // Every await above is followed by this check; made again before the commit, which
    // goes out in whatever generation the consumer has joined by now.
    if (epoch !== this.epoch || this.closing) return;
    if (fresh.length > 0)
      this.o.telemetry.taskRestoreSeconds.observe((performance.now() - began) / 1000);
    // Committing the tasks' positions tells the generation (and fails if it is stale).
    // A stopped task's are not committed: the group keeps its last snapshot's.
    const live = [...this.tasks.values()].filter((t) => !t.stopped);
    const stopped = ids.filter((id) => this.tasks.get(id)?.stopped);
    if (live.length === 0) {
      // Every task stopped: no commit (one of nothing sends no request), no generation.
      this.o.logger.info({ tasks: ids, restored: [], stopped }, `${this.what} assigned`);
      return;
    }
    // The commit names, for every task, a snapshot on the changelog or a start with no
    // state: a restored task's head (or its start, with none), and a kept task's last
    // committed offsets (committedPositions: its last snapshot's, or its base's at the
    // assignment that gave it). Not a kept task's position: it has processed past its last
    // snapshot since (events processed during the rebalance, a rebalance snapshot skipped
    // because it held alerts), and if it moved before its next snapshot its new owner
    // would find no head equal to the commit, none at or past it, and replay the whole
    // retained partition on an empty engine (a history cut at retention's edge: alerts
    // the original run never fired). committedPositions is set for every live task at
    // each assignment's commit and loses a task's entries when the task is revoked or
    // restored anew (all of them after a stall, whose next assignment keeps no task); a
    // kept task lacks an entry only when the assignment that gave it was overtaken before
    // its commit succeeded: its base (the snapshot it was restored from) stands in.
    const positions: Record<string, number> = {};
    for (const t of live) {
      const restored = fresh.includes(t.id);
      for (const k of partitionsOf(t.id))
        positions[k] = restored
          ? t.base[k]!
          : (this.committedPositions[k] ?? t.base[k] ?? earliest[k] ?? 0);
    }
    // Throws when the group moved on (a stale generation): the retry loop then ends.
    const sent = performance.now();
    const generation = await this.consumer!.commit(positions);
    if (epoch !== this.epoch) return;
    this.committedPositions = positions;
    for (const t of live) t.generation = generation;
    if (sent > this.confirmedSent) this.confirmedSent = sent;
    // A stall noticed after the commit was sent (or during it) still fences: confirmed
    // by a later commit, or the tasks are dropped at the next assignment.
    if (this.stalledAt !== undefined && sent >= this.stalledAt) this.stalledAt = undefined;
    if (this.stalledAt !== undefined) void this.confirm();
    else
      for (const t of live) {
        const held = t.held;
        t.held = [];
        for (const h of held) this.deliver(t, h);
      }
    // A partition with nothing past its task's position is caught up, and no batch will
    // say so (a fetch from the log end brings none). From the task's own position: the
    // bus does not read the group's lag for task consumers (KafkaBus.followFlow), whose
    // committed offsets a task restored behind them has yet to replay up to.
    for (const t of live) this.noteCaughtUp(t);
    this.o.logger.info(
      {
        tasks: ids,
        restored: fresh.filter((id) => !this.tasks.get(id)?.stopped),
        ...(stopped.length > 0 && { stopped }),
        generation,
      },
      `${this.what} assigned`,
    );
  }

  /** Tells a task's merge which of its partitions the last log-end reading finds done. */
  private noteCaughtUp(t: Task): void {
    const ends = this.consumer?.ends();
    if (!ends) return;
    for (const k of this.partitionsOf(t.id)) {
      const end = ends.get(k)?.end;
      const slash = k.lastIndexOf('/');
      if (end !== undefined && (t.offsets[k] ?? 0) >= end)
        t.input.flow.caughtUp(
          { topic: k.slice(0, slash) as Topic, partition: Number(k.slice(slash + 1)) },
          end,
        );
    }
  }

  /**
   * Snapshots every task held, each to the changelog and then its offsets committed.
   * One at a time; a call while one runs waits for it.
   */
  snapshotAll(): Promise<void> {
    this.snapshotting ??= this.snapshotEach().finally(() => (this.snapshotting = undefined));
    return this.snapshotting;
  }

  private async snapshotEach(): Promise<void> {
    for (const task of [...this.tasks.values()]) {
      // Fenced after a stall: the tasks may be another member's now.
      if (this.checkStall()) return;
      const epoch = this.epoch;
      const generation = task.generation;
      if (generation === undefined) continue;
      // A task that holds alerts or resolutions (a rebalance began while this loop
      // awaited an earlier task's write and commit, and the task went on processing what
      // its merge had queued or the batches fetched) is not snapshotted nor committed: a
      // snapshot now would be past what it holds, and if the task moves, the old owner
      // drops what it held (fenced, revoked) and the new owner, restoring that snapshot,
      // would never fire it. Its last committed snapshot, from before the held alerts,
      // stays the one a new owner restores and replays from; a task kept releases what
      // it held at the assignment. Checked synchronously before engine.snapshot(), so
      // nothing is processed between. Outside a rebalance only a task with no generation
      // (skipped above) or after a stall (the loop returns) holds anything, so periodic
      // snapshots are not held off.
      if (task.held.length > 0) continue;
      try {
        const began = performance.now();
        const offsets = { ...task.offsets };
        const state = JSON.stringify(task.engine.snapshot());
        this.o.telemetry.snapshotSeconds.observe((performance.now() - began) / 1000);
        const { bytes } = await this.changelog.write(
          this.slot(task.id),
          { generation, offsets, at: Date.now() },
          state,
        );
        this.o.telemetry.snapshotBytes.set(bytes);
        // Overtaken by an assignment that no longer gives this process the task: its
        // offsets are not committed from here (the member's new generation would carry them).
        if (epoch !== this.epoch && this.tasks.get(task.id) !== task) continue;
        const sent = performance.now();
        const now = await this.consumer!.commit(offsets);
        if (this.tasks.get(task.id) === task) Object.assign(this.committedPositions, offsets);
        // Confirms the membership after a stall only in the generation the task holds.
        if (now === generation) this.unfence(sent);
      } catch (err) {
        this.o.telemetry.faults.inc({ kind: 'snapshot' });
        this.o.logger.warn(
          { err, task: task.id },
          'a rules task snapshot could not be written or committed; retrying at the next interval',
        );
      }
    }
  }

  /** The periodic snapshot, when no remediation is in flight. */
  maybeSnapshot(): void {
    if (this.o.canSnapshot() && !this.rebalancing) void this.snapshotAll();
  }

  /**
   * The clock drives a task's watermark once it has processed every message its
   * partitions held, and holds nothing back in its merge.
   */
  async tick(): Promise<void> {
    const consumer = this.consumer;
    if (this.tasks.size === 0 || !consumer) return;
    // The fetches' log ends; a partition none reported on lately is read from the broker.
    // A fetch answers as soon as a partition it asks for has messages past its offset,
    // so a reading is behind the broker only while a fetch is being answered or handled.
    const stale = performance.now() - ENDS_READ_EVERY_MS;
    const keys = [...this.tasks.keys()].flatMap((id) => this.partitionsOf(id));
    if (keys.some((k) => (consumer.ends().get(k)?.at ?? -Infinity) < stale))
      await consumer.readEnds();
    const ends = consumer.ends();
    for (const t of this.tasks.values()) {
      if (t.generation === undefined) continue;
      // A partition caught up with no batch to say so (nothing new since the assignment's
      // check, or a reading that came later) is caught up by the next reading.
      this.noteCaughtUp(t);
      if (t.input.held() > 0) continue;
      const behind = this.partitionsOf(t.id).some((k) => (ends.get(k)?.end ?? 0) > this.done(t, k));
      if (!behind) t.engine.tick();
    }
  }

  /**
   * Messages not yet processed per topic over the tasks held; sets the per-partition gauge.
   * The log ends are the consumer's fetches' (TaskConsumer.ends), as Kafka's own consumers
   * report `records-lag`: a scrape asks the broker nothing while every partition held has
   * a reading younger than LAG_READING_MAX_AGE_MS. A reading is at most one fetch old: a
   * message written after the fetch that last answered for its partition is counted once
   * the next fetch answers, which is at once if the consumer is waiting on one (the broker
   * answers a waiting fetch when a message arrives), else after the batches in hand are
   * handled. A partition the consumer does not fetch (paused by the merge, its task's
   * restore stopped, stopped at a corrupt batch), or with no reading that young (just
   * assigned, or a batch handled for that long) is read from the broker, all in one read.
   */
  async lag(): Promise<Record<Topic, number>> {
    const out = { logs: 0, metrics: 0 } as Record<Topic, number>;
    const consumer = this.consumer;
    if (consumer && this.tasks.size > 0) {
      const stale = performance.now() - LAG_READING_MAX_AGE_MS;
      // Partitions the consumer does not fetch: their readings stand still.
      const stopped = new Set(
        this.o.bus
          .stoppedPartitions()
          .filter((p) => p.group === this.o.group)
          .map((p) => `${p.topic}/${p.partition}`),
      );
      const unfetched = (t: Task, k: string) => {
        const slash = k.lastIndexOf('/');
        const ref = { topic: k.slice(0, slash) as Topic, partition: Number(k.slice(slash + 1)) };
        return t.stopped !== undefined || stopped.has(k) || t.input.flow.isPaused(ref);
      };
      if (
        [...this.tasks.values()].some((t) =>
          this.partitionsOf(t.id).some(
            (k) => unfetched(t, k) || (consumer.ends().get(k)?.at ?? -Infinity) < stale,
          ),
        )
      )
        await consumer.readEnds();
    }
    const ends = consumer?.ends() ?? new Map<string, { end: number }>();
    // The per-partition gauge is the partition tasks' (the global task reads them all).
    if (!this.global) this.o.telemetry.taskLag.reset();
    for (const t of this.tasks.values())
      for (const k of this.partitionsOf(t.id)) {
        const slash = k.lastIndexOf('/');
        const topic = k.slice(0, slash) as Topic;
        const lag = Math.max(0, (ends.get(k)?.end ?? 0) - this.done(t, k));
        out[topic] += lag;
        if (!this.global)
          this.o.telemetry.taskLag.set({ topic, partition: k.slice(slash + 1) }, lag);
      }
    return out;
  }

  /** Where a task's partition `k` (`topic/partition`) is done: processed, or delivered with nothing held. */
  private done(t: Task, k: string): number {
    const processed = t.offsets[k] ?? 0;
    return t.input.held() === 0 ? Math.max(processed, t.seenEnd[k] ?? 0) : processed;
  }

  held(): number {
    let n = 0;
    for (const t of this.tasks.values()) n += t.input.held();
    return n;
  }

  /** The engines of the tasks that run (not one whose restore stopped: it holds nothing). */
  engines(): Engine[] {
    return [...this.tasks.values()].filter((t) => !t.stopped).map((t) => t.engine);
  }

  /** Events processed and late/future counts since the last call (for the counters). */
  takeCounts(): { processed: number; late: number; future: number } {
    for (const t of this.tasks.values()) {
      const c = t.engine.counts();
      if (c.lateEvents > t.counted.late) this.late += c.lateEvents - t.counted.late;
      if (c.futureEvents > t.counted.future) this.future += c.futureEvents - t.counted.future;
      t.counted = { late: c.lateEvents, future: c.futureEvents };
    }
    const out = { processed: this.processed, late: this.late, future: this.future };
    this.processed = this.late = this.future = 0;
    return out;
  }

  /** A rule reload: each task's state carried into a fresh engine with the new rules. */
  reload(newEngine: RulesTasksOptions['newEngine']): void {
    this.o.newEngine = newEngine;
    for (const task of this.tasks.values()) {
      const next = newEngine(
        (alert, explanation) => this.emit(task, { kind: 'alert', alert, explanation }),
        (change) => this.emit(task, { kind: 'state', change }),
      );
      next.restore(task.engine.snapshot());
      task.engine = next;
    }
  }

  /** Stops processing (batches still delivered are left for the next owner). */
  quiesce(): void {
    this.closing = true;
  }

  /** The last snapshots and commits, then the consumer leaves the group. */
  async stop(): Promise<void> {
    this.closing = true;
    this.forgetRestoreStops();
    clearInterval(this.watchdog);
    if (this.consumer && !this.rebalancing) await this.snapshotAll();
    await this.consumer?.stop();
    this.consumer = undefined;
    // An assignment or a rebalance's snapshot begun before the consumer stopped ends
    // (each gives up on `closing`, a retry within 5 s) before the bus it uses is closed:
    // left running, it went on with the Kafka clients after the bus had closed them, and
    // kept the process from exiting.
    await this.assigning;
    await this.snapshotting;
    await this.confirming;
  }
}

/**
 * Kafka's answers to a group request from a member whose generation is over: a rebalance
 * in progress, a generation the group left behind, a member it removed, a static member
 * replaced. kafkajs puts the broker's error (its `type`) in the `cause` of the error it
 * throws once it gives up.
 */
const MEMBERSHIP_ERRORS = new Set([
  'REBALANCE_IN_PROGRESS',
  'ILLEGAL_GENERATION',
  'UNKNOWN_MEMBER_ID',
  'FENCED_INSTANCE_ID',
]);

/** Whether `err` (or an error it was caused by) is one of MEMBERSHIP_ERRORS. */
function membershipLost(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++)
    if (MEMBERSHIP_ERRORS.has(String((e as Error & { type?: unknown }).type))) return true;
  return false;
}

/**
 * Whether a rule follows the partitioning (docs/scale-out.md, "Keys that do not follow
 * the partitioning"): its query_key includes one of `partitionFields` (configuration,
 * `rules.partitionFields`, default `service.name`), so every event of one of its keys
 * lands in one partition and one task sees them all. A rule without a key does not.
 */
export function followsPartitioning(
  rule: { query_key: readonly string[] },
  partitionFields: readonly string[],
): boolean {
  return rule.query_key.some((f) => partitionFields.includes(f));
}

/** Rules split into those the partition tasks run and those the global task runs. */
export function splitRules<R extends { query_key: readonly string[] }>(
  rules: readonly R[],
  partitionFields: readonly string[],
): { partitioned: R[]; global: R[] } {
  const partitioned: R[] = [];
  const global: R[] = [];
  for (const r of rules) (followsPartitioning(r, partitionFields) ? partitioned : global).push(r);
  return { partitioned, global };
}
