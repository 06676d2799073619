import type { BusBatch, BusMessage } from './types.ts';

/**
 * How a consumer hands a batch to its handler, for both back ends. A batch the handler
 * fails is retried after a backoff; once it has failed `maxAttempts` times it is split
 * in halves, each retried on its own the same way, down to single messages; a single
 * message that has failed `maxAttempts` times goes to the dead-letter store with the
 * handler's reason, and the group moves on past it. One message (an event an older
 * version wrote, or another producer on Kafka) can no longer stop a consumer group: it
 * costs about maxAttempts × log2(batch size) attempts.
 *
 * What succeeded is committed before the rest is tried, so a half that succeeded is not
 * delivered again; but the messages of a batch that failed half-way are delivered again:
 * a handler must apply nothing of a batch it fails, or skip the offsets it already
 * applied.
 *
 * An error marked transient (`transient(err)`: the handler's server is down, not the
 * message bad) says nothing about the messages: the same batch is retried after a
 * backoff, as long as it takes, and nothing is dead-lettered for it. A commit that
 * fails with a transient error (the bus's file is locked) is retried on its own, as
 * long as it takes: the handler is not given the batch again.
 */
export interface DeliverOptions {
  handler: (batch: BusBatch) => Promise<void>;
  /** Failures of one message, on its own, before it is dead-lettered. */
  maxAttempts: number;
  /** Moves the group's position past `last` (its offset + 1), `count` messages on. */
  commit: (last: BusMessage, count: number) => Promise<void> | void;
  /** Keeps `message` aside with why it failed; resolves once that is durable. */
  deadLetter: (message: BusMessage, reason: string) => Promise<void> | void;
  /** Waits before a retry (the failures so far of what is retried); early when stopping. */
  backoff: (failures: number) => Promise<void>;
  /** False once the consumer is stopping (or, on Kafka, the batch is stale). */
  running: () => boolean;
  onError: (err: Error, context: string) => void;
  /** Names the group and where in the log, for onError. */
  describe: (messages: BusMessage[]) => string;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

/** Marks an error as saying nothing about the messages (see DeliverOptions). */
export function transient<E extends Error>(err: E): E {
  return Object.assign(err, { transient: true });
}

export function isTransient(err: unknown): boolean {
  return (err as { transient?: unknown } | null)?.transient === true;
}

/**
 * Delivers `batch` (see DeliverOptions). Resolves true once every message is handled or
 * dead-lettered and committed, false when the consumer stopped first (what was not
 * committed is delivered again).
 */
export async function deliver(batch: BusBatch, options: DeliverOptions): Promise<boolean> {
  return deliverRun(batch, batch.messages, options);
}

async function deliverRun(
  batch: BusBatch,
  messages: BusMessage[],
  options: DeliverOptions,
): Promise<boolean> {
  let failures = 0;
  // Once the handler is done, only the commit is retried: handing the batch over again
  // would apply it twice.
  let handled = false;
  for (;;) {
    if (!options.running()) return false;
    try {
      if (!handled) {
        await options.handler({ topic: batch.topic, partition: batch.partition, messages });
        handled = true;
      }
      await options.commit(messages.at(-1)!, messages.length);
      return true;
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const where = options.describe(messages);
      if (handled && isTransient(err)) {
        options.onError(err, `${where}: handled, but its commit failed; the commit is retried`);
        await options.backoff(Math.min(++failures, options.maxAttempts));
        continue;
      }
      handled = false;
      if (isTransient(err)) {
        options.onError(err, `${where} (a transient failure); it will be redelivered`);
        await options.backoff(Math.min(++failures, options.maxAttempts));
        continue;
      }
      failures++;
      if (failures < options.maxAttempts) {
        options.onError(
          err,
          `${where} (attempt ${failures} of ${options.maxAttempts}); it will be redelivered`,
        );
        await options.backoff(failures);
        continue;
      }
      if (messages.length > 1) {
        // Each half on its own: the message at fault is found in log2(n) steps, and the
        // others go through.
        options.onError(err, `${where} ${failures} times; its halves are retried on their own`);
        const half = messages.length >>> 1;
        if (!(await deliverRun(batch, messages.slice(0, half), options))) return false;
        return deliverRun(batch, messages.slice(half), options);
      }
      options.onError(err, `${where} ${failures} times; it goes to the dead-letter store`);
      await options.deadLetter(messages[0]!, `failed ${failures} times: ${err.message}`);
      await options.commit(messages[0]!, 1);
      return true;
    }
  }
}
