import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { openSqlite } from '../../../ingest/storage/sqlite.ts';
import { describe, expect, it } from 'vitest';
import type { Event } from '../../../ingest/model/index.ts';
import { writeJson } from '../../../ingest/model/json-bytes.ts';
import {
  BusBackpressureError,
  type BusBatch,
  type EmbeddedBusOptions,
  openEmbeddedBus,
  transient,
} from '../../../ingest/bus/index.ts';

const fresh = () => join(mkdtempSync(join(tmpdir(), 'drover-bus-')), 'bus.db');
const open = (options: Partial<EmbeddedBusOptions> = {}) =>
  openEmbeddedBus({ path: fresh(), pollMs: 20, ...options });
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
const seqs = (b: BusBatch) => b.messages.map((m) => m.event.seq as number);

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

describe('embedded bus: publish and consume', () => {
  it('publishes durably and delivers in order per topic, logs and metrics apart, keyed by service', async () => {
    const bus = open();
    const result = await bus.publish([log(0), metric(1), log(2), { '@timestamp': 3, seq: 3 }]);
    expect(result).toEqual({ accepted: [0, 1, 2, 3], rejected: [] });
    const seen: BusBatch[] = [];
    const consumer = await bus.consume({
      group: 'indexer',
      topics: ['logs', 'metrics'],
      handler: async (b) => void seen.push(b),
    });
    await until(() => seen.flatMap((b) => b.messages).length === 4);
    const logs = seen.filter((b) => b.topic === 'logs').flatMap((b) => b.messages);
    expect(logs.map((m) => [m.offset, m.partition, m.key, m.event.seq])).toEqual([
      ['0', 0, 'web', 0],
      ['1', 0, 'web', 2],
      // No service and no host: the fixed fallback key.
      ['2', 0, '', 3],
    ]);
    const metrics = seen.filter((b) => b.topic === 'metrics').flatMap((b) => b.messages);
    expect(metrics.map((m) => [m.offset, m.event['metric.value']])).toEqual([['0', 1]]);
    await consumer.stop();
    expect(bus.lag('indexer')).toEqual({ logs: 0, metrics: 0 });
    await bus.close();
  });

  it('answers each of many concurrent publishes with its own indexes, in one shared order', async () => {
    const bus = open({ maxEventBytes: 200 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, p) =>
        bus.publish([log(p * 10), { ...log(p * 10 + 1), message: 'x'.repeat(300) }]),
      ),
    );
    // The second event of each call is refused (too big); each caller hears of its own.
    expect(results.every((r) => r.accepted.join() === '0')).toBe(true);
    expect(results.every((r) => r.rejected.map((x) => x.index).join() === '1')).toBe(true);
    expect(bus.read('logs', 0, 100).map((m) => m.event.seq)).toEqual(
      Array.from({ length: 50 }, (_, p) => p * 10),
    );
    await bus.close();
  }, 10_000);

  it('commits only after the handler resolves: a failing batch is redelivered and the failure reported', async () => {
    const errors: string[] = [];
    const bus = open({ onError: (err, context) => errors.push(`${context}: ${err.message}`) });
    await bus.publish([log(0), log(1)]);
    let attempts = 0;
    const delivered: number[] = [];
    const consumer = await bus.consume({
      group: 'rules',
      topics: ['logs'],
      handler: async (b) => {
        attempts++;
        if (attempts < 3) throw new Error('indexer down');
        delivered.push(...seqs(b));
      },
    });
    await until(() => delivered.length === 2);
    expect(attempts).toBe(3);
    expect(delivered).toEqual([0, 1]);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(
      /group "rules" failed a batch of 2 from logs at offset 0.*indexer down/,
    );
    await consumer.stop();
    await bus.close();
  });

  it('a message the handler keeps failing goes to the dead-letter store and the group moves on', async () => {
    const errors: string[] = [];
    const bus = open({ onError: (err, context) => errors.push(`${context}: ${err.message}`) });
    await bus.publish(Array.from({ length: 30 }, (_, i) => log(i)));
    const applied: number[] = [];
    const tries = new Map<number, number>();
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      maxAttempts: 2,
      // Atomic, as the contract asks: checks every message before applying any.
      handler: async (b) => {
        for (const s of seqs(b)) tries.set(s, (tries.get(s) ?? 0) + 1);
        if (seqs(b).includes(13)) throw new Error('poison at 13');
        applied.push(...seqs(b));
      },
    });
    await until(() => bus.lag('g').logs === 0, 10_000);
    await consumer.stop();
    // Every other message is applied exactly once, in order.
    expect(applied).toEqual(Array.from({ length: 30 }, (_, i) => i).filter((i) => i !== 13));
    const dead = bus.deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]!.reason).toMatch(/consumer group "g" at logs@13: failed 2 times: poison at 13/);
    expect(JSON.parse(dead[0]!.body)).toMatchObject({ seq: 13 });
    // log2(30) halvings, each tried maxAttempts times, then 13 on its own.
    expect(tries.get(13)).toBeLessThanOrEqual(2 * 6);
    expect(errors.at(-1)).toMatch(/at offset 13 2 times; it goes to the dead-letter store/);
    // A new consumer of the group starts past it.
    const again: number[] = [];
    const next = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void again.push(...seqs(b)),
    });
    await bus.publish([log(30)]);
    await until(() => again.length === 1);
    expect(again).toEqual([30]);
    await next.stop();
    await bus.close();
  }, 20_000);

  it('a transient failure is retried as long as it takes, and nothing is dead-lettered', async () => {
    const bus = open({ onError: () => {} });
    await bus.publish([log(0), log(1)]);
    let attempts = 0;
    const delivered: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      maxAttempts: 1,
      handler: async (b) => {
        if (++attempts < 4) throw transient(new Error('server down'));
        delivered.push(...seqs(b));
      },
    });
    await until(() => delivered.length === 2, 10_000);
    expect(delivered).toEqual([0, 1]);
    expect(bus.deadLetters()).toHaveLength(0);
    await consumer.stop();
    await bus.close();
  }, 15_000);

  it('a commit the bus file is too busy for is retried alone: nothing lost, nothing doubled', async () => {
    const path = fresh();
    const errors: string[] = [];
    const bus = openEmbeddedBus({ path, pollMs: 20, onError: (e) => errors.push(e.message) });
    await bus.publish([log(0), log(1), log(2)]);
    bus.commit('g', 'logs', 0);
    // Another connection holds the write lock past the bus's 5 s busy timeout.
    const other = openSqlite(path);
    other.exec('BEGIN IMMEDIATE');
    const release = setTimeout(() => other.exec('COMMIT'), 6_500);
    const delivered: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => {
        delivered.push(...seqs(b));
      },
    });
    await until(() => bus.position('g', 'logs') === 3, 20_000);
    await bus.publish([log(3)]);
    await until(() => delivered.length === 4, 5_000);
    expect(delivered).toEqual([0, 1, 2, 3]);
    expect(errors.join('\n')).toMatch(/database is locked/);
    expect(bus.deadLetters()).toHaveLength(0);
    clearTimeout(release);
    await consumer.stop();
    await bus.close();
    other.close();
  }, 30_000);

  it('commits positions without an fsync of their own, and publishes stay synchronous=FULL', async () => {
    const bus = open();
    const db = (bus as unknown as { db: { pragma(t: string): unknown[] } }).db;
    const level = () => Object.values(db.pragma('synchronous')[0] as Record<string, number>)[0];
    expect(level()).toBe(2);
    await bus.publish([log(1), log(2)]);
    bus.commit('g', 'logs', 1);
    expect(bus.position('g', 'logs')).toBe(1);
    // Back to FULL for what follows: an acknowledged publish is synced to disk.
    expect(level()).toBe(2);
    await bus.close();
  });

  it('a stopped consumer leaves its failed batch uncommitted', async () => {
    const bus = open({ onError: () => {} });
    await bus.publish([log(0), log(1)]);
    let attempts = 0;
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async () => {
        attempts++;
        throw new Error('down');
      },
    });
    await until(() => attempts >= 1);
    await consumer.stop();
    expect(bus.position('g', 'logs')).toBe(0);
    expect(bus.lag('g').logs).toBe(2);
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
      handler: async (b) => void first.push(...seqs(b)),
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
      handler: async (b) => void again.push(...seqs(b)),
    });
    const other: number[] = [];
    const second = await bus.consume({
      group: 'b',
      topics: ['logs'],
      handler: async (b) => void other.push(...seqs(b)),
    });
    await until(() => again.length === 2 && other.length === 5);
    expect(again).toEqual([3, 4]);
    expect(other).toEqual([0, 1, 2, 3, 4]);
    expect(bus.groups()).toEqual([
      { group: 'a', topic: 'logs', position: 5, lag: 0 },
      { group: 'b', topic: 'logs', position: 5, lag: 0 },
    ]);
    await consumer.stop();
    await second.stop();
    await bus.close();
  });

  it('delivers messages another process (another connection) appends, with no offset clash', async () => {
    const path = fresh();
    const writerA = openEmbeddedBus({ path });
    const writerB = openEmbeddedBus({ path });
    for (let i = 0; i < 6; i += 2) {
      await writerA.publish([log(i)]);
      await writerB.publish([log(i + 1)]);
    }
    const reader = openEmbeddedBus({ path, pollMs: 10 });
    const seen: number[] = [];
    const consumer = await reader.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void seen.push(...seqs(b)),
    });
    await until(() => seen.length === 6);
    await writerA.publish([log(6)]);
    await until(() => seen.length === 7);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
    await consumer.stop();
    await Promise.all([writerA.close(), writerB.close(), reader.close()]);
  });

  it('writes publishes still queued when it closes, and refuses later ones', async () => {
    const path = fresh();
    const bus = openEmbeddedBus({ path });
    const pending = bus.publish([log(0)]);
    await bus.close();
    expect(await pending).toEqual({ accepted: [0], rejected: [] });
    await expect(bus.publish([log(1)])).rejects.toThrow(/closed/);
    const reopened = openEmbeddedBus({ path });
    expect(reopened.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([0]);
    await reopened.close();
  });
});

describe('embedded bus: reading the next batch while the handler has one', () => {
  /** The bus, with each read a consumer makes recorded as `topic@from`. */
  const recording = (options: Partial<EmbeddedBusOptions> = {}) => {
    const bus = open({ batchSize: 100, ...options });
    const reads: string[] = [];
    const read = bus.read.bind(bus);
    bus.read = (topic, from, limit) => {
      reads.push(`${topic}@${from}`);
      return read(topic, from, limit);
    };
    return { bus, reads };
  };
  const deferred = () => {
    let release!: (err?: Error) => void;
    const done = new Promise<void>((resolve, reject) => {
      release = (err) => (err ? reject(err) : resolve());
    });
    return { done, release };
  };

  it('reads the next batch, of the next topic in turn, while the handler holds one, and keeps the order', async () => {
    const { bus, reads } = recording();
    await bus.publish([...Array.from({ length: 250 }, (_, i) => log(i)), metric(250)]);
    const gate = deferred();
    const seen: string[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs', 'metrics'],
      handler: async (b) => {
        seen.push(`${b.topic}@${b.messages[0]!.offset}+${b.messages.length}`);
        if (seen.length === 1) await gate.done;
      },
    });
    // The first batch (logs 0..99) is with the handler: the metrics batch is read
    // meanwhile, and nothing is committed.
    await until(() => reads.includes('metrics@0'));
    expect(seen).toEqual(['logs@0+100']);
    expect(bus.position('g', 'logs')).toBe(0);
    expect(bus.position('g', 'metrics')).toBe(0);
    gate.release();
    await until(() => seen.length === 4);
    // While metrics was out, logs was read from where the logs batch ended.
    expect(reads).toContain('logs@100');
    expect(seen).toEqual(['logs@0+100', 'metrics@0+1', 'logs@100+100', 'logs@200+50']);
    await until(() => bus.lag('g').logs === 0 && bus.lag('g').metrics === 0);
    await consumer.stop();
    await bus.close();
  });

  it('announces each batch read ahead to readAhead, and hands the same messages next', async () => {
    const { bus } = recording();
    await bus.publish(Array.from({ length: 250 }, (_, i) => log(i)));
    const gate = deferred();
    const announced: BusBatch['messages'][] = [];
    const handed: BusBatch['messages'][] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs', 'metrics'],
      readAhead: (b) => announced.push(b.messages),
      handler: async (b) => {
        handed.push(b.messages);
        if (handed.length === 1) await gate.done;
      },
    });
    // While the first batch is out, the second is announced, not yet handed.
    await until(() => announced.length === 1);
    expect(handed).toHaveLength(1);
    expect(announced[0]!.map((m) => m.offset)[0]).toBe('100');
    gate.release();
    await until(() => handed.length === 3);
    // Each batch announced is the very array handed next (the first was read before
    // anything was out, so it was not announced).
    expect(handed[1]).toBe(announced[0]);
    expect(handed[2]).toBe(announced[1]);
    expect(handed.map((ms) => ms.length)).toEqual([100, 100, 50]);
    await consumer.stop();
    await bus.close();
  });

  it('a batch the handler fails is handed again before the one read after it, which is never skipped', async () => {
    const { bus, reads } = recording({ onError: () => {} });
    await bus.publish(Array.from({ length: 300 }, (_, i) => log(i)));
    const handed: number[] = [];
    const positions: number[] = [];
    let failures = 0;
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      maxAttempts: 10,
      handler: async (b) => {
        const first = b.messages[0]!.offset;
        handed.push(Number(first));
        positions.push(bus.position('g', 'logs'));
        // The second batch fails twice: the third was read ahead by then.
        if (first === '100' && failures < 2) {
          failures++;
          await until(() => reads.includes('logs@200'));
          throw new Error('index down');
        }
      },
    });
    await until(() => bus.lag('g').logs === 0);
    expect(handed).toEqual([0, 100, 100, 100, 200]);
    // Each hand saw its own batch's start committed, never one beyond it.
    expect(positions).toEqual([0, 100, 100, 100, 200]);
    await consumer.stop();
    await bus.close();
  });

  it('stopped while a batch is read ahead: nothing of it is committed, and a new consumer gets it', async () => {
    const path = fresh();
    const bus = openEmbeddedBus({ path, pollMs: 20, batchSize: 100, onError: () => {} });
    const reads: string[] = [];
    const read = bus.read.bind(bus);
    bus.read = (topic, from, limit) => {
      reads.push(`${topic}@${from}`);
      return read(topic, from, limit);
    };
    await bus.publish(Array.from({ length: 300 }, (_, i) => log(i)));
    const gate = deferred();
    const first: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => {
        first.push(...seqs(b));
        await gate.done;
      },
    });
    await until(() => reads.includes('logs@100'));
    const stopped = consumer.stop();
    // The batch out succeeds after the stop was asked for: it is committed, the one
    // read ahead is not handed.
    gate.release();
    await stopped;
    expect(first).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(bus.position('g', 'logs')).toBe(100);

    const again: number[] = [];
    const second = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void again.push(...seqs(b)),
    });
    await until(() => again.length >= 200);
    expect(again).toEqual(Array.from({ length: 200 }, (_, i) => 100 + i));
    await second.stop();
    await bus.close();
  });
});

describe('embedded bus: chunks', () => {
  it('stores a large publish in several chunks and reads any offset range of it exactly', async () => {
    const path = fresh();
    const bus = openEmbeddedBus({ path });
    const events = Array.from({ length: 2_500 }, (_, i) =>
      i % 5 === 0 ? metric(i) : log(i, `svc-${i % 3}`),
    );
    await bus.publish(events);
    const logs = events.filter((e) => e['metric.name'] === undefined);
    expect(bus.stats().topics.logs).toEqual({ earliest: 0, next: logs.length });
    expect(bus.stats().storedMessages).toBe(2_500);
    // Windows starting and ending inside chunks, and across chunk boundaries.
    for (const [from, limit] of [
      [0, 1],
      [999, 2],
      [1_337, 700],
      [1_999, 5],
      [logs.length - 1, 10],
      [logs.length, 10],
    ] as const) {
      const read = bus.read('logs', from, limit);
      const expected = logs.slice(from, from + limit);
      expect(read.map((m) => m.offset)).toEqual(expected.map((_, i) => String(from + i)));
      expect(read.map((m) => m.event)).toEqual(expected);
      expect(read.map((m) => m.key)).toEqual(expected.map((e) => e['service.name']));
    }
    await bus.close();
    // Chunks of at most 1,000 messages, as full as that allows.
    const db = openSqlite(path, { readonly: true });
    const counts = db.prepare('SELECT count FROM chunks_logs ORDER BY last').pluck().all();
    db.close();
    expect(counts).toEqual([1_000, 1_000]);
  });

  it.each(['gzip', 'none'] as const)(
    'keeps multi-byte text exact, counts UTF-8 bytes, and cuts chunks at the byte bound (compression %s)',
    async (compression) => {
      const path = fresh();
      // A limit above the chunk bound: chunks must still stop at 1 MiB.
      const bus = openEmbeddedBus({ path, maxEventBytes: 2 << 20, compression });
      const texts = ['é', 'ü', '日本語', '🚀 launch', 'ascii', '\u2028 separator', '"quoted"\n'];
      // Large multi-byte events: three of them overflow one 1 MiB chunk.
      const big = (i: number): Event => ({ ...log(i), message: '語'.repeat(150_000) });
      const events = [
        ...Array.from({ length: 40 }, (_, i) => ({ ...log(i), message: texts[i % texts.length]! })),
        big(40),
        big(41),
        big(42),
      ];
      await bus.publish(events);
      const read = bus.read('logs', 0, 100);
      expect(read.map((m) => m.event)).toEqual(events);
      const bytes = events.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0);
      expect(bus.stats()).toMatchObject({ storedBytes: bytes, storedMessages: events.length });
      await bus.close();
      // One chunk per ≤ 1 MiB of UTF-8: gzipped (a BLOB gunzip reads), or with
      // compression none as text any SQLite client reads.
      const db = openSqlite(path, { readonly: true });
      const rows = db
        .prepare('SELECT typeof(body) AS type, body, count FROM chunks_logs')
        .all() as Array<{ type: string; body: string | Uint8Array; count: number }>;
      db.close();
      const texts2 = rows.map((r) =>
        typeof r.body === 'string' ? r.body : gunzipSync(r.body).toString('utf8'),
      );
      expect(rows.every((r) => r.type === (compression === 'gzip' ? 'blob' : 'text'))).toBe(true);
      expect(texts2.every((t) => Buffer.byteLength(t) <= 1 << 20)).toBe(true);
      expect(
        texts2
          .join('\n')
          .split('\n')
          .map((l) => JSON.parse(l) as Event),
      ).toEqual(events);
      expect(rows.map((r) => r.count).reduce((a, b) => a + b)).toBe(events.length);
      expect(rows.length).toBeGreaterThanOrEqual(2);
    },
  );

  it('a consumer with a batch smaller than a chunk resumes inside the chunk after a restart', async () => {
    const path = fresh();
    let bus = openEmbeddedBus({ path, pollMs: 10, batchSize: 7 });
    await bus.publish(Array.from({ length: 50 }, (_, i) => log(i)));
    const seen: number[] = [];
    let consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => {
        if (seen.length >= 21) throw new Error('stop after three batches');
        seen.push(...seqs(b));
      },
    });
    await until(() => seen.length === 21);
    await consumer.stop();
    await bus.close();
    bus = openEmbeddedBus({ path, pollMs: 10, batchSize: 7 });
    expect(bus.position('g', 'logs')).toBe(21);
    consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void seen.push(...seqs(b)),
    });
    await until(() => seen.length === 50);
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await consumer.stop();
    await bus.close();
  });

  it('retention by size trims a chunk that is consumed in part, and keeps its byte count exact', async () => {
    let now = 0;
    const bus = open({ retentionBytes: 2_000, clock: () => now });
    const events = Array.from({ length: 60 }, (_, i) => log(i));
    await bus.publish(events);
    const total = events.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0);
    expect(bus.stats().storedBytes).toBe(total);
    bus.commit('g', 'logs', 40);
    now = 1;
    bus.applyRetention();
    const left = bus.read('logs', 0, 100).map((m) => m.event);
    const leftBytes = left.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0);
    // Only consumed messages went, the oldest first, and the count matches what is left.
    expect(left.map((e) => e.seq)).toEqual(
      Array.from({ length: left.length }, (_, i) => 60 - left.length + i),
    );
    expect(left.length).toBeGreaterThan(20);
    expect(left.length).toBeLessThan(40);
    expect(bus.stats()).toMatchObject({ storedBytes: leftBytes, storedMessages: left.length });
    // It fits the low-water mark (90%), and no more than one message's worth went beyond
    // what fitting needed.
    expect(leftBytes).toBeLessThanOrEqual(1_800);
    expect(leftBytes).toBeGreaterThan(1_800 - Buffer.byteLength(JSON.stringify(log(59))));
    expect(bus.stats().topics.logs.earliest).toBe(60 - left.length);
    await bus.close();
  });

  it('accepts more once a log that sits exactly at its size limit is all consumed', async () => {
    // A soak run on 2026-12-04 wedged here: retention trimmed the log to exactly its limit,
    // publish refused at the limit (>=) while retention only ran over it (>), and every POST
    // got 429 until the age limit, 7 days on, with every group caught up.
    const path = fresh();
    const events = Array.from({ length: 50 }, (_, i) => log(i));
    const first = openEmbeddedBus({ path });
    await first.publish(events);
    first.commit('g', 'logs', 50);
    const full = first.stats().storedBytes;
    await first.close();
    const bus = openEmbeddedBus({ path, retentionBytes: full, retentionIntervalMs: 0 });
    expect(bus.stats().storedBytes).toBe(full);
    const more = await bus.publish([log(50)]);
    expect(more.accepted).toHaveLength(1);
    // Retention freed room below the limit (the low-water mark), not one message's worth,
    // so the publishes after a full log do not each pay for a trim.
    const left = bus.stats().storedBytes;
    expect(left).toBeLessThanOrEqual(
      Math.floor(full * 0.9) + Buffer.byteLength(JSON.stringify(log(50))),
    );
    expect(
      bus
        .read('logs', 0, 100)
        .map((m) => m.event.seq)
        .at(-1),
    ).toBe(50);
    await bus.close();
  });

  it('reads a log written as text and as gzip alike, and trims a gzipped chunk in place', async () => {
    const path = fresh();
    let now = 0;
    const events = Array.from({ length: 90 }, (_, i) => log(i));
    const asText = openEmbeddedBus({ path, compression: 'none', clock: () => now });
    await asText.publish(events.slice(0, 30));
    await asText.close();
    const bus = openEmbeddedBus({ path, retentionBytes: 3_000, clock: () => now });
    await bus.publish(events.slice(30));
    expect(bus.read('logs', 0, 100).map((m) => m.event)).toEqual(events);
    const db = openSqlite(path, { readonly: true });
    const types = db.prepare('SELECT typeof(body) FROM chunks_logs ORDER BY last').pluck().all();
    db.close();
    expect(types).toEqual(['text', 'blob']);
    // Retention cuts into the gzipped chunk: what is left reads back exact, still gzipped.
    bus.commit('g', 'logs', 70);
    now = 1;
    bus.applyRetention();
    const left = bus.read('logs', 0, 100).map((m) => m.event);
    expect(left.length).toBeGreaterThan(20);
    expect(left).toEqual(events.slice(90 - left.length));
    const leftBytes = left.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0);
    expect(bus.stats()).toMatchObject({ storedBytes: leftBytes, storedMessages: left.length });
    await bus.close();
    const after = openSqlite(path, { readonly: true });
    const rest = after.prepare('SELECT typeof(body) FROM chunks_logs').pluck().all();
    after.close();
    expect(rest).toEqual(['blob']);
  });

  it('stores a run of events in a fraction of their bytes when gzipped', async () => {
    const sizes: Record<string, number> = {};
    for (const compression of ['gzip', 'none'] as const) {
      const path = fresh();
      const bus = openEmbeddedBus({ path, compression });
      await bus.publish(Array.from({ length: 5_000 }, (_, i) => log(i, `svc-${i % 7}`)));
      await bus.close();
      const db = openSqlite(path, { readonly: true });
      sizes[compression] = db
        .prepare('SELECT SUM(length(CAST(body AS BLOB))) FROM chunks_logs')
        .pluck()
        .get() as number;
      db.close();
    }
    expect(sizes.gzip!).toBeLessThan(sizes.none! / 3);
  });

  it('opens a log written with a row per message and keeps its offsets, positions and bodies', async () => {
    const path = fresh();
    const old = openSqlite(path);
    old.exec(`
      CREATE TABLE messages (
        topic TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
        received INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (topic, offset)) WITHOUT ROWID;
      CREATE TABLE topics (topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE positions (
        grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic)) WITHOUT ROWID;
    `);
    const insert = old.prepare('INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)');
    for (const i of [3, 4, 5]) {
      const body = JSON.stringify(log(i));
      insert.run('logs', i, 'web', 1, Buffer.byteLength(body), body);
    }
    old.exec(`INSERT INTO topics VALUES ('logs', 6), ('metrics', 0);
              INSERT INTO positions VALUES ('g', 'logs', 4);`);
    old.close();
    const bus = openEmbeddedBus({ path, pollMs: 10 });
    expect(bus.stats().topics.logs).toEqual({ earliest: 3, next: 6 });
    expect(bus.read('logs', 0, 10).map((m) => [m.offset, m.event.seq])).toEqual([
      ['3', 3],
      ['4', 4],
      ['5', 5],
    ]);
    await bus.publish([log(6)]);
    const seen: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void seen.push(...seqs(b)),
    });
    await until(() => seen.length === 3);
    expect(seen).toEqual([4, 5, 6]);
    await consumer.stop();
    await bus.close();
  });
});

describe('embedded bus: refusals and dead letters', () => {
  it('dead-letters an oversized event with the reason and accepts the rest', async () => {
    const bus = open({ maxEventBytes: 200 });
    const big = { ...log(1), message: 'x'.repeat(500) };
    const result = await bus.publish([log(0), big, log(2)]);
    expect(result.accepted).toEqual([0, 2]);
    expect(result.rejected).toEqual([
      { index: 1, reason: expect.stringMatching(/^event of \d+ bytes exceeds the limit of 200$/) },
    ]);
    const [letter] = bus.deadLetters();
    expect(letter!.reason).toBe(result.rejected[0]!.reason);
    expect((JSON.parse(letter!.body) as { message: string }).message).toBe('x'.repeat(500));
    expect(bus.stats().deadLetters).toBe(1);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([0, 2]);
    await bus.close();
  });

  it('refuses an event JSON cannot carry, and only that one', async () => {
    const bus = open();
    const circular: Event = { ...log(1) };
    circular.self = circular;
    const result = await bus.publish([
      log(0),
      { ...log(2), big: 10n },
      circular,
      null as unknown as Event,
      log(3),
    ]);
    expect(result.accepted).toEqual([0, 4]);
    expect(result.rejected.map((r) => [r.index, r.reason])).toEqual([
      [1, expect.stringMatching(/cannot be serialized as JSON: .*BigInt/)],
      [2, expect.stringMatching(/cannot be serialized as JSON: .*circular/i)],
      [3, 'not an event object'],
    ]);
    expect(bus.deadLetters().map((d) => d.body)).toEqual([
      'null',
      expect.stringContaining('[Circular'),
      expect.stringContaining('10n'),
    ]);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([0, 3]);
    await bus.close();
  });

  it('publishes batches filled event by event: topics apart, beyond their first buffer, a refusal in the middle', async () => {
    const bus = open({ maxEventBytes: 8_000 });
    const batches = [bus.batch(), bus.batch()];
    const sent: Event[][] = [[], []];
    // Each batch holds ~1.5 MiB of logs: several times the staging buffer it starts with.
    for (let i = 0; i < 1_500; i++) {
      const b = i % 2;
      const event =
        i === 701
          ? { ...log(i), message: 'y'.repeat(9_000) }
          : i % 3 === 0
            ? { ...metric(i), seq: i }
            : { ...log(i), message: `${'é語'.repeat(i % 700)} ${i}` };
      batches[b]!.add(event);
      sent[b]!.push(event);
    }
    const [first, second] = await Promise.all(batches.map((b) => bus.publishBatch(b)));
    expect(first!.rejected).toEqual([]);
    expect(first!.accepted).toEqual(sent[0]!.map((_, i) => i));
    // Event 701 is the 351st of the second batch.
    expect(second!.rejected).toEqual([
      {
        index: 350,
        reason: expect.stringMatching(/^event of 9\d{3} bytes exceeds the limit of 8000$/),
      },
    ]);
    expect(second!.accepted).toEqual(sent[1]!.map((_, i) => i).filter((i) => i !== 350));
    // Published together, stored batch after batch, each topic in order.
    const expected = [...sent[0]!, ...sent[1]!].filter((e) => e.seq !== 701);
    const logs = bus.read('logs', 0, 5_000).map((m) => m.event);
    const metrics = bus.read('metrics', 0, 5_000).map((m) => m.event);
    expect(logs).toEqual(expected.filter((e) => e['metric.name'] === undefined));
    expect(metrics).toEqual(expected.filter((e) => e['metric.name'] !== undefined));
    expect(bus.stats().storedBytes).toBe(
      expected.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0),
    );
    await bus.close();
  });

  it('takes events written into the batch by their caller: grown into, or refused past the limit', async () => {
    const bus = open({ maxEventBytes: 600_000 });
    const batch = bus.batch();
    const events = [
      log(0),
      // Larger than the staging buffer a batch starts with.
      { ...log(1), message: 'é'.repeat(200_000) },
      { ...log(2), message: 'z'.repeat(700_000) },
      metric(3),
    ];
    for (const e of events)
      batch.addJson(e['metric.name'] ? 'metrics' : 'logs', 'web', (buf, at) =>
        writeJson(e, buf, at),
      );
    const result = await bus.publishBatch(batch);
    expect(result.accepted).toEqual([0, 1, 3]);
    expect(result.rejected).toEqual([
      {
        index: 2,
        reason: expect.stringMatching(/^event of 7000\d\d bytes exceeds the limit of 600000$/),
      },
    ]);
    expect(bus.read('logs', 0, 10).map((m) => m.event)).toEqual([events[0], events[1]]);
    expect(bus.read('metrics', 0, 10).map((m) => m.event)).toEqual([events[3]]);
    const [letter] = bus.deadLetters();
    expect(letter!.body).toBe(JSON.stringify(events[2]).slice(0, 65_536));
    await bus.close();
  });

  it('takes only its own batches, once each', async () => {
    const bus = open();
    const other = open();
    const batch = bus.batch();
    batch.add(log(0));
    await expect(other.publishBatch(batch)).rejects.toThrow(/a batch made by this bus/);
    await expect(bus.publishBatch(batch)).resolves.toEqual({ accepted: [0], rejected: [] });
    await expect(bus.publishBatch(batch)).rejects.toThrow(/published already/);
    expect(bus.read('logs', 0, 10)).toHaveLength(1);
    await Promise.all([bus.close(), other.close()]);
  });
});

describe('embedded bus: backpressure', () => {
  it('pushes back when a group falls too far behind, with a Retry-After from its measured pace', async () => {
    const now = 1_000_000;
    const bus = open({ maxLag: 10, clock: () => now });
    await bus.publish(Array.from({ length: 10 }, (_, i) => log(i)));
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    let batches = 0;
    const consumer = await bus.consume({
      group: 'slow',
      topics: ['logs'],
      // The first batch (10 messages) goes through: a pace of 10 messages/s. Then it stalls.
      handler: async () => {
        if (batches++ > 0) await stuck;
      },
    });
    await until(() => bus.lag('slow').logs === 0);
    await bus.publish(Array.from({ length: 12 }, (_, i) => log(10 + i)));
    const err = await bus.publish([log(99)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusBackpressureError);
    expect((err as Error).message).toMatch(/"slow" is 12 messages behind on logs \(limit 10\)/);
    // 12 - 9 (90% of the bound) = 3 messages to drain at 10/s: 1 s.
    expect((err as BusBackpressureError).retryAfterSeconds).toBe(1);
    // Nothing of the refused publish was stored.
    expect(bus.stats().topics.logs.next).toBe(22);

    // A group that has never consumed anything gives no pace: a moderate default wait.
    bus.deleteGroup('slow');
    const idle = await bus.consume({ group: 'idle', topics: ['logs'], handler: () => stuck });
    const idleErr = (await bus.publish([log(99)]).catch((e: unknown) => e)) as BusBackpressureError;
    expect(idleErr.retryAfterSeconds).toBe(30);
    release();
    await idle.stop();
    await consumer.stop();
    await bus.close();
  });

  it('takes publishes again once the lagging group is deleted', async () => {
    const bus = open({ maxLag: 3 });
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const consumer = await bus.consume({ group: 'gone', topics: ['logs'], handler: () => stuck });
    await bus.publish([0, 1, 2].map((i) => log(i)));
    await expect(bus.publish([log(3)])).rejects.toBeInstanceOf(BusBackpressureError);
    bus.deleteGroup('gone');
    expect(bus.groups()).toEqual([]);
    await expect(bus.publish([log(3)])).resolves.toEqual({ accepted: [0], rejected: [] });
    release();
    await consumer.stop();
    await bus.close();
  });

  it('pushes back when the log is full of unconsumed data, rather than dropping it', async () => {
    const bus = open({ retentionBytes: 1_000 });
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const consumer = await bus.consume({ group: 'g', topics: ['logs'], handler: () => stuck });
    let accepted = 0;
    let refusal: unknown;
    for (let i = 0; i < 40 && !refusal; i++) {
      try {
        accepted += (await bus.publish([log(i)])).accepted.length;
      } catch (err) {
        refusal = err;
      }
    }
    expect(refusal).toBeInstanceOf(BusBackpressureError);
    expect((refusal as Error).message).toMatch(
      /log holds \d+ bytes \(limit 1000\) that consumer group "g" has not consumed/,
    );
    expect((refusal as BusBackpressureError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    // Everything acknowledged is still there.
    expect(bus.read('logs', 0, 100)).toHaveLength(accepted);
    expect(bus.stats().storedBytes).toBeGreaterThanOrEqual(1_000);
    release();
    await consumer.stop();
    await bus.close();
  });
});

describe('embedded bus: retention', () => {
  it('drops messages past their age only once every group consumed them', async () => {
    let now = 1_000_000;
    const bus = open({ retentionMs: 1_000, clock: () => now });
    await bus.publish([0, 1, 2, 3].map((i) => log(i)));
    const seen: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => {
        seen.push(...seqs(b).filter((s) => s < 2));
        if (seqs(b).some((s) => s >= 2)) throw new Error('stop at 2');
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
    expect(bus.stats().topics.logs).toEqual({ earliest: 2, next: 4 });
    // Young messages stay even when consumed.
    await bus.publish([log(4)]);
    bus.commit('g', 'logs', 5);
    now += 500;
    expect(bus.applyRetention()).toBe(2);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([4]);
    await bus.close();
  });

  it('holds back retention for the slowest group', async () => {
    let now = 0;
    const bus = open({ retentionMs: 1_000, clock: () => now });
    await bus.publish([0, 1, 2, 3].map((i) => log(i)));
    bus.commit('fast', 'logs', 4);
    bus.commit('slow', 'logs', 1);
    now = 5_000;
    expect(bus.applyRetention()).toBe(1);
    expect(bus.read('logs', 0, 10).map((m) => m.event.seq)).toEqual([1, 2, 3]);
    await bus.close();
  });

  it('drops the oldest consumed messages, across topics, until the log fits its size', async () => {
    let now = 0;
    const bus = open({ retentionBytes: 600, clock: () => now });
    let written = 0;
    for (let i = 0; i < 10; i++) {
      now = i;
      await bus.publish([i % 2 === 0 ? log(i) : metric(i)]);
      written += i % 2 === 0 ? JSON.stringify(log(i)).length : JSON.stringify(metric(i)).length;
      // Consumed as soon as written: retention may take it when the log outgrows its size.
      const { topics } = bus.stats();
      bus.commit('g', 'logs', topics.logs.next);
      bus.commit('g', 'metrics', topics.metrics.next);
    }
    bus.applyRetention();
    const { storedBytes, storedMessages } = bus.stats();
    expect(written).toBeGreaterThan(600);
    // Once full, it is brought back to the low-water mark (90%), and no further.
    expect(storedBytes).toBeLessThanOrEqual(540);
    expect(storedBytes).toBeGreaterThan(540 - 100);
    const left = [
      ...bus.read('logs', 0, 10).map((m) => m.event.seq as number),
      ...bus.read('metrics', 0, 10).map((m) => m.event['metric.value'] as number),
    ].sort((a, b) => a - b);
    expect(left).toHaveLength(storedMessages);
    // The survivors are the newest, whatever their topic: the oldest went first.
    expect(left).toEqual(Array.from({ length: left.length }, (_, i) => 10 - left.length + i));
    await bus.close();
  });

  /** A bus whose log alternates between the topics a chunk at a time, all consumed, over its size. */
  async function alternatingFullLog(chunks: number) {
    let now = 0;
    const bus = open({ retentionBytes: 100_000, retentionIntervalMs: 0, clock: () => now });
    for (let i = 0; i < chunks; i++) {
      now = i;
      const events = Array.from({ length: 20 }, (_, k) =>
        i % 2 === 0 ? log(i * 20 + k) : metric(i * 20 + k),
      );
      try {
        await bus.publish(events);
      } catch (err) {
        if (!(err instanceof BusBackpressureError)) throw err;
      }
      const { topics } = bus.stats();
      bus.commit('g', 'logs', topics.logs.next);
      bus.commit('g', 'metrics', topics.metrics.next);
    }
    return bus;
  }

  it('trims by size in one transaction, however many chunks of both topics it drops', async () => {
    // A transaction a drop synced the file a chunk or two at a time while the loop waited:
    // hundreds of syncs per trim of a 1 GiB log, most of the main thread in the soak.
    const bus = await alternatingFullLog(150);
    const before = bus.stats();
    // Over its size again: the next trim takes the oldest of both topics.
    await bus.publish(Array.from({ length: 400 }, (_, k) => log(10_000 + k)));
    const { topics } = bus.stats();
    bus.commit('g', 'logs', topics.logs.next);
    const db = (bus as unknown as { log: { db: ReturnType<typeof openSqlite> } }).log.db;
    const transaction = db.transaction.bind(db);
    let outermost = 0;
    let depth = 0;
    db.transaction = ((fn: (...args: never[]) => unknown) => {
      const tx = transaction(fn);
      return Object.assign((...args: never[]) => tx(...args), {
        immediate: (...args: never[]) => {
          if (depth === 0) outermost++;
          depth++;
          try {
            return tx.immediate(...args);
          } finally {
            depth--;
          }
        },
      });
    }) as typeof db.transaction;
    const dropped = bus.applyRetention();
    expect(dropped).toBeGreaterThan(200);
    const after = bus.stats();
    expect(after.storedBytes).toBeLessThanOrEqual(90_000);
    // Both topics lost their oldest: the trim alternated between them.
    expect(after.topics.logs.earliest).toBeGreaterThan(before.topics.logs.earliest);
    expect(after.topics.metrics.earliest).toBeGreaterThan(before.topics.metrics.earliest);
    expect(outermost).toBe(1);
    await bus.close();
  });

  it('rolls a failed retention pass back whole, its running counts too', async () => {
    const bus = await alternatingFullLog(150);
    await bus.publish(Array.from({ length: 400 }, (_, k) => log(10_000 + k)));
    const { topics } = bus.stats();
    bus.commit('g', 'logs', topics.logs.next);
    const internals = bus as unknown as {
      log: { chunks: { metrics: { deleteUpTo: { run: (...a: unknown[]) => unknown } } } };
    };
    const before = bus.stats();
    const deleteUpTo = internals.log.chunks.metrics.deleteUpTo;
    const run = deleteUpTo.run.bind(deleteUpTo);
    deleteUpTo.run = () => {
      throw new Error('disk full');
    };
    expect(() => bus.applyRetention()).toThrow('disk full');
    deleteUpTo.run = run;
    expect(bus.stats()).toEqual(before);
    expect(bus.read('logs', before.topics.logs.earliest, 1)[0]?.offset).toBe(
      String(before.topics.logs.earliest),
    );
    // The next pass does the work.
    expect(bus.applyRetention()).toBeGreaterThan(200);
    expect(bus.stats().storedBytes).toBeLessThanOrEqual(90_000);
    await bus.close();
  });

  it('keeps offsets increasing after retention emptied a topic and the bus reopened', async () => {
    const path = fresh();
    let now = 0;
    let bus = openEmbeddedBus({ path, retentionMs: 1, clock: () => now });
    await bus.publish([log(0), log(1)]);
    bus.commit('g', 'logs', 2);
    now = 100;
    expect(bus.applyRetention()).toBe(2);
    await bus.close();
    bus = openEmbeddedBus({ path, pollMs: 10, clock: () => now });
    await bus.publish([log(2)]);
    expect(bus.read('logs', 0, 10).map((m) => [m.offset, m.event.seq])).toEqual([['2', 2]]);
    const seen: number[] = [];
    const consumer = await bus.consume({
      group: 'g',
      topics: ['logs'],
      handler: async (b) => void seen.push(...seqs(b)),
    });
    await until(() => seen.length === 1);
    expect(seen).toEqual([2]);
    await consumer.stop();
    await bus.close();
  });

  it('keeps offsets increasing after retention emptied a topic and its only group was deleted', async () => {
    const path = fresh();
    let now = 0;
    let bus = openEmbeddedBus({ path, retentionMs: 1, clock: () => now });
    await bus.publish([log(0), log(1), log(2)]);
    bus.commit('g', 'logs', 3);
    now = 100;
    expect(bus.applyRetention()).toBe(3);
    // No chunk and no position is left to tell where the topic was.
    bus.deleteGroup('g');
    await bus.publish([log(3)]);
    expect(bus.read('logs', 0, 10).map((m) => [m.offset, m.event.seq])).toEqual([['3', 3]]);
    bus.commit('h', 'logs', 4);
    now = 200;
    expect(bus.applyRetention()).toBe(1);
    bus.deleteGroup('h');
    await bus.close();
    bus = openEmbeddedBus({ path, clock: () => now });
    expect(bus.stats().topics.logs).toEqual({ earliest: 4, next: 4 });
    await bus.publish([log(4)]);
    expect(bus.read('logs', 0, 10).map((m) => [m.offset, m.event.seq])).toEqual([['4', 4]]);
    await bus.close();
  });

  it('runs retention on its own every retentionIntervalMs', async () => {
    let now = 0;
    const bus = open({ retentionMs: 10, retentionIntervalMs: 20, clock: () => now });
    await bus.publish([log(0)]);
    bus.commit('g', 'logs', 1);
    now = 1_000;
    await until(() => bus.stats().storedMessages === 0, 2_000);
    expect(bus.read('logs', 0, 10)).toEqual([]);
    await bus.close();
  });
});

describe('embedded bus: durability', () => {
  it('loses no acknowledged event when the publishing process is killed with SIGKILL', async () => {
    const path = fresh();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'publish-forever.ts'), path],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await until(() => out.split('\n').length > 5_000, 30_000);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // Only complete lines are acknowledgements the child finished writing.
    const acknowledged = out
      .slice(0, out.lastIndexOf('\n'))
      .split('\n')
      .filter(Boolean)
      .map(Number);
    const bus = openEmbeddedBus({ path });
    const stored = bus.read('logs', 0, 10_000_000).map((m) => m.event.seq as number);
    const storedSet = new Set(stored);
    expect(acknowledged.length).toBeGreaterThan(5_000);
    expect(acknowledged.filter((id) => !storedSet.has(id))).toEqual([]);
    // And the log the child left is whole: no duplicate or torn entries.
    expect(storedSet.size).toBe(stored.length);
    await bus.close();
  });
});
