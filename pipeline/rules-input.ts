/**
 * The rules' input: the bus's inputs (each topic/partition) merged into one stream in
 * event-time order, as Flink and Kafka Streams merge their input partitions.
 *
 * Why: under a backlog the buses deliver their inputs in turns, a batch at a time. A
 * batch of metrics spans minutes of event time where a batch of logs spans seconds, so
 * feeding batches to the engine as they come moved its watermark minutes past the logs
 * still queued, and fired expiries and spikes against windows that were not complete.
 *
 * How:
 * - Each input has its own progress: a queue of delivered messages and the next offset
 *   the engine has processed. The merge hands the engine, one at a time, the queued
 *   message with the smallest event time across inputs (ties: the first input in the
 *   order they were assigned, so a replay merges the same way).
 * - An input with nothing queued holds the others back until it delivers, unless it is
 *   idle: its consumer found nothing pending after what it delivered (the embedded bus
 *   read its topic's end; on Kafka the batch reached the partition's high watermark, a
 *   plain consumer's group had no lag when the partition was assigned, or a rules task's
 *   position reached the last log end read), and nothing came for
 *   `idleAfterMs` since. Caught up is not enough: under a steady stream an input is
 *   caught up between every two deliveries, and on Kafka the next fetch of a partition
 *   caught up a moment ago may come in a later handler call than the other inputs'
 *   batches, so such a partition usually has its next batch on the way (the idle timeout of Flink's idleness and Kafka Streams'
 *   max.task.idle.ms). An input not yet heard from since it was assigned holds the
 *   others back too. An idle input that delivers again holds again; what it delivers
 *   late is the engine's allowed lateness's concern.
 * - With `confirmIdle` (Kafka's rules tasks) quiet for `idleAfterMs` by the clock is not
 *   enough either: a log-end reading asked for after that moment (a fetch response or a
 *   read of the ends, `InputFlow.reading`) must find the input still at its end. A
 *   process starved of CPU, or whose loop was blocked, for longer than `idleAfterMs`
 *   finds every quiet input past its deadline when it runs again, with the fetch that
 *   holds their new messages not yet read: by the clock alone it released the other
 *   inputs' events ahead of them (their events then came late, or an order-sensitive
 *   rule such as new_term saw them in another order than a backtest), a verdict that
 *   depended on the load of the host. A reading that finds the input's log end past
 *   what it delivered makes it hold again until that is delivered. Until a confirming
 *   reading comes, `confirmIdle` is called (at most once per `idleAfterMs` an input).
 * - The handler returns once a batch is queued, so the bus never waits on the merge
 *   (blocking the handler until another input delivered would stall the embedded
 *   consumer's single loop and kafkajs's fetch, which waits for every batch it handed
 *   out). Instead an input holding `maxHeldPerInput` messages or more is paused: the
 *   consumer stops reading it until the merge has processed it below the limit.
 *   Bound: held messages are at most inputs × (maxHeldPerInput + one delivered batch);
 *   a delivered batch is at most 1,000 messages on the embedded bus and one fetch of a
 *   partition on Kafka (kafkajs's maxBytesPerPartition, 1 MiB). The number of inputs is
 *   the partitions assigned (configuration, not data).
 * - `process` receives each message as the engine takes it, so the caller records the
 *   processed offset per input for its snapshot: messages held here but not processed
 *   are after that offset and are replayed after a crash, and what was processed
 *   before the snapshot is not processed again.
 *
 * Cost: each message is chosen by a scan over the inputs (O(inputs) per message, a few
 * inputs); the work is linear in the messages delivered.
 */

import type { BusBatch, BusMessage, InputFlow, InputRef } from '../ingest/bus/index.ts';

export interface RulesInputOptions {
  /** Receives each message in merged order. */
  process: (message: BusMessage) => void;
  /** Messages held per input before it is paused. Default 10,000. */
  maxHeldPerInput?: number;
  /**
   * How long an input must stay caught up, with nothing delivered, before it stops
   * holding the others back. Default 1,000 ms: a fraction of the default allowed
   * lateness (5 s), and the most a quiet input delays the others by.
   */
  idleAfterMs?: number;
  /**
   * Milliseconds, monotonic: the time `idleAfterMs` is measured in, and that of
   * `InputFlow.reading`'s `asked`. Default performance.now.
   */
  clock?: () => number;
  /**
   * Asks for a reading of these inputs' log ends (answered through `flow.reading`): given,
   * an input is idle only once a reading asked for after its quiet period confirms it.
   */
  confirmIdle?: (inputs: InputRef[]) => void;
  /**
   * `process` threw on a message: it is reported here and counted as processed, so one
   * event the engine cannot take does not wedge the rules or replay what came before it.
   */
  onError?: (err: Error, message: BusMessage) => void;
}

export interface RulesInput {
  /** The bus consumer's handler: queues the batch and processes what is ready. */
  handler(batch: BusBatch): Promise<void>;
  /** The flow the bus consumer is given with this handler. */
  readonly flow: InputFlow;
  /** Messages delivered and not yet processed. */
  held(): number;
}

interface InputState {
  ref: InputRef;
  /** Delivered batches not yet fully processed; `at` indexes the first one's next message. */
  batches: BusMessage[][];
  at: number;
  held: number;
  /** The offset after the last message delivered; undefined until one is. */
  delivered: number | undefined;
  /** When the consumer found it caught up, if it has delivered nothing since. */
  caughtUpSince: number | undefined;
  /** The log end it was found caught up at (with caughtUpSince). */
  caughtUpAt: number;
  /** The latest `asked` of a reading finding it at its end since caughtUpSince. */
  confirmedAsked: number;
  /** When confirmIdle was last called for it. */
  askedAt: number;
  paused: boolean;
}

function newState(ref: InputRef): InputState {
  return {
    ref: { topic: ref.topic, partition: ref.partition },
    batches: [],
    at: 0,
    held: 0,
    delivered: undefined,
    caughtUpSince: undefined,
    caughtUpAt: 0,
    confirmedAsked: Number.NEGATIVE_INFINITY,
    askedAt: Number.NEGATIVE_INFINITY,
    paused: false,
  };
}

const keyOf = (ref: InputRef) => `${ref.topic}/${ref.partition}`;

/** An event time to order by: a value that is not a finite number sorts first. */
function timeOf(m: BusMessage): number {
  const t = m.event['@timestamp'];
  return typeof t === 'number' && Number.isFinite(t) ? t : Number.NEGATIVE_INFINITY;
}

export function createRulesInput(options: RulesInputOptions): RulesInput {
  const maxHeld = options.maxHeldPerInput ?? 10_000;
  if (!Number.isInteger(maxHeld) || maxHeld < 1)
    throw new RangeError('maxHeldPerInput must be a positive integer');
  if (!(options.idleAfterMs === undefined || options.idleAfterMs >= 0))
    throw new RangeError('idleAfterMs must be 0 or more');
  // Keyed by topic/partition: bounded by the partitions assigned, not by data.
  const inputs = new Map<string, InputState>();
  let order: InputState[] = [];
  let assigned = false;
  let held = 0;
  const wakers = new Set<() => void>();
  const idleAfterMs = options.idleAfterMs ?? 1_000;
  const clock = options.clock ?? (() => performance.now());
  const confirmIdle = options.confirmIdle;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Number.POSITIVE_INFINITY;

  const stateOf = (ref: InputRef): InputState | undefined => inputs.get(keyOf(ref));

  /** Processes while every input either has something queued or is idle. */
  function drain(): void {
    if (!assigned) return;
    const now = clock();
    for (;;) {
      let next: InputState | undefined;
      let nextTime = 0;
      for (const s of order) {
        if (s.held === 0) {
          const since = s.caughtUpSince;
          if (since !== undefined && now - since >= idleAfterMs) {
            if (!confirmIdle || s.confirmedAsked >= since + idleAfterMs) continue;
            // Quiet by the clock: idle once a reading asked for from now confirms it
            // (it calls drain), asked for again if none has in idleAfterMs.
            if (now - s.askedAt >= idleAfterMs) {
              s.askedAt = now;
              confirmIdle([s.ref]);
            }
            wakeAt(s.askedAt + idleAfterMs);
            next = undefined;
            break;
          }
          // Caught up a moment ago: look again once it has been quiet long enough.
          if (since !== undefined) wakeAt(since + idleAfterMs);
          next = undefined;
          break;
        }
        const t = timeOf(s.batches[0]![s.at]!);
        if (next === undefined || t < nextTime) {
          next = s;
          nextTime = t;
        }
      }
      if (next === undefined) break;
      const batch = next.batches[0]!;
      const message = batch[next.at]!;
      next.at++;
      next.held--;
      held--;
      if (next.at === batch.length) {
        next.batches.shift();
        next.at = 0;
      }
      try {
        options.process(message);
      } catch (err) {
        options.onError?.(err instanceof Error ? err : new Error(String(err)), message);
      }
    }
    let resumed = false;
    for (const s of order)
      if (s.paused && s.held < maxHeld) {
        s.paused = false;
        resumed = true;
      }
    if (resumed) for (const wake of wakers) wake();
  }

  function wakeAt(at: number): void {
    if (timer && timerAt <= at) return;
    if (timer) clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(
      () => {
        timer = undefined;
        timerAt = Number.POSITIVE_INFINITY;
        drain();
      },
      Math.max(0, at - clock()),
    );
    timer.unref();
  }

  const flow: InputFlow = {
    assigned(refs) {
      const next = new Map<string, InputState>();
      for (const ref of refs) {
        const key = keyOf(ref);
        if (next.has(key)) continue;
        next.set(key, inputs.get(key) ?? newState(ref));
      }
      // An input this consumer no longer reads: what it held goes unprocessed, so the
      // snapshot's offset for it stays before it.
      for (const [key, s] of inputs) if (!next.has(key)) held -= s.held;
      inputs.clear();
      for (const [key, s] of next) inputs.set(key, s);
      order = [...inputs.values()];
      assigned = true;
      drain();
    },
    caughtUp(ref, at) {
      const s = stateOf(ref);
      // A look at the log end older than what was delivered since says nothing. One
      // that is current counts even while the input still holds events (Kafka reports
      // it with the batch that reached the end): once they are processed, it is idle.
      if (!s || (s.delivered !== undefined && s.delivered > at)) return;
      if (s.caughtUpSince === undefined) {
        s.caughtUpSince = clock();
        s.caughtUpAt = at;
        s.confirmedAsked = Number.NEGATIVE_INFINITY;
        drain();
      } else s.caughtUpAt = Math.max(s.caughtUpAt, at);
    },
    reading(ref, end, asked) {
      const s = stateOf(ref);
      if (!confirmIdle || !s || s.caughtUpSince === undefined) return;
      if (end > Math.max(s.delivered ?? 0, s.caughtUpAt)) {
        // More was written than it delivered: not caught up, whatever the clock says.
        s.caughtUpSince = undefined;
        return;
      }
      if (asked <= s.confirmedAsked) return;
      s.confirmedAsked = asked;
      if (asked >= s.caughtUpSince + idleAfterMs) drain();
    },
    isPaused(ref) {
      return stateOf(ref)?.paused ?? false;
    },
    onResume(wake) {
      wakers.add(wake);
      return () => wakers.delete(wake);
    },
  };

  return {
    flow,
    async handler(batch) {
      if (batch.messages.length === 0) return;
      let s = stateOf(batch);
      if (!s) {
        // Delivered before (or without) an assignment naming it: it joins the merge.
        s = newState(batch);
        inputs.set(keyOf(batch), s);
        order.push(s);
      }
      s.batches.push(batch.messages);
      s.held += batch.messages.length;
      held += batch.messages.length;
      s.delivered = Number(batch.messages.at(-1)!.offset) + 1;
      s.caughtUpSince = undefined;
      // A consumer that hands over several inputs' batches at once (a pass of the
      // embedded bus, concurrent kafkajs partitions) has them all queued before the
      // merge decides which input is ahead.
      await new Promise((resolve) => setImmediate(resolve));
      drain();
      if (s.held >= maxHeld) s.paused = true;
    },
    held: () => held,
  };
}
