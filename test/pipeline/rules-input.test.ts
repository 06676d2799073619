import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/model/event.ts';
import {
  type BusMessage,
  type EmbeddedBus,
  type InputRef,
  openEmbeddedBus,
} from '../../ingest/bus/index.ts';
import { createRulesInput } from '../../pipeline/rules-input.ts';
import { until } from '../support/drover.ts';

const buses: EmbeddedBus[] = [];
afterEach(async () => {
  for (const bus of buses.splice(0)) await bus.close();
});

function bus(): EmbeddedBus {
  const b = openEmbeddedBus({
    path: join(mkdtempSync(join(tmpdir(), 'drover-merge-')), 'bus.db'),
    retentionIntervalMs: 0,
    pollMs: 20,
  });
  buses.push(b);
  return b;
}

const log = (t: number, i: number): Event => ({
  '@timestamp': t,
  message: `line ${i}`,
  'service.name': 'web',
});
const metric = (t: number): Event => ({
  '@timestamp': t,
  'service.name': 'web',
  'metric.name': 'cpu',
  'metric.value': 1,
});

/** Consumes the bus's logs and metrics through a merge; returns what it processed. */
async function consume(b: EmbeddedBus, maxHeldPerInput: number, fail?: (m: BusMessage) => boolean) {
  const processed: BusMessage[] = [];
  const errors: string[] = [];
  let maxHeld = 0;
  const input = createRulesInput({
    maxHeldPerInput,
    process: (m) => {
      maxHeld = Math.max(maxHeld, input.held() + 1);
      if (fail?.(m)) throw new Error('cannot take this one');
      processed.push(m);
    },
    onError: (err, m) => errors.push(`${m.topic}@${m.offset}: ${err.message}`),
  });
  const consumer = await b.consume({
    group: 'rules',
    topics: ['logs', 'metrics'],
    handler: (batch) => input.handler(batch),
    flow: input.flow,
  });
  return { processed, errors, input, consumer, maxHeld: () => maxHeld };
}

const logs = { topic: 'logs' as const, partition: 0 };
const metrics = { topic: 'metrics' as const, partition: 0 };
/** A batch of `ref` with one event at each time, offsets from `from`. */
const batch = (ref: InputRef, times: number[], from: number) => ({
  ...ref,
  messages: times.map((t, i) => ({
    ...ref,
    offset: String(from + i),
    key: '',
    event: { '@timestamp': t },
  })),
});

describe('rules input: the event-time merge of the bus inputs', () => {
  it('hands a backlog to the rules in event-time order across topics, holding a bounded amount', async () => {
    const b = bus();
    // Logs at 20 a second, metrics at one: a delivered batch of 1,000 metrics spans what
    // 20,000 logs do, so topics read in turns are minutes apart in event time.
    const events: Event[] = [];
    const start = 1_700_000_000_000;
    for (let i = 0; i < 6_000; i++) {
      events.push(log(start + i * 50, i));
      if (i % 20 === 0) events.push(metric(start + i * 50));
    }
    await b.publish(events);
    const c = await consume(b, 500);
    await until('the backlog to be processed', () => c.processed.length === events.length);
    await c.consumer.stop();
    const times = c.processed.map((m) => m.event['@timestamp']);
    const outOfOrder = times.filter((t, i) => i > 0 && t < times[i - 1]!).length;
    expect(outOfOrder).toBe(0);
    // Each input in its own order, every offset once: nothing lost, nothing repeated.
    for (const topic of ['logs', 'metrics'] as const) {
      const offsets = c.processed.filter((m) => m.topic === topic).map((m) => Number(m.offset));
      expect(offsets).toEqual(offsets.map((_, i) => i));
    }
    // Paused at 500, an input holds at most that and the batch that crossed it.
    expect(c.maxHeld()).toBeLessThanOrEqual(2 * (500 + 1_000));
    expect(c.input.held()).toBe(0);
    expect(c.errors).toEqual([]);
  });

  it('after a crash, replaying from the processed offsets loses nothing and repeats nothing', async () => {
    const b = bus();
    const events: Event[] = [];
    const start = 1_700_000_000_000;
    for (let i = 0; i < 6_000; i++) {
      events.push(log(start + i * 50, i));
      if (i % 20 === 0) events.push(metric(start + i * 50));
    }
    await b.publish(events);
    // The engine's side: what it processed, and the offsets a snapshot would hold.
    const seen: string[] = [];
    const offsets: Record<string, number> = {};
    let snapshot: Record<string, number> | undefined;
    let heldAtSnapshot = 0;
    const first = createRulesInput({
      maxHeldPerInput: 2_000,
      process: (m) => {
        if (snapshot) return; // crashed: nothing after the snapshot counts
        seen.push(`${m.topic}@${m.offset}`);
        offsets[`${m.topic}/${m.partition}`] = Number(m.offset) + 1;
        if (seen.length === 2_500) {
          snapshot = { ...offsets };
          heldAtSnapshot = first.held();
        }
      },
    });
    const c1 = await b.consume({
      group: 'rules',
      topics: ['logs', 'metrics'],
      handler: (batch) => first.handler(batch),
      flow: first.flow,
    });
    await until('the snapshot', () => snapshot !== undefined);
    await c1.stop();
    // Read from the bus but not processed when the snapshot was taken.
    expect(heldAtSnapshot).toBeGreaterThan(0);
    expect(b.position('rules', 'metrics')).toBeGreaterThan(snapshot!['metrics/0'] ?? 0);
    // Restart: the group goes back to the snapshot's offsets, as drover serve does.
    for (const topic of ['logs', 'metrics'] as const)
      b.commit('rules', topic, snapshot![`${topic}/0`] ?? 0);
    const c2 = await consume(b, 2_000);
    await until('the rest', () => seen.length + c2.processed.length >= events.length);
    await c2.consumer.stop();
    const all = [...seen, ...c2.processed.map((m) => `${m.topic}@${m.offset}`)];
    expect(all).toHaveLength(events.length);
    expect(new Set(all).size).toBe(events.length);
  });

  it('an input with nothing pending does not hold the others back; when it delivers again it is merged', async () => {
    const b = bus();
    const start = 1_700_000_000_000;
    await b.publish([0, 1, 2].map((i) => log(start + i * 1_000, i)));
    const c = await consume(b, 100);
    await until('the logs, with no metrics at all', () => c.processed.length === 3);
    await b.publish([metric(start + 5_000), log(start + 6_000, 3), log(start + 7_000, 4)]);
    await until('what came next', () => c.processed.length === 6);
    await c.consumer.stop();
    expect(c.processed.map((m) => [m.topic, m.event['@timestamp'] - start])).toEqual([
      ['logs', 0],
      ['logs', 1_000],
      ['logs', 2_000],
      ['metrics', 5_000],
      ['logs', 6_000],
      ['logs', 7_000],
    ]);
  });

  it('an input caught up a moment ago holds the others until it has been quiet for idleAfterMs', async () => {
    let now = 0;
    const processed: string[] = [];
    const input = createRulesInput({
      idleAfterMs: 1_000,
      clock: () => now,
      process: (m) => processed.push(`${m.topic}@${m.event['@timestamp']}`),
    });
    input.flow.assigned([logs, metrics]);
    input.flow.caughtUp(metrics, 0);
    // Metrics were at their end a moment ago: the logs wait for them.
    await input.handler(batch(logs, [10, 20, 30], 0));
    expect(processed).toEqual([]);
    // Their next batch came (as a fetch's batches come, one after another): merged.
    await input.handler(batch(metrics, [15], 0));
    expect(processed).toEqual(['logs@10', 'metrics@15']);
    // The metrics' next batch: the logs before it go, then the logs hold it.
    await input.handler(batch(metrics, [45], 1));
    expect(processed).toEqual(['logs@10', 'metrics@15', 'logs@20', 'logs@30']);
    // Reported caught up while its event is still held (Kafka reports it with the batch
    // that reached the end): it counts once the event is processed.
    input.flow.caughtUp(metrics, 2);
    now = 999;
    await input.handler(batch(logs, [50], 3));
    expect(processed).toEqual(['logs@10', 'metrics@15', 'logs@20', 'logs@30', 'metrics@45']);
    expect(input.held()).toBe(1);
    // Quiet for a second: idle, and the logs go on without them.
    now = 2_000;
    await until('the timer', () => processed.length === 6);
    expect(processed.at(-1)).toBe('logs@50');
    expect(input.held()).toBe(0);
  });

  it('with confirmIdle, quiet by the clock is idle only once a reading asked after confirms it', async () => {
    // A worker starved of CPU (or its loop blocked) past idleAfterMs finds every quiet
    // input past its deadline when it runs again, the fetch holding their new messages
    // not yet read. By the clock alone the logs went ahead of the metrics written meanwhile.
    let now = 0;
    const processed: string[] = [];
    const asked: string[] = [];
    const input = createRulesInput({
      idleAfterMs: 1_000,
      clock: () => now,
      confirmIdle: (refs) => asked.push(...refs.map((r) => `${r.topic}@${now}`)),
      process: (m) => processed.push(`${m.topic}@${m.event['@timestamp']}`),
    });
    input.flow.assigned([logs, metrics]);
    input.flow.caughtUp(metrics, 1);
    await input.handler(batch(logs, [10, 20], 0));
    expect(processed).toEqual([]);
    // Five seconds later (starved): quiet by the clock, not confirmed. A reading asked
    // before the quiet period ended confirms nothing.
    now = 5_000;
    input.flow.reading!(metrics, 1, 500);
    await input.handler(batch(logs, [30], 2));
    expect(processed).toEqual([]);
    expect(asked).toEqual(['metrics@5000']);
    // Asked for again only after idleAfterMs.
    now = 5_500;
    await input.handler(batch(logs, [40], 3));
    expect(asked).toEqual(['metrics@5000']);
    // The fetch read after the pause: the metrics' end is past what they delivered, so
    // they hold again, and their batch merges in event time.
    input.flow.reading!(metrics, 3, 5_001);
    await input.handler(batch(metrics, [15, 25], 1));
    expect(processed).toEqual(['logs@10', 'metrics@15', 'logs@20', 'metrics@25']);
    // At their end again: idle once quiet for a second and a reading asked after says so.
    input.flow.caughtUp(metrics, 3);
    now = 6_600;
    input.flow.reading!(metrics, 3, 6_000);
    expect(processed).toHaveLength(4);
    input.flow.reading!(metrics, 3, 6_550);
    expect(processed).toEqual([
      'logs@10',
      'metrics@15',
      'logs@20',
      'metrics@25',
      'logs@30',
      'logs@40',
    ]);
  });

  it('the embedded consumer confirms a quiet topic idle: each pass tells what it read', async () => {
    // serve gives the embedded merge confirmIdle with nothing to ask for: the consumer's
    // passes (every pollMs) read the topics they deliver nothing from and say so.
    const b = bus();
    const start = 1_700_000_000_000;
    await b.publish([0, 1, 2].map((i) => log(start + i, i)));
    const processed: BusMessage[] = [];
    const readings: string[] = [];
    const input = createRulesInput({
      idleAfterMs: 100,
      confirmIdle: () => {},
      process: (m) => processed.push(m),
    });
    const reading = input.flow.reading!.bind(input.flow);
    const consumer = await b.consume({
      group: 'rules',
      topics: ['logs', 'metrics'],
      handler: (batch) => input.handler(batch),
      flow: {
        ...input.flow,
        reading: (ref, end, asked) => {
          readings.push(`${ref.topic}@${end}`);
          reading(ref, end, asked);
        },
      },
    });
    // The metrics topic, empty, is quiet: confirmed by the passes, it holds nothing back.
    await until('the logs', () => processed.length === 3, 5_000);
    await consumer.stop();
    expect(readings).toContain('metrics@0');
  });

  it('an event the rules cannot take is reported and skipped; the rest goes on', async () => {
    const b = bus();
    const start = 1_700_000_000_000;
    await b.publish([0, 1, 2, 3].map((i) => log(start + i, i)));
    const c = await consume(b, 100, (m) => m.offset === '1');
    await until('the other events', () => c.processed.length === 3);
    await c.consumer.stop();
    expect(c.processed.map((m) => m.offset)).toEqual(['0', '2', '3']);
    expect(c.errors).toEqual(['logs@1: cannot take this one']);
  });

  it('refuses a held-events bound that is not a positive integer', () => {
    expect(() => createRulesInput({ process: () => {}, maxHeldPerInput: 0 })).toThrow(
      /maxHeldPerInput must be a positive integer/,
    );
  });
});
