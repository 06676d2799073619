import { randomUUID } from 'node:crypto';
import type { Admin, Kafka, Producer } from 'kafkajs';
import { type CorruptRecordBatchError, corruptionOf } from './kafka-fetch.ts';
import { kafkajs } from './kafkajs.ts';
import { createTopicsSettled } from './kafka-topics.ts';

/**
 * The rules' task state on Kafka: a compacted topic (`<topicPrefix>rules-state`) with one
 * partition per task, task _i_'s records on partition _i_ (docs/scale-out.md, "Rules
 * workers"). A snapshot is its chunks, then a head record naming them:
 *
 * - chunk `i/<id>/<n>`: bytes of the engine's snapshot JSON, at most `chunkBytes` each,
 *   so a snapshot larger than the topic's `max.message.bytes` still goes through;
 * - head `i`: `{ id, chunks, generation, offsets, at }`, written after every chunk is
 *   acknowledged (acks=-1), so a head never names a chunk that is not there.
 *
 * Compaction keeps the latest head per task; chunks of old snapshots are removed with
 * tombstones (the writer drops the chunks of the snapshot two before the one it wrote;
 * a restore drops every chunk it read that the restored head does not name), so the
 * topic holds about two snapshots per task.
 */
export interface TaskHead {
  id: string;
  chunks: number;
  /** The rules group's generation the writer held the task in. */
  generation: number;
  /** Next offset per `topic/partition` the state reflects. */
  offsets: Record<string, number>;
  at: number;
  /**
   * A starting point, not a snapshot the group ran: an empty engine at the log ends when
   * a reload brought the global task's first rule (RulesTasks, `seed`). Generation 0.
   */
  seed?: boolean;
}

export interface TaskHistory {
  /** Complete heads (every chunk present), in log order. Bound: MAX_HEADS. */
  heads: TaskHead[];
  /** The snapshot JSON of a head in `heads`. */
  state(head: TaskHead): string;
  /** Chunk keys read (to drop those a restore does not use). */
  chunkKeys: string[];
  /**
   * The read of this task's partition stopped at a corrupt record batch (its CRC-32C,
   * kafka-fetch.ts): `heads` and `chunkKeys` are then only what came before it, and the
   * task is not to be restored from them. The other tasks' reads go on.
   */
  corrupt?: CorruptRecordBatchError;
}

/** Heads kept per task while reading, the latest ones: a restore wants one of the last. */
const MAX_HEADS = 64;
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

const lib = kafkajs;

export class KafkaChangelog {
  private chunkBytes = 512 << 10;
  /** Snapshot ids this process wrote per task, newest last (at most 3 kept). */
  private readonly written = new Map<number, Array<{ id: string; chunks: number }>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private readonly producer: Producer,
    readonly topic: string,
  ) {}

  /** Creates the topic (compacted, `tasks` partitions) if missing; learns its size limit. */
  async ensure(tasks: number, replicationFactor = -1): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    if (!existing.has(this.topic))
      await createTopicsSettled(this.admin, [
        {
          topic: this.topic,
          numPartitions: tasks,
          replicationFactor,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ]);
    // Workers starting together race to create it: the loser may ask before the winner's
    // partitions have leaders, and is told the topic is unknown (or has none) for a moment.
    let partitions = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const meta = await this.admin.fetchTopicMetadata({ topics: [this.topic] });
        partitions = meta.topics[0]?.partitions.length ?? 0;
        if (partitions >= tasks || attempt >= 20) break;
      } catch (err) {
        if (attempt >= 20) throw err;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    if (partitions < tasks)
      throw new Error(
        `${this.topic} has ${partitions} partitions for ${tasks} tasks: it needs one per partition of the rules' topics`,
      );
    let limit = KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    try {
      const { resources } = await this.admin.describeConfigs({
        includeSynonyms: false,
        resources: [
          {
            type: lib().ConfigResourceTypes.TOPIC,
            name: this.topic,
            configNames: ['max.message.bytes'],
          },
        ],
      });
      const v = Number(resources[0]?.configEntries[0]?.configValue);
      if (Number.isFinite(v) && v > 0) limit = v;
    } catch {
      // Reading configs may be denied by ACLs: Kafka's default.
    }
    this.setMaxMessageBytes(limit);
  }

  /** Chunks leave room for the record batch's framing and the key. */
  setMaxMessageBytes(limit: number): void {
    this.chunkBytes = Math.max(1024, Math.min(512 << 10, limit - 4096));
  }

  /** Writes one task's snapshot: its chunks, then its head. Returns the bytes written. */
  async write(
    task: number,
    head: Omit<TaskHead, 'id' | 'chunks'>,
    state: string,
  ): Promise<{ bytes: number; chunks: number }> {
    const id = randomUUID().slice(0, 13);
    const body = Buffer.from(state, 'utf8');
    const chunks = Math.max(1, Math.ceil(body.length / this.chunkBytes));
    // One send per chunk: kafkajs sends a partition's messages as one record batch,
    // which must stay under max.message.bytes.
    for (let n = 0; n < chunks; n++)
      await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: [
          {
            partition: task,
            key: `${task}/${id}/${n}`,
            value: body.subarray(n * this.chunkBytes, (n + 1) * this.chunkBytes),
          },
        ],
      });
    const full: TaskHead = { ...head, id, chunks };
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ partition: task, key: String(task), value: JSON.stringify(full) }],
    });
    const mine = this.written.get(task) ?? [];
    mine.push({ id, chunks });
    this.written.set(task, mine);
    // The snapshot two before this one is no longer a restore's candidate here.
    if (mine.length > 2) {
      const old = mine.shift()!;
      await this.dropChunks(
        task,
        Array.from({ length: old.chunks }, (_, n) => `${task}/${old.id}/${n}`),
      ).catch(() => {});
    }
    return { bytes: body.length, chunks };
  }

  /** Tombstones for chunk keys (compaction then removes them). */
  async dropChunks(task: number, keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: keys.map((key) => ({ partition: task, key, value: null })),
    });
  }

  /**
   * Reads the given tasks' partitions from their start to the end they had when the
   * read began, in a consumer group of its own that commits nothing.
   * A partition whose next batch is corrupt (nothing before it in its fetch) ends its
   * read there: the partition is paused, its history carries the error (`corrupt`), and
   * the other partitions are read to their ends.
   * Memory: the chunks not yet removed (about two snapshots per task, more after a
   * crash loop until a restore drops them) and MAX_HEADS heads per task.
   */
  async read(tasks: number[], timeoutMs = 30_000): Promise<Map<number, TaskHistory>> {
    const out = new Map<number, TaskHistory>();
    const ends = new Map<number, bigint>();
    for (const o of await this.admin.fetchTopicOffsets(this.topic))
      if (tasks.includes(o.partition) && BigInt(o.high) > BigInt(o.low))
        ends.set(o.partition, BigInt(o.high));
    const state = new Map<
      number,
      { heads: TaskHead[]; chunks: Map<string, Buffer>; corrupt?: CorruptRecordBatchError }
    >();
    for (const t of tasks) state.set(t, { heads: [], chunks: new Map() });
    if (ends.size > 0) {
      const consumer = this.kafka.consumer({
        groupId: `${this.topic}-restore-${randomUUID().slice(0, 8)}`,
        allowAutoTopicCreation: false,
      });
      await consumer.connect();
      try {
        await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`reading ${this.topic} took over ${timeoutMs} ms`)),
            timeoutMs,
          );
          const left = new Set(ends.keys());
          void consumer
            .run({
              autoCommit: false,
              eachBatch: async ({ batch }) => {
                const s = state.get(batch.partition);
                const end = ends.get(batch.partition);
                if (!s || end === undefined || s.corrupt) return;
                // A corrupt record batch (kafka-fetch.ts): this partition's read ends here
                // (its task's restore is retried once, then stops: rules-tasks.ts,
                // stopTask()); the others go on.
                const bad = corruptionOf(
                  (batch as unknown as { rawMessages?: unknown }).rawMessages,
                );
                if (bad && batch.messages.length === 0) {
                  s.corrupt = bad;
                  consumer.pause([{ topic: this.topic, partitions: [batch.partition] }]);
                  left.delete(batch.partition);
                  if (left.size === 0) {
                    clearTimeout(timer);
                    resolve();
                  }
                  return;
                }
                for (const m of batch.messages) {
                  if (BigInt(m.offset) >= end) break;
                  const key = m.key?.toString() ?? '';
                  if (key === String(batch.partition)) {
                    const head = parseHead(m.value);
                    if (head) {
                      s.heads.push(head);
                      if (s.heads.length > MAX_HEADS) s.heads.shift();
                    }
                  } else if (key.startsWith(`${batch.partition}/`)) {
                    if (m.value === null) s.chunks.delete(key);
                    else s.chunks.set(key, m.value);
                  }
                }
                if (BigInt(batch.lastOffset()) + 1n >= end) {
                  left.delete(batch.partition);
                  if (left.size === 0) {
                    clearTimeout(timer);
                    resolve();
                  }
                }
                await Promise.resolve();
              },
            })
            .catch(reject);
        });
      } finally {
        await consumer.disconnect();
      }
    }
    for (const [task, s] of state) {
      const complete = s.heads.filter((h) =>
        Array.from({ length: h.chunks }, (_, n) => `${task}/${h.id}/${n}`).every((k) =>
          s.chunks.has(k),
        ),
      );
      out.set(task, {
        heads: complete,
        state: (h) =>
          Buffer.concat(
            Array.from({ length: h.chunks }, (_, n) => s.chunks.get(`${task}/${h.id}/${n}`)!),
          ).toString('utf8'),
        chunkKeys: [...s.chunks.keys()],
        ...(s.corrupt && { corrupt: s.corrupt }),
      });
    }
    return out;
  }
}

function parseHead(value: Buffer | null): TaskHead | undefined {
  if (!value) return undefined;
  try {
    const h = JSON.parse(value.toString('utf8')) as Partial<TaskHead>;
    if (
      typeof h.id === 'string' &&
      Number.isInteger(h.chunks) &&
      h.chunks! > 0 &&
      h.chunks! <= 100_000 &&
      Number.isInteger(h.generation) &&
      typeof h.offsets === 'object' &&
      h.offsets !== null &&
      Object.values(h.offsets).every((o) => Number.isInteger(o) && o >= 0)
    )
      return h as TaskHead;
  } catch {
    // A record that is not a head: skipped.
  }
  return undefined;
}

/**
 * The snapshot a task restores: the latest whose offsets are what the group committed
 * for the task (the group commits a task's offsets only after writing the snapshot that
 * records them); failing that, one written after the last commit (a crash between
 * writing and committing), the latest of the highest generation whose offsets are at or
 * past every committed one; failing that (no snapshot, or the group committed past every
 * snapshot, as when the changelog was lost), none: the task replays from the start.
 * `committed` maps `topic/partition` to the group's committed offset (absent: none).
 *
 * Before all that: heads that end the history as seeds (written after the last snapshot,
 * when a reload brought the global task's first rules) start the task afresh, whatever
 * the group committed before (a previous run of the group, before its rules were
 * removed): the earliest of them, so that of several workers seeding at once none
 * misses what came after another's seed.
 */
export function chooseHead(
  heads: TaskHead[],
  committed: Record<string, number>,
): TaskHead | undefined {
  let first = heads.length;
  while (first > 0 && heads[first - 1]!.seed === true) first--;
  if (first < heads.length) return heads[first];
  const keys = Object.keys(committed);
  const equal = (h: TaskHead) =>
    keys.length > 0 && keys.every((k) => (h.offsets[k] ?? 0) === committed[k]);
  for (let i = heads.length - 1; i >= 0; i--) if (equal(heads[i]!)) return heads[i];
  const ahead = heads.filter((h) => keys.every((k) => (h.offsets[k] ?? 0) >= committed[k]!));
  let best: TaskHead | undefined;
  for (const h of ahead) if (!best || h.generation >= best.generation) best = h;
  return best;
}
