import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BusBatch } from '../../../ingest/bus/index.ts';
import type { Event } from '../../../ingest/model/index.ts';
import { openSqlite } from '../../../ingest/storage/sqlite.ts';
import {
  openEmbeddedIndex,
  parseSearchParams,
  SearchParamsError,
  toFtsQuery,
} from '../../../ingest/sinks/index.ts';

const T = Date.parse('2024-03-10T12:00:00Z');
const ev = (i: number): Event => ({
  '@timestamp': T + i * 1000,
  'service.name': i % 2 ? 'api' : 'web',
  'host.name': `h${i}`,
  'log.level': i % 5 === 0 ? 'error' : 'info',
  message: i % 5 === 0 ? `payment declined for order ${i}` : `request served ${i}`,
});
const batch = (events: Event[], offset = 0): BusBatch => ({
  topic: 'logs',
  partition: 0,
  messages: events.map((event, i) => ({
    topic: 'logs',
    partition: 0,
    offset: String(offset + i),
    key: '',
    event,
  })),
});

const DAY = 86_400_000;
const tmpIndex = () => join(mkdtempSync(join(tmpdir(), 'drover-idx-')), 'index');

describe('embedded index (SQLite FTS5)', () => {
  it('indexes, searches by words, phrases, time, service and level, newest first, without duplicates', async () => {
    const index = openEmbeddedIndex(join(mkdtempSync(join(tmpdir(), 'drover-idx-')), 'index.db'));
    await index.indexBatch(batch(Array.from({ length: 20 }, (_, i) => ev(i))));
    await index.indexBatch(batch([ev(0), ev(1)])); // redelivered
    expect((await index.search({})).total).toBe(20);
    expect((await index.search({})).events[0]!['@timestamp']).toBe(T + 19_000);
    const found = await index.search({ q: '"payment declined"', service: 'web' });
    expect(found.events.map((e) => e['host.name'])).toEqual(['h10', 'h0']);
    expect((await index.search({ from: T + 5_000, to: T + 9_000, level: 'info' })).total).toBe(4);
    expect((await index.search({ q: 'order AND OR NOT ("' })).total).toBe(0); // user input is never query syntax
    index.close();
  });

  it('validates search parameters with clear errors', () => {
    expect(
      parseSearchParams({ q: 'x', from: '2024-03-10T12:00:00Z', size: '5', level: 'error' }),
    ).toEqual({ q: 'x', from: T, size: 5, level: 'error' });
    expect(() => parseSearchParams({ size: '0' })).toThrow(SearchParamsError);
    expect(() => parseSearchParams({ level: 'loud' })).toThrow(/level must be one of/);
    expect(() => parseSearchParams({ from: 'yesterday' })).toThrow(/from must be/);
    expect(() => parseSearchParams({ sort: 'asc' })).toThrow(/unknown parameter "sort"/);
    expect(toFtsQuery('a "b c" d"e')).toBe('"a" AND "b c" AND "d""e"');
  });

  it('answers across day partitions as one table would: newest first, later insert first on ties', async () => {
    const dir = tmpIndex();
    const index = openEmbeddedIndex(dir);
    // 60 events over three UTC days, out of order, with repeated times.
    const events = Array.from({ length: 60 }, (_, i): Event => ({
      '@timestamp': T - DAY + ((i * 7919) % 60) * 3_600_000 + (i % 3 === 0 ? 0 : i),
      'service.name': i % 3 ? 'api' : 'web',
      'log.level': i % 4 === 0 ? 'error' : 'info',
      message: `${i % 2 ? 'disk full' : 'request served'} n${i}`,
    }));
    for (let b = 0; b < 6; b++)
      await index.indexBatch(batch(events.slice(b * 10, b * 10 + 10), b * 10));
    expect(index.partitionNames()).toEqual(['2024-03-09', '2024-03-10', '2024-03-11']);
    // What one table gives: filter, then time descending, the later insert first.
    const expected = (keep: (e: Event) => boolean, size: number) => {
      const all = events.map((e, i) => ({ e, i })).filter(({ e }) => keep(e));
      all.sort((a, b) => b.e['@timestamp'] - a.e['@timestamp'] || b.i - a.i);
      return { total: all.length, events: all.slice(0, size).map(({ e }) => e.message) };
    };
    const got = async (p: Parameters<typeof index.search>[0]) => {
      const r = await index.search(p);
      return { total: r.total, events: r.events.map((e) => e.message) };
    };
    for (const size of [1, 5, 25, 100])
      expect(await got({ size })).toEqual(expected(() => true, size));
    expect(await got({ q: 'disk', service: 'api', size: 7 })).toEqual(
      expected((e) => e.message!.startsWith('disk') && e['service.name'] === 'api', 7),
    );
    const [from, to] = [T - 3_600_000 * 5, T + 3_600_000 * 30];
    expect(await got({ from, to, level: 'error', size: 10 })).toEqual(
      expected(
        (e) => e['@timestamp'] >= from && e['@timestamp'] <= to && e['log.level'] === 'error',
        10,
      ),
    );
    index.close();
    // Reopened, the partitions and answers are the same.
    const again = openEmbeddedIndex(dir);
    expect(again.partitionNames()).toEqual(['2024-03-09', '2024-03-10', '2024-03-11']);
    expect((await again.search({ size: 10 })).events.map((e) => e.message)).toEqual(
      expected(() => true, 10).events,
    );
    again.close();
  });

  it('drops whole partitions past maxAge, then the oldest over maxBytes, and searches what remains', async () => {
    const dir = tmpIndex();
    let now = T + 2 * DAY;
    const dropped: string[] = [];
    const index = openEmbeddedIndex(dir, {
      retention: { maxAgeMs: 5 * DAY },
      retentionIntervalMs: 0,
      clock: () => now,
      onDropped: (name, reason) => dropped.push(`${name} ${reason}`),
    });
    // One event a day from 2024-03-06 to 2024-03-12 (the clock's day).
    for (let d = -4; d <= 2; d++) await index.indexBatch(batch([ev(d * 86_400)], 100 + d));
    expect(index.partitionNames()).toEqual([
      '2024-03-07',
      '2024-03-08',
      '2024-03-09',
      '2024-03-10',
      '2024-03-11',
      '2024-03-12',
    ]); // 2024-03-06 ended more than 5 days before the clock: never written
    now += DAY; // 2024-03-13: 2024-03-07 ended more than 5 days ago
    expect(index.applyRetention()).toEqual(['2024-03-07']);
    now += DAY;
    expect(index.applyRetention()).toEqual(['2024-03-08']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.db'))).toHaveLength(4);
    expect(existsSync(join(dir, '2024-03-08.db-wal'))).toBe(false);
    const left = await index.search({});
    expect(left.total).toBe(4);
    expect(left.events.map((e) => e['@timestamp'])).toEqual(
      [2, 1, 0, -1].map((d) => T + d * 86_400_000),
    );
    // By size: the oldest go until the rest fit; the newest stays even alone.
    index.close();
    const probe = openEmbeddedIndex(dir, { retentionIntervalMs: 0 });
    const perPartition = probe.bytes() / 4;
    probe.close();
    const small = openEmbeddedIndex(dir, {
      retention: { maxAgeMs: 30 * DAY, maxBytes: Math.floor(perPartition * 2.5) },
      retentionIntervalMs: 0,
      clock: () => now,
      onDropped: (name, reason) => dropped.push(`${name} ${reason}`),
    });
    expect(small.partitionNames()).toEqual(['2024-03-11', '2024-03-12']);
    expect((await small.search({})).total).toBe(2);
    expect(dropped).toEqual([
      '2024-03-07 age',
      '2024-03-08 age',
      '2024-03-09 size',
      '2024-03-10 size',
    ]);
    small.close();
  });

  it('bounds partitions whatever the event times: expired days and the cap', async () => {
    const expired: number[] = [];
    const index = openEmbeddedIndex(tmpIndex(), {
      retention: { maxAgeMs: 2 * DAY },
      retentionIntervalMs: 0,
      maxPartitions: 3,
      clock: () => T,
      onExpired: (n) => expired.push(n),
    });
    // An attacker's times: 1970, the far past, a day each, and the next day.
    const times = [0, 86_400_000 * 365, T - 10 * DAY, T - 3 * DAY, T - DAY, T, T + DAY / 2];
    await index.indexBatch(batch(times.map((t, i) => ({ ...ev(i), '@timestamp': t }))));
    expect(expired).toEqual([4]);
    expect(index.partitionNames()).toEqual(['2024-03-09', '2024-03-10', '2024-03-11']);
    index.close();
    // At the cap: an older day is not indexed, a newer one drops the oldest partition.
    const capped = openEmbeddedIndex(tmpIndex(), {
      retentionIntervalMs: 0,
      maxPartitions: 3,
      clock: () => T,
      onExpired: (n) => expired.push(n),
    });
    for (const d of [-5, -4, -3, -6, -2]) await capped.indexBatch(batch([ev(d * 86_400)], 10 + d));
    expect(capped.partitionNames()).toEqual(['2024-03-06', '2024-03-07', '2024-03-08']);
    expect(expired).toEqual([4, 1]);
    expect((await capped.search({})).total).toBe(3);
    capped.close();
  });

  it('searches an index from before partitions beside the days, and drops it whole by age', async () => {
    // A single-file index as one was written before partitions (the same table layout).
    const old = tmpIndex();
    const before = openEmbeddedIndex(old);
    await before.indexBatch(batch([ev(0), ev(1), ev(2)]));
    before.close();
    const legacyPath = join(old, 'index.db');
    renameSync(join(old, '2024-03-10.db'), legacyPath);
    let now = T;
    const index = openEmbeddedIndex(tmpIndex(), {
      legacyPath,
      retention: { maxAgeMs: DAY },
      retentionIntervalMs: 0,
      clock: () => now,
    });
    await index.indexBatch(batch([ev(1), ev(3)], 10)); // ev(1) again, at another offset
    const all = await index.search({});
    expect(all.total).toBe(5);
    expect(all.events.map((e) => e['host.name'])).toEqual(['h3', 'h2', 'h1', 'h1', 'h0']);
    expect(index.partitionNames()).toEqual(['legacy', '2024-03-10']);
    now = T + 2 * DAY; // 2024-03-10 ended more than a day ago: both go
    expect(index.applyRetention()).toEqual(['legacy', '2024-03-10']);
    expect(existsSync(legacyPath)).toBe(false);
    expect((await index.search({})).total).toBe(0);
    index.close();
  });

  it('reads a day file written before blocks, rows with their own bodies, beside new rows', async () => {
    // The layout of a day file before blocks: no block or slot column, the body in the row.
    const dir = tmpIndex();
    mkdirSync(dir, { recursive: true });
    const db = openSqlite(join(dir, '2024-03-10.db'));
    db.exec(`
      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL,
        service TEXT, host TEXT, level TEXT, fingerprint TEXT, body TEXT NOT NULL);
      CREATE VIRTUAL TABLE events_text USING fts5 (text, content='');
    `);
    const insert = db.prepare(
      'INSERT INTO events (id, ts, service, host, level, body) VALUES (?, ?, ?, ?, ?, ?)',
    );
    for (const i of [0, 1, 2]) {
      const e = ev(i);
      const r = insert.run(
        `old-${i}`,
        e['@timestamp'],
        e['service.name'],
        e['host.name'],
        e['log.level'],
        JSON.stringify(e),
      );
      db.prepare('INSERT INTO events_text (rowid, text) VALUES (?, ?)').run(
        r.lastInsertRowid,
        e.message,
      );
    }
    db.close();
    const index = openEmbeddedIndex(dir, { retentionIntervalMs: 0 });
    await index.indexBatch(batch([ev(3), ev(4), ev(5)], 100));
    await index.indexBatch(batch([ev(4), ev(5)], 101)); // redelivered: keyed by id in this file
    const all = await index.search({});
    expect(all.events).toEqual([5, 4, 3, 2, 1, 0].map(ev));
    expect((await index.search({ q: 'served', service: 'api' })).events).toEqual([ev(3), ev(1)]);
    index.close();
  });

  it('keys rows by bus position: a redelivery is skipped, another event at a reused position is not', async () => {
    const dir = tmpIndex();
    const index = openEmbeddedIndex(dir, { retentionIntervalMs: 0 });
    await index.indexBatch(batch([ev(0), ev(1)]));
    const other = batch([ev(0)]); // the same offset on another topic
    other.messages = other.messages.map((m) => ({ ...m, topic: 'metrics' }));
    await index.indexBatch({ ...other, topic: 'metrics' });
    // Offset 0 redelivered; offset 1 now holds another event (a topic recreated).
    await index.indexBatch(batch([ev(0), ev(2)]));
    const all = await index.search({});
    expect(all.events.map((e) => e['host.name'])).toEqual(['h2', 'h1', 'h0', 'h0']);
    // An offset that is not an integer fails the batch before anything is written.
    await expect(index.indexBatch(batch([ev(3)], Number.NaN))).rejects.toThrow(
      /bus offset NaN of logs is not an integer/,
    );
    expect((await index.search({})).total).toBe(4);
    index.close();
  });

  it('keeps bodies in gzipped blocks: exact through block bounds and redeliveries, a fraction of the bytes', async () => {
    const dir = tmpIndex();
    const index = openEmbeddedIndex(dir, { retentionIntervalMs: 0 });
    // Over 64 Ki characters of JSON in one batch: several blocks; then a batch that
    // redelivers some of it among new events.
    const events = Array.from({ length: 1_000 }, (_, i) => ({
      ...ev(i % 80),
      seq: i,
      pad: 'x'.repeat(i % 200),
    }));
    await index.indexBatch(batch(events.slice(0, 800)));
    await index.indexBatch(batch(events.slice(700), 700));
    const all = await index.search({ size: 10_000 });
    expect(all.total).toBe(1_000);
    const bySeq = [...all.events].sort((a, b) => (a.seq as number) - (b.seq as number));
    expect(bySeq).toEqual(events);
    expect((await index.search({ q: 'declined', size: 10_000 })).total).toBe(
      events.filter((e) => /declined/.test(e.message as string)).length,
    );
    index.close();
    const file = openSqlite(join(dir, '2024-03-10.db'), { readonly: true });
    const blocks = file
      .prepare('SELECT COUNT(*) AS n, SUM(length(body)) AS b FROM blocks')
      .get() as {
      n: number;
      b: number;
    };
    const text = events.reduce((n, e) => n + JSON.stringify(e).length, 0);
    file.close();
    expect(blocks.n).toBeGreaterThan(2);
    expect(blocks.b).toBeLessThan(text / 4);
  });
});
