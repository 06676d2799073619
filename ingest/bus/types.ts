import type { Event } from '../model/event.ts';

/**
 * The bus between ingest and its consumers (indexer, rules). Two back ends share
 * this interface: an embedded durable log (SQLite) and Kafka.
 */
export type Topic = 'logs' | 'metrics';

/** Metric samples go to `metrics`, everything else to `logs`. */
export function topicOf(event: Event): Topic {
  return event['metric.name'] !== undefined ? 'metrics' : 'logs';
}

export interface PublishResult {
  /** Indexes (into the published array) the bus made durable. */
  accepted: number[];
  /** Indexes it refused, each with the reason; these went to the dead-letter store. */
  rejected: Array<{ index: number; reason: string }>;
}

/** Thrown by publish when the bus cannot keep up; ingest answers 429 with Retry-After. */
export class BusBackpressureError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

export interface BusMessage {
  topic: Topic;
  partition: number;
  /** Position in the partition; strings because Kafka offsets are int64. */
  offset: string;
  key: string;
  event: Event;
}

export interface BusBatch {
  topic: Topic;
  partition: number;
  messages: BusMessage[];
}

/** One input of a consumer: a partition of a topic (the embedded bus has partition 0 only). */
export interface InputRef {
  topic: Topic;
  partition: number;
}

/**
 * How a consumer that merges its inputs (the rules' event-time merge) steers delivery:
 * it is told which inputs it reads and when one has nothing pending, and it pauses an
 * input it holds enough of instead of blocking the handler (a handler that blocked on
 * one input until another delivered would stall a consumer that reads its inputs from
 * one loop or one fetch, as both buses do).
 */
export interface InputFlow {
  /** The inputs this consumer now reads: at start and after each rebalance. */
  assigned(inputs: InputRef[]): void;
  /** The input had nothing pending when looked at: its log end was `at` (next offset). */
  caughtUp(input: InputRef, at: number): void;
  /** Asked before an input is read: while true, the consumer does not read it. */
  isPaused(input: InputRef): boolean;
  /** `wake` is called whenever a paused input may be read again; returns an unsubscribe. */
  onResume(wake: () => void): () => void;
  /**
   * The consumer skipped the input's offsets before `next` (a corrupt record batch,
   * `bus.corruptBatch: skip`): none of them will be delivered.
   */
  skipped?(input: InputRef, next: number): void;
  /**
   * A reading of the input's log end (next offset to be written) from a request sent at
   * `asked` (`performance.now()`): the broker answered after that moment. Kafka in task
   * mode tells every reading (each fetch response, its partitions with nothing new
   * included, and each read of the ends); a merge that wants its idleness confirmed by
   * the broker uses them (pipeline/rules-input.ts).
   */
  reading?(input: InputRef, end: number, asked: number): void;
}

export interface ConsumeOptions {
  /** Consumer group: each group sees every message once, and resumes at its committed offset. */
  group: string;
  topics: Topic[];
  /**
   * Processes a batch; offsets are committed only after it resolves. A batch it fails
   * is retried in halves, and a message it fails `maxAttempts` times on its own goes to
   * the dead-letter store (see deliver.ts): a handler must apply nothing of a batch it
   * fails, or skip the offsets it already applied. An error marked `transient` is
   * retried as long as it takes.
   */
  handler: (batch: BusBatch) => Promise<void>;
  /** For a handler that merges its inputs: see InputFlow. */
  flow?: InputFlow;
  /**
   * Embedded bus, without a flow: called with each batch read while the handler has the
   * one before it. It is the batch the handler is given next (the same `messages`
   * array), unless the consumer stops, a failure intervenes or the group's position
   * moved; then it is read again and handed as a new array. A handler whose work is
   * idempotent by position (the embedded index) may start on it here; nothing of it is
   * committed before the handler has been given it and resolved.
   */
  readAhead?: (batch: BusBatch) => void;
  /** Failures of one message before it is dead-lettered. Default 3. */
  maxAttempts?: number;
}

export interface Consumer {
  stop(): Promise<void>;
}

/**
 * Writes an event's JSON into `buf` from `at` and returns where it ends: past
 * `buf.length` when it needs more room (it writes nothing past the end, and is called
 * again with a larger buffer).
 */
export type JsonWriter = (buf: Buffer, at: number) => number;

/**
 * The events of one publish, serialized as they are added: ingest adds each event as it
 * decodes it, so the parsed objects die young instead of waiting for the commit. An
 * event the bus refuses (too large, not serializable) is reported by its index in the
 * publish result and goes to the dead-letter store.
 */
export interface PublishBatch {
  add(event: Event): void;
  /**
   * An event its caller writes as JSON (UTF-8, exactly what JSON.stringify gives), with
   * its topic and partition key: ingest's byte path writes events without building
   * them, straight into the batch's buffer.
   */
  addJson(topic: Topic, key: string, write: JsonWriter): void;
  /** Events added so far; result indexes count from 0 in the order they were added. */
  readonly length: number;
}

export interface Bus {
  readonly kind: 'embedded' | 'kafka';
  /** Resolves once the accepted events are durable (fsync'd / acks=-1). */
  publish(events: Event[]): Promise<PublishResult>;
  /** A batch for `publishBatch`, serialized against this bus's limits. */
  batch(): PublishBatch;
  /** `publish` for a batch of this bus's; indexes in the result are in order of `add`. */
  publishBatch(batch: PublishBatch): Promise<PublishResult>;
  consume(options: ConsumeOptions): Promise<Consumer>;
  /** Messages a group has yet to consume, per topic: the bus lag. */
  lag(group: string): Record<Topic, number> | Promise<Record<Topic, number>>;
  /**
   * Moves a group, while none of its members runs, to the given positions
   * (`"topic/partition"` → next offset to consume); partitions not named go back to their
   * earliest retained offset. The rules engine replays from the offsets its restored
   * snapshot reflects, whatever the group committed after that snapshot.
   */
  rewind(group: string, positions: Record<string, number>, topics: Topic[]): Promise<void>;
  close(): Promise<void>;
}
