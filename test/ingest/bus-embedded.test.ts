import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Event } from '../../ingest/index.ts';
import { BusBackpressureError, type BusBatch, openEmbeddedBus } from '../../ingest/bus/index.ts';

const fresh = () => join(mkdtempSync(join(tmpdir(), 'drover-bus-')), 'bus.db');
const log = (i: number, service = 'web'): Event => ({
  '@timestamp': 1_700_000_000_000 + i,
  'service.name': service,
  message: `line ${i}`,
  seq: i,
});
const metric = (i: number): Event => ({
  '@timestamp': 1_700_000_000_000 + i,
  'metric.name': 'cpu',
  'metric.value': i,
  'service.name': 'web',
});

function until(predicate: () => boolean, ms = 5_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (predicate()) resolve();
      else if (Date.now() - start > ms) reject(new Error('timed out'));
      else setTimeout(check, 10);
    };
    check();
  });
}

describe('embedded bus', () => {
  it('publishes durably and delivers in order per topic, logs and metrics apart', async () => {
    const bus = openEmbeddedBus({ path: fresh(), pollMs: 20 });
    const result = await bus.publish([log(0), metric(1), log(2)]);
    expect(result).toEqual({ accepted: [0, 1, 2], rejected: [] });
    const seen: BusBatch[] = [];
    const consumer = await bus.consume({
      group: 'indexer',
      topics: ['logs', 'metrics'],
      handler: async (b) => void seen.push(b),
    });
    await until(() => seen.flatMap((b) => b.messages).length === 3);
    const logs = seen.filter((b) => b.topic === 'logs').flatMap((b) => b.messages);
    expect(logs.map((m) => [m.offset, m.key, m.event.seq])).toEqual([
      ['0', 'web', 0],
      ['1', 'web', 2],
    ]);
    expect(seen.find((b) => b.topic === 'metrics')!.messages[0]!.event['metric.value']).toBe(1);
    await consumer.stop();
    expect(bus.lag('indexer')).toEqual({ logs: 0, metrics: 0 });
    await bus.close();
  });

  it('commits only after the handler resolves: a failing batch is redelivered, not skipped', async () => {
    const bus = openEmbeddedBus({ path: fresh(), pollMs: 20 });
    await bus.publish([log(0), log(1)]);
    let attempts = 0;
    const delivered: number[] = [];
    const consumer = await bus.consume({
      group: 'rules',
      topics: ['logs'],
      handler: async (b) => {
        attempts++;
        if (attempts < 3) throw new Error('indexer down');
        delivered.push(...b.messages.map((m) => m.event.seq as number));
      },
    });
    await until(() => delivered.length === 2);
    expect(attempts).toBe(3);
    expect(delivered).toEqual([0, 1]);
    await consumer.stop();
    await bus.close();
  });

  it('a restarted consumer resumes at its committed position; groups are independent', async () => {
    const path = fresh();
    let bus = openEmbeddedBus({ path, pollMs: 20 });
    await bus.publish([0, 1, 2].map((i) => log(i)));
    const first: number[] = [];
    let consumer = await bus.consume({
      group: 'a',
      topics: ['logs'],
      handler: async (b) => void first.push(...b.messages.map((m) => m.event.seq as number)),
    });
    await until(() => first.length === 3);
    await consumer.stop();
    await bus.close();

    bus = openEmbeddedBus({ path, pollMs: 20 });
    await bus.publish([3, 4].map((i) => log(i)));
    const again: number[] = [];
    consumer = await bus.consume({
      group: 'a',
      topics: ['logs'],
      handler: async (b) => void again.push(...b.messages.map((m) => m.event.seq as number)),
    });
    const other: number[] = [];
    const second = await bus.consume({
      group: 'b',
      topics: ['logs'],
      handler: async (b) => void other.push(...b.messages.map((m) => m.event.seq as number)),
    });
    await until(() => again.length === 2 && other.length === 5);
    expect(again).toEqual([3, 4]);
    expect(other).toEqual([0, 1, 2, 3, 4]);
    await consumer.stop();
    await second.stop();
    await bus.close();
  });

  it('dead-letters an oversized event with the reason and accepts the rest', async () => {
    const bus = openEmbeddedBus({ path: fresh(), maxEventBytes: 200 });
    const big = { ...log(1), message: 'x'.repeat(500) };
    const result = await bus.publish([log(0), big, log(2)]);
    expect(result.accepted).toEqual([0, 2]);
    expect(result.rejected).toEqual([
      { index: 1, reason: expect.stringMatching(/exceeds the limit of 200/) },
    ]);
    expect(bus.deadLetters()[0]!.reason).toMatch(/exceeds the limit/);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([0, 2]);
    await bus.close();
  });

  it('pushes back with a Retry-After when consumers fall too far behind', async () => {
    const bus = openEmbeddedBus({ path: fresh(), maxLag: 5 });
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const consumer = await bus.consume({ group: 'slow', topics: ['logs'], handler: () => stuck });
    await bus.publish([0, 1, 2, 3, 4].map((i) => log(i)));
    const err = await bus.publish([log(5)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusBackpressureError);
    expect((err as BusBackpressureError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    release();
    await consumer.stop();
    await bus.close();
  });

  it('retention drops old and excess messages only once every group consumed them', async () => {
    let now = 1_000_000;
    const bus = openEmbeddedBus({
      path: fresh(),
      retentionMs: 1_000,
      clock: () => now,
      pollMs: 10,
    });
    await bus.publish([0, 1, 2, 3].map((i) => log(i)));
    const seen: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => {
        for (const m of b.messages)
          if ((m.event.seq as number) < 2) seen.push(m.event.seq as number);
        if (b.messages.some((m) => (m.event.seq as number) >= 2)) throw new Error('stop at 2');
      },
    });
    await until(() => seen.length >= 2);
    await consumer.stop();
    now += 10_000;
    // Nothing was committed (the batch holding 2 and 3 failed): all four stay.
    expect(bus.applyRetention()).toBe(0);
    bus.commit('g', 'logs', 2);
    expect(bus.applyRetention()).toBe(2);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([2, 3]);
    await bus.close();
  });

  it('loses no acknowledged event when the publishing process is killed with SIGKILL', async () => {
    const path = fresh();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'publish-forever.ts'), path],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await until(() => out.split('\n').filter(Boolean).length > 2_000, 30_000);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // Only complete lines are acknowledgements the child finished writing.
    const acknowledged = out
      .slice(0, out.lastIndexOf('\n'))
      .split('\n')
      .filter(Boolean)
      .map(Number);
    const bus = openEmbeddedBus({ path });
    const stored = new Set(bus.read('logs', 0, 10_000_000).map((m) => m.event.seq as number));
    const lost = acknowledged.filter((id) => !stored.has(id));
    expect(acknowledged.length).toBeGreaterThan(2_000);
    expect(lost).toEqual([]);
    await bus.close();
  });
});
