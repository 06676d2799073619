import type { Event } from '../event.ts';

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

export interface ConsumeOptions {
  /** Consumer group: each group sees every message once, and resumes at its committed offset. */
  group: string;
  topics: Topic[];
  /** Processes a batch; offsets are committed only after it resolves. */
  handler: (batch: BusBatch) => Promise<void>;
}

export interface Consumer {
  stop(): Promise<void>;
}

/**
 * An event serialized for a bus, or why that bus refuses it (it then goes to the
 * dead-letter store when published).
 */
export type Prepared =
  | { ok: true; body: string; topic: Topic; key: string }
  | { ok: false; reason: string; body: string; key: string };

export interface Bus {
  readonly kind: 'embedded' | 'kafka';
  /** Resolves once the accepted events are durable (fsync'd / acks=-1). */
  publish(events: Event[]): Promise<PublishResult>;
  /**
   * Serializes an event for `publishPrepared` against this bus's limits. Ingest prepares
   * each event as it decodes it, so the objects die young instead of waiting for the
   * commit.
   */
  prepare(event: Event): Prepared;
  /** `publish` for prepared events; indexes in the result are into `items`. */
  publishPrepared(items: Prepared[]): Promise<PublishResult>;
  consume(options: ConsumeOptions): Promise<Consumer>;
  close(): Promise<void>;
}
