import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BusBatch } from '../../../ingest/bus/index.ts';
import type { Event } from '../../../ingest/model/index.ts';
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
});
