import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BusBatch } from '../../../ingest/bus/index.ts';
import type { Event } from '../../../ingest/model/index.ts';
import { openEmbeddedIndex, openIndexWorker } from '../../../ingest/sinks/index.ts';

const T = Date.parse('2024-03-10T12:00:00Z');
const DAY = 86_400_000;
const ev = (i: number): Event => ({
  '@timestamp': T - DAY + i * 5_000,
  'service.name': i % 2 ? 'api' : 'web',
  'host.name': `h${i % 40}`,
  'log.level': i % 5 === 0 ? 'error' : 'info',
  message: i % 5 === 0 ? `payment declined for order ${i}` : `request served ${i}`,
});
const batch = (from: number, count: number): BusBatch => ({
  topic: 'logs',
  partition: 0,
  messages: Array.from({ length: count }, (_, k) => ({
    topic: 'logs',
    partition: 0,
    offset: String(from + k),
    key: '',
    event: ev(from + k),
  })),
});
const tmpIndex = () => join(mkdtempSync(join(tmpdir(), 'drover-idxw-')), 'index');

describe('the embedded index in a worker thread', () => {
  it('indexes off the caller’s event loop and answers as the index in the same thread does', async () => {
    const dropped: string[] = [];
    const expired: number[] = [];
    const worker = await openIndexWorker(tmpIndex(), {
      retention: { maxAgeMs: 10 * 365 * DAY },
      retentionIntervalMs: 0,
      onExpired: (n) => expired.push(n),
      onDropped: (name, reason) => dropped.push(`${name} ${reason}`),
    });
    const local = openEmbeddedIndex(tmpIndex(), { retentionIntervalMs: 0 });
    // While the worker indexes 20,000 events, this thread's loop keeps turning: with the
    // index in this thread, indexBatch runs to its end before any other callback.
    let turns = 0;
    let turning = true;
    const spin = () => {
      turns++;
      if (turning) setImmediate(spin);
    };
    setImmediate(spin);
    await worker.indexBatch(batch(0, 20_000));
    const duringWorker = turns;
    turns = 0;
    await local.indexBatch(batch(0, 20_000));
    const duringLocal = turns;
    turning = false;
    expect(duringLocal).toBe(0);
    expect(duringWorker).toBeGreaterThan(0);
    for (const params of [
      {},
      { q: 'payment', service: 'web', size: 7 },
      { from: T - DAY / 2, to: T + DAY, level: 'error', size: 100 },
    ])
      expect(await worker.search(params)).toEqual(await local.search(params));
    expect(await worker.partitionNames()).toEqual(local.partitionNames());
    expect(await worker.bytes()).toBeGreaterThan(0);
    // 1970 is past retention: counted on this side, not indexed.
    await worker.indexBatch({
      ...batch(30_000, 1),
      messages: [{ ...batch(30_000, 1).messages[0]!, event: { ...ev(1), '@timestamp': 0 } }],
    });
    expect(expired).toEqual([1]);
    expect(dropped).toEqual([]);
    await worker.close();
    await expect(worker.search({})).rejects.toThrow(/closed/);
    local.close();
  });

  it('reports its thread’s time: in batches, on a CPU and waiting for one, from its own clock', async () => {
    const worker = await openIndexWorker(tmpIndex(), { retentionIntervalMs: 0 });
    expect(worker.usage()).toEqual({ active: 0, batch: 0, cpu: 0, wait: 0 });
    const began = performance.now();
    await worker.indexBatch(batch(0, 5_000));
    const first = worker.usage();
    const wall = (performance.now() - began) / 1000;
    expect(first.batch).toBeGreaterThan(0);
    expect(first.batch).toBeLessThanOrEqual(wall);
    // Its own loop was active at least for the batch (and for taking the request in).
    expect(first.active).toBeGreaterThanOrEqual(first.batch * 0.99);
    if (process.platform === 'linux') {
      // The worker thread's own CPU, not the process's: within the batch's wall time.
      expect(first.cpu).toBeGreaterThan(0);
      expect(first.cpu + first.wait).toBeLessThanOrEqual(first.batch * 1.01 + 0.002);
    }
    await worker.search({ q: 'payment' });
    expect(worker.usage()).toEqual(first);
    await worker.indexBatch(batch(5_000, 5_000));
    const second = worker.usage();
    expect(second.batch).toBeGreaterThan(first.batch);
    expect(second.active).toBeGreaterThan(first.active);
    await worker.close();
  });

  it('starts on a staged batch, answers its handing with that outcome, and indexes anew after a failure', async () => {
    const worker = await openIndexWorker(tmpIndex(), {
      retention: { maxAgeMs: 10 * 365 * DAY },
      retentionIntervalMs: 0,
    });
    const staged = batch(0, 2_000);
    worker.stage(staged);
    // The worker indexes it before it is handed: a search queued behind it sees it all.
    expect((await worker.search({ size: 1 })).total).toBe(2_000);
    const before = worker.usage().batch;
    await worker.indexBatch(staged);
    // Handed, it is not sent again: no batch ran in the worker for it.
    expect(worker.usage().batch).toBe(before);
    // Another batch than the one staged is sent as usual.
    await worker.indexBatch(batch(2_000, 10));
    expect((await worker.search({ size: 1 })).total).toBe(2_010);

    const bad = batch(3_000, 3);
    bad.messages[1] = { ...bad.messages[1]!, event: { ...ev(1), '@timestamp': 'soon' as never } };
    worker.stage(bad);
    await expect(worker.indexBatch(bad)).rejects.toThrow(/not epoch milliseconds/);
    // Handed again (a retry): indexed again, failing again, not answered from the stage.
    const runs = worker.usage().batch;
    await expect(worker.indexBatch(bad)).rejects.toThrow(/not epoch milliseconds/);
    expect(worker.usage().batch).toBeGreaterThan(runs);
    // A staged batch never handed (the consumer stopped) leaves no unhandled rejection.
    worker.stage(bad);
    await worker.close();
  });
});
