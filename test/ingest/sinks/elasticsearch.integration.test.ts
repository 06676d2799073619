import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type BusBatch, openEmbeddedBus } from '../../../ingest/bus/index.ts';
import type { Event } from '../../../ingest/model/index.ts';
import { ElasticsearchIndexer, type IndexerMetrics } from '../../../ingest/sinks/index.ts';

const url = inject('elasticsearchUrl');
const reason = inject('serverSkipReasons').elasticsearch;
const T = Date.parse('2024-03-10T12:00:00Z');

function batch(events: Event[], offset = 0): BusBatch {
  return {
    topic: 'logs',
    partition: 0,
    messages: events.map((event, i) => ({
      topic: 'logs',
      partition: 0,
      offset: String(offset + i),
      key: String(event['service.name']),
      event,
    })),
  };
}

const ev = (i: number, fields: Record<string, unknown> = {}): Event => ({
  '@timestamp': T + i * 1000,
  'service.name': i % 2 ? 'api' : 'web',
  'host.name': `h${i}`,
  'log.level': i % 5 === 0 ? 'error' : 'info',
  message: i % 5 === 0 ? `payment declined for order ${i}` : `request served ${i}`,
  ...fields,
});

describe.skipIf(!url)(
  `Elasticsearch indexer against a real server${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let indexer: ElasticsearchIndexer;
    const prefix = `t${randomUUID().slice(0, 8)}`;

    beforeAll(async () => {
      indexer = new ElasticsearchIndexer({ node: url!, prefix, backoffMs: 10 });
      await indexer.start();
    });
    afterAll(async () => {
      await indexer?.client.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await indexer?.close();
    });

    it('detects what the server offers and installs the templates', async () => {
      expect(indexer.capabilities).toMatchObject({ dataStreams: false, ilm: false });
      const { index_templates } = await indexer.client.indices.getIndexTemplate({
        name: `${prefix}-*`,
      });
      expect(index_templates.map((t) => t.name).sort()).toEqual(
        ['actions', 'alerts', 'deadletter', 'events'].map((f) => `${prefix}-${f}`),
      );
    });

    it('indexes a batch into daily indices with the ECS mapping, and search finds it', async () => {
      await indexer.indexBatch(batch(Array.from({ length: 20 }, (_, i) => ev(i))));
      await indexer.refresh();
      const index = `${prefix}-events-2024.03.10`;
      const mapping = await indexer.client.indices.getMapping({ index });
      const props = mapping[index]!.mappings.properties as Record<
        string,
        { type?: string; properties?: Record<string, { type: string }> }
      >;
      expect(props['@timestamp']!.type).toBe('date');
      expect(props.message!.type).toBe('text');
      expect(props.service!.properties!.name!.type).toBe('keyword');
      expect(props.log!.properties!.level!.type).toBe('keyword');

      const all = await indexer.search({});
      expect(all.total).toBe(20);
      expect(all.events[0]!['@timestamp']).toBe(T + 19_000); // newest first
      const found = await indexer.search({ q: 'payment declined', service: 'web', size: 10 });
      expect(found.events.map((e) => e['host.name']).sort()).toEqual(['h0', 'h10']);
      const ranged = await indexer.search({ from: T + 5_000, to: T + 9_000, level: 'info' });
      expect(ranged.total).toBe(4);
    });

    it('a redelivered batch does not duplicate documents', async () => {
      const again = batch([ev(100), ev(101)], 100);
      await indexer.indexBatch(again);
      await indexer.indexBatch(again);
      await indexer.refresh();
      const { count } = await indexer.client.count({
        index: `${prefix}-events-*`,
        query: { terms: { 'host.name': ['h100', 'h101'] } },
      });
      expect(count).toBe(2);
    });

    it('sends a mapping conflict to the dead-letter index with the reason, and indexes the rest', async () => {
      // `service` as a string conflicts with service.name mapped as an object.
      const bad = { ...ev(200), service: 'not-an-object' } as Event;
      await indexer.indexBatch(batch([ev(201), bad, ev(202)], 200));
      await indexer.refresh();
      const { count } = await indexer.client.count({
        index: `${prefix}-events-*`,
        query: { terms: { 'host.name': ['h200', 'h201', 'h202'] } },
      });
      expect(count).toBe(2);
      const dead = await indexer.client.search<{ reason: string; document: string; index: string }>(
        { index: `${prefix}-deadletter-*` },
      );
      expect(dead.hits.hits).toHaveLength(1);
      expect(dead.hits.hits[0]!._source!.reason).toMatch(
        /document_parsing_exception|mapper_parsing_exception/,
      );
      expect(
        (JSON.parse(dead.hits.hits[0]!._source!.document) as Record<string, unknown>)['host.name'],
      ).toBe('h200');
    });

    it('retries items the server throttles (a real 429: the flood-stage write block) until they go in, dead-lettering none', async () => {
      // The block Elasticsearch sets itself when a disk passes the flood-stage watermark;
      // writes to the index then fail per item with 429 TOO_MANY_REQUESTS.
      const index = `${prefix}-events-2024.03.11`;
      const day = Date.parse('2024-03-11T12:00:00Z');
      const events = [0, 1, 2].map((i) => ({ ...ev(400 + i), '@timestamp': day + i }));
      await indexer.client.indices.create({ index });
      await indexer.client.indices.putSettings({
        index,
        settings: { 'index.blocks.read_only_allow_delete': true },
      });
      const metrics: IndexerMetrics[] = [];
      const slow = new ElasticsearchIndexer({
        node: url!,
        prefix,
        backoffMs: 100,
        retries: 8,
        onMetrics: (m) => metrics.push(m),
      });
      await slow.start();
      const indexing = slow.indexBatch(batch(events, 400));
      await new Promise((r) => setTimeout(r, 600));
      // Disk space freed: the block is lifted and the retries go through.
      await indexer.client.indices.putSettings({
        index,
        settings: { 'index.blocks.read_only_allow_delete': null },
      });
      await indexing;
      await slow.close();
      await indexer.refresh();
      expect((await indexer.client.count({ index })).count).toBe(3);
      expect(metrics[0]).toMatchObject({ indexed: 3, deadLettered: 0 });
      expect(metrics[0]!.retried).toBeGreaterThanOrEqual(3);

      // Blocked for longer than the retries last: the batch fails, so the bus redelivers
      // it (offsets are committed only after indexing); nothing is dead-lettered.
      await indexer.client.indices.putSettings({
        index,
        settings: { 'index.blocks.read_only_allow_delete': true },
      });
      const impatient = new ElasticsearchIndexer({ node: url!, prefix, backoffMs: 10, retries: 2 });
      await impatient.start();
      await expect(
        impatient.indexBatch(batch([{ ...ev(410), '@timestamp': day + 10 }], 410)),
      ).rejects.toThrow(/still failing after 2 retries/);
      await impatient.close();
      await indexer.client.indices.putSettings({
        index,
        settings: { 'index.blocks.read_only_allow_delete': null },
      });
      await indexer.refresh();
      const dead = await indexer.client.count({
        index: `${prefix}-deadletter-*`,
        query: { match: { index } },
      });
      expect(dead.count).toBe(0);
    });

    it('end to end: events published to the embedded bus reach the index, committed only after indexing', async () => {
      const bus = openEmbeddedBus({
        path: join(mkdtempSync(join(tmpdir(), 'drover-bus-')), 'bus.db'),
        pollMs: 20,
      });
      await bus.publish([ev(300), ev(301), ev(302)]);
      const consumer = await bus.consume({
        group: 'indexer',
        topics: ['logs'],
        handler: (b) => indexer.indexBatch(b),
      });
      const start = Date.now();
      while (bus.lag('indexer').logs > 0 && Date.now() - start < 10_000)
        await new Promise((r) => setTimeout(r, 50));
      await consumer.stop();
      await bus.close();
      await indexer.refresh();
      const { count } = await indexer.client.count({
        index: `${prefix}-events-*`,
        query: { terms: { 'host.name': ['h300', 'h301', 'h302'] } },
      });
      expect(count).toBe(3);
    });
  },
);
