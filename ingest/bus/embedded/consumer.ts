/**
 * A consumer group's member on the embedded bus: one loop that reads the group's topics
 * from its positions and hands batches to the handler through the shared delivery.
 */
import type { EventEmitter } from 'node:events';
import { isSqliteBusy } from '../../storage/sqlite.ts';
import { DEFAULT_MAX_ATTEMPTS, deliver, transient } from '../deliver.ts';
import type { BusMessage, ConsumeOptions, Topic } from '../types.ts';

/** What a consumer needs of the bus. */
export interface ConsumerLog {
  position(group: string, topic: Topic): number;
  read(topic: Topic, from: number, limit: number): BusMessage[];
  commit(group: string, topic: Topic, nextOffset: number): void;
  deadLetterMessage(message: BusMessage, reason: string): void;
}

export interface ConsumerSettings {
  batchSize: number;
  pollMs: number;
  wakeups: EventEmitter;
  handled: (messages: number) => void;
  onError: (err: Error, context: string) => void;
}

/** A batch read for handing: its topic's turn in `topics`, and where it was read from. */
interface Batch {
  turn: number;
  topic: Topic;
  from: number;
  messages: BusMessage[];
}

export class EmbeddedConsumer {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly onPublished = () => this.wake?.();
  /**
   * The batch read while the one before it was with the handler, not handed yet: at most
   * one at a time (one batch of `batchSize` messages, whatever the topics; the flow's
   * path reads nothing ahead). Never committed by reading it; dropped when the consumer
   * stops or a pass fails, and read again from the committed position.
   */
  private ahead: Batch | undefined;

  constructor(
    private readonly bus: ConsumerLog,
    private readonly options: ConsumeOptions,
    private readonly settings: ConsumerSettings,
  ) {}

  start(): void {
    this.settings.wakeups.on('published', this.onPublished);
    this.loop = this.run();
  }

  /**
   * Without a flow, topics are read and handled in turns. With one (a merging handler),
   * each pass reads every topic the flow has not paused and hands their batches over
   * together, then reports the topics it found empty as caught up (and their log ends
   * as read, InputFlow.reading): the merge sees what each input has before it decides
   * which is ahead, and the handler never has to wait for another topic's batch, which
   * this one loop could not deliver while it waited.
   */
  private async run(): Promise<void> {
    const { group, topics, flow } = this.options;
    if (flow) {
      flow.assigned(topics.map((topic) => ({ topic, partition: 0 })));
      this.unsubscribe = flow.onResume(() => this.wake?.());
    }
    let failures = 0;
    while (!this.stopped) {
      try {
        const delivered = await this.pass();
        failures = 0;
        if (!delivered && !this.stopped) await this.sleep(this.settings.pollMs);
      } catch (e) {
        // Reading the log or a position failed (the file is locked past the busy
        // timeout): nothing was handed over for it; the pass is tried again after a
        // backoff, and an error never ends the loop (it would stop the group silently).
        const err = e instanceof Error ? e : new Error(String(e));
        this.settings.onError(
          err,
          `consumer group "${group}" could not read ${topics.join(', ')}; retrying`,
        );
        await this.sleep(Math.min(5_000, 50 * 2 ** Math.min(++failures, 7)));
      }
    }
  }

  /** Reads each topic once and hands what it found over; true if anything was handled. */
  private async pass(): Promise<boolean> {
    const { group, topics, flow } = this.options;
    let delivered = false;
    if (flow) {
      const reads: Array<{ topic: Topic; messages: BusMessage[] }> = [];
      const empty: Array<{ topic: Topic; position: number }> = [];
      // The reads below happen after this: a topic found empty was at its end since.
      const asked = performance.now();
      for (const topic of topics) {
        if (flow.isPaused({ topic, partition: 0 })) continue;
        const position = this.bus.position(group, topic);
        const messages = this.bus.read(topic, position, this.settings.batchSize);
        if (messages.length === 0) empty.push({ topic, position });
        else reads.push({ topic, messages });
      }
      const results = await Promise.all(reads.map((r) => this.hand(r.topic, r.messages)));
      for (const e of empty) {
        const ref = { topic: e.topic, partition: 0 };
        flow.caughtUp(ref, e.position);
        // Its log end as read: what confirms a quiet input idle (pipeline/rules-input.ts).
        flow.reading?.(ref, e.position, asked);
      }
      delivered = results.includes(true);
    } else {
      // Topics in turns, as before; each batch is read while the one before it is with
      // the handler (`ahead`), so a handler that works elsewhere (the index worker, a
      // server) is not left waiting for this thread to read, decode and commit.
      let next = this.ahead ? this.take(this.ahead) : this.readFrom(0, undefined);
      this.ahead = undefined;
      while (next && !this.stopped) {
        const batch = next;
        next = undefined;
        const handed = this.hand(batch.topic, batch.messages);
        // The read ahead starts after this batch (its topic's position once committed)
        // and is checked against the committed position before it is handed (take()).
        let ahead: Batch | undefined;
        try {
          ahead = this.readFrom(batch.turn + 1, {
            topic: batch.topic,
            from: Number(batch.messages.at(-1)!.offset) + 1,
          });
        } catch (err) {
          // Reading ahead failed (the file locked past the busy timeout): the batch out
          // is awaited, and the failure is the pass's, retried by run() as any read's.
          await handed;
          throw err;
        }
        if (ahead) this.announce(ahead);
        // hand() retries until done; false only when the consumer is stopping: what was
        // read ahead is dropped, never committed, and read again by the next start.
        if (!(await handed)) return delivered;
        delivered = true;
        next = ahead && this.take(ahead);
        // One pass hands at most one batch per topic more than it found at its start
        // (the loop in run() comes back at once after a pass that delivered).
        if (next && next.turn <= batch.turn) {
          this.ahead = next;
          break;
        }
      }
    }
    return delivered;
  }

  /**
   * The first topic from `turn` on (in turns, wrapping once) with messages to read: from
   * its committed position, or for `after.topic` from `after.from` (the batch out to the
   * handler ends just before it). Undefined when every topic is read to its end.
   */
  private readFrom(turn: number, after: { topic: Topic; from: number } | undefined) {
    const { group, topics } = this.options;
    for (let i = 0; i < topics.length; i++) {
      const t = (turn + i) % topics.length;
      const topic = topics[t]!;
      const from = topic === after?.topic ? after.from : this.bus.position(group, topic);
      const messages = this.bus.read(topic, from, this.settings.batchSize);
      if (messages.length > 0) return { turn: t, topic, from, messages } satisfies Batch;
    }
    return undefined;
  }

  /**
   * A batch read ahead, if its topic's position is still where it was read from (the
   * batch before it committed, and nothing moved the group since: a rewind, another
   * member); otherwise it is read again from the position.
   */
  private take(ahead: Batch): Batch | undefined {
    const position = this.bus.position(this.options.group, ahead.topic);
    if (position === ahead.from) return ahead;
    return this.readFrom(ahead.turn, undefined);
  }

  /** Tells the handler's side of a batch it will be given next (ConsumeOptions.readAhead). */
  private announce(batch: Batch): void {
    const { readAhead, group } = this.options;
    if (!readAhead) return;
    try {
      readAhead({ topic: batch.topic, partition: 0, messages: batch.messages });
    } catch (e) {
      // Only a head start: the batch is handed as usual.
      const err = e instanceof Error ? e : new Error(String(e));
      this.settings.onError(err, `consumer group "${group}" could not announce a batch read ahead`);
    }
  }

  /**
   * Hands a batch to the handler through the shared delivery (deliver.ts: retries, then
   * halves, then the dead-letter store for a message that keeps failing); true once it
   * is done and the position has moved, false when the consumer stopped first.
   */
  private hand(topic: Topic, messages: BusMessage[]): Promise<boolean> {
    const { group, handler } = this.options;
    return deliver(
      { topic, partition: 0, messages },
      {
        handler,
        maxAttempts: this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        // The position moves only once the handler is done with a message.
        commit: (last, count) => {
          try {
            this.bus.commit(group, topic, Number(last.offset) + 1);
          } catch (err) {
            // Another connection holds the file's lock past the busy timeout: the
            // handler is done, so the commit alone is retried (deliver.ts).
            throw isSqliteBusy(err) ? transient(err as Error) : err;
          }
          this.settings.handled(count);
        },
        deadLetter: (m, reason) =>
          this.bus.deadLetterMessage(
            m,
            `consumer group "${group}" at ${topic}@${m.offset}: ${reason}`,
          ),
        backoff: (failures) => this.sleep(Math.min(5_000, 50 * 2 ** Math.min(failures, 7))),
        running: () => !this.stopped,
        onError: this.settings.onError,
        describe: (ms) =>
          `consumer group "${group}" failed a batch of ${ms.length} from ${topic} at offset ${ms[0]!.offset}`,
      },
    );
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.settings.wakeups.off('published', this.onPublished);
    this.unsubscribe?.();
    this.wake?.();
    await this.loop;
  }
}
