import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ElasticsearchStore } from '../../actions/journal/elasticsearch.ts';
import type { Decision } from '../../actions/index.ts';
import { fieldUses, kibanaSavedObjects, type SavedObject } from '../../dashboards/index.ts';
import type { BusBatch } from '../../ingest/bus/index.ts';
import { normalize } from '../../ingest/model/index.ts';
import { ElasticsearchIndexer } from '../../ingest/sinks/index.ts';
import { type Alert, alertDocument, stateDocument } from '../../rules/index.ts';

const NDJSON = join(import.meta.dirname, '..', '..', 'dashboards', 'kibana', 'drover.ndjson');
const STACKS = join(import.meta.dirname, '..', 'ingest', 'model', 'fixtures', 'stacks');

function committed(): SavedObject[] {
  return readFileSync(NDJSON, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as SavedObject;
      } catch (err) {
        throw new Error(`drover.ndjson:${i + 1}: ${(err as Error).message}`);
      }
    });
}

describe('the Kibana saved objects', () => {
  const objects = committed();

  it('parse, one object per line with a unique type and id, and cover both dashboards', () => {
    for (const o of objects) {
      expect(typeof o.type).toBe('string');
      expect(typeof o.id).toBe('string');
      expect(o.attributes.title).toBeTruthy();
      expect(o.coreMigrationVersion).toMatch(/^8\.\d+\.\d+$/);
    }
    expect(new Set(objects.map((o) => `${o.type}/${o.id}`)).size).toBe(objects.length);
    const dashboards = objects.filter((o) => o.type === 'dashboard').map((o) => o.attributes.title);
    expect(dashboards).toEqual(['Drover · Logs', 'Drover · Alerts and actions']);
    const views = objects.filter((o) => o.type === 'index-pattern').map((o) => o.attributes.title);
    expect(views).toEqual(['drover-events*', 'drover-alerts*', 'drover-actions*']);
  });

  it('resolve every reference: data views, dashboard panels, and JSON-in-string attributes', () => {
    const ids = new Set(objects.map((o) => `${o.type}/${o.id}`));
    for (const o of objects) {
      for (const r of o.references)
        expect(ids.has(`${r.type}/${r.id}`), `${o.id} → ${r.type}/${r.id}`).toBe(true);
      const meta = o.attributes.kibanaSavedObjectMeta as { searchSourceJSON: string } | undefined;
      if (meta) {
        const source = JSON.parse(meta.searchSourceJSON) as { indexRefName?: string };
        if (o.type !== 'dashboard') {
          expect(source.indexRefName, o.id).toBeDefined();
          expect(
            o.references.map((r) => r.name),
            o.id,
          ).toContain(source.indexRefName);
        }
      }
      if (o.type === 'visualization') {
        const vis = JSON.parse(o.attributes.visState as string) as {
          title: string;
          aggs: unknown[];
        };
        expect(vis.title).toBe(o.attributes.title);
        expect(vis.aggs.length).toBeGreaterThan(0);
      }
      if (o.type === 'dashboard') {
        const panels = JSON.parse(o.attributes.panelsJSON as string) as Array<{
          panelIndex: string;
          panelRefName: string;
          type: string;
          gridData: { x: number; w: number };
        }>;
        expect(panels.length).toBeGreaterThan(3);
        for (const p of panels) {
          const ref = o.references.find((r) => r.name === `${p.panelIndex}:${p.panelRefName}`);
          expect(ref, `${o.id} panel ${p.panelIndex}`).toBeDefined();
          expect(ref!.type).toBe(p.type);
          expect(p.gridData.x + p.gridData.w).toBeLessThanOrEqual(48);
        }
        JSON.parse(o.attributes.optionsJSON as string);
      }
    }
  });

  it('are what the generator writes', () => {
    expect(objects).toEqual(kibanaSavedObjects());
  });
});

const url = inject('elasticsearchUrl');
const reason = inject('serverSkipReasons').elasticsearch;

describe.skipIf(!url)(
  `the Kibana saved objects against a real Elasticsearch${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const prefix = `k${randomUUID().slice(0, 8)}`;
    let client: Client;
    let indexer: ElasticsearchIndexer;
    let store: ElasticsearchStore;

    beforeAll(async () => {
      client = new Client({ node: url! });
      indexer = new ElasticsearchIndexer({ node: url!, prefix });
      await indexer.start();
      const now = Date.now();
      // Events as Drover normalizes them: pino lines with real stack traces, plain
      // info lines, and a metric sample.
      const raw: unknown[] = [
        { level: 30, time: now, hostname: 'web-1', name: 'web', msg: 'request served' },
        { level: 40, time: now + 1, hostname: 'web-2', name: 'web', msg: 'slow upstream' },
        {
          level: 50,
          time: now + 2,
          hostname: 'api-1',
          name: 'api',
          msg: 'checkout failed',
          err: {
            type: 'TypeError',
            message: "Cannot read properties of undefined (reading 'id')",
            stack: readFileSync(join(STACKS, 'node-checkout-123.txt'), 'utf8'),
          },
        },
        {
          '@timestamp': new Date(now + 3).toISOString(),
          'service.name': 'billing',
          'metric.name': 'http_requests_total',
          'metric.value': 12,
          'metric.type': 'counter',
        },
      ];
      const batch: BusBatch = {
        topic: 'logs',
        partition: 0,
        messages: raw.map((r, i) => ({
          topic: 'logs',
          partition: 0,
          offset: String(i),
          key: 'k',
          event: normalize(r),
        })),
      };
      await indexer.indexBatch(batch);
      const alert: Alert = {
        id: `a-${prefix}`,
        rule: 'api-new-stack-trace',
        type: 'new_term',
        description: 'A stack trace never seen before',
        key: { 'service.name': 'api', 'host.name': 'api-1' },
        at: new Date(now + 2).toISOString(),
        figures: { term: ['TypeError', 'abc'] },
        sample: batch.messages[2]!.event,
        labels: { team: 'payments' },
        actions: [],
      };
      // The alert, and its firing's resolution a minute later (alert state over time).
      await indexer.indexAlerts([
        alertDocument(alert),
        stateDocument({
          id: `r-${prefix}`,
          rule: alert.rule,
          type: alert.type,
          key: alert.key,
          state: 'resolved',
          at: new Date(now + 60_002).toISOString(),
          alert: alert.id,
          firing_since: alert.at,
          labels: alert.labels,
          actions: [],
        }),
      ]);
      store = await new ElasticsearchStore({ node: url!, prefix }).init();
      const base: Omit<Decision, 'id' | 'decision'> = {
        at: now,
        alertId: alert.id,
        rule: alert.rule,
        key: alert.key,
        adapter: 'fleet',
        operation: 'kill-and-replace',
        target: 'api-1',
      };
      await store.record({
        ...base,
        id: `${alert.id}#0`,
        decision: 'executed',
        durationMs: 412,
        result: { replaced: 'api-1' },
      });
      await store.record({
        ...base,
        id: `${alert.id}#1`,
        decision: 'suppressed',
        guard: 'cooldown',
        reason: 'acted 10s ago',
      });
      await store.record({
        ...base,
        id: `${alert.id}#2`,
        decision: 'failed',
        error: 'adapter timed out',
      });
      await client.indices.refresh({ index: `${prefix}-*` });
    }, 60_000);

    afterAll(async () => {
      await store?.close();
      await indexer?.close();
      await client?.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await client?.close();
    });

    it('use only fields the mapping of what Drover indexed has, aggregatable where they are aggregated', async () => {
      const uses = fieldUses(kibanaSavedObjects(prefix));
      expect(uses.length).toBeGreaterThan(30);
      const caps = new Map<
        string,
        Record<string, { aggregatable: boolean; searchable: boolean }>
      >();
      for (const view of ['events', 'alerts', 'actions']) {
        const r = await client.fieldCaps({ index: `${prefix}-${view}*`, fields: '*' });
        const fields: Record<string, { aggregatable: boolean; searchable: boolean }> = {};
        for (const [name, types] of Object.entries(r.fields)) {
          const real = Object.entries(types).filter(([t]) => !t.startsWith('_') && t !== 'object');
          if (real.length > 0)
            fields[name] = {
              aggregatable: real.every(([, c]) => c.aggregatable),
              searchable: real.every(([, c]) => c.searchable),
            };
        }
        caps.set(view, fields);
      }
      // The check itself: a field that is not there, or text aggregated, is caught.
      expect(caps.get('events')!['no.such.field']).toBeUndefined();
      expect(caps.get('events')!.message?.aggregatable).toBe(false);
      for (const u of uses) {
        const cap = caps.get(u.dataView)![u.field];
        expect(cap, `${u.object} uses ${u.field}, not in ${prefix}-${u.dataView}*`).toBeDefined();
        if (u.aggregatable)
          expect(cap!.aggregatable, `${u.object} aggregates ${u.field}`).toBe(true);
      }
    });

    it('find what was indexed: a fingerprint, an alert with its service, and the journal by outcome', async () => {
      const fp = await client.search({
        index: `${prefix}-events*`,
        size: 0,
        query: { exists: { field: 'error.stack_trace' } },
        aggs: { fp: { terms: { field: 'error.fingerprint' } } },
      });
      const buckets = (fp.aggregations!.fp as { buckets: Array<{ key: string }> }).buckets;
      expect(buckets).toHaveLength(1);
      const alerts = await client.search<{ service: { name: string }; rule: string }>({
        index: `${prefix}-alerts*`,
      });
      expect(alerts.hits.hits[0]!._source).toMatchObject({
        rule: 'api-new-stack-trace',
        service: { name: 'api' },
      });
      const journal = await client.search({
        index: `${prefix}-actions*`,
        size: 0,
        aggs: { d: { terms: { field: 'decision' } } },
      });
      const outcomes = (journal.aggregations!.d as { buckets: Array<{ key: string }> }).buckets.map(
        (b) => b.key,
      );
      expect(outcomes.sort()).toEqual(['executed', 'failed', 'suppressed']);
    });

    it('chart alert state over time, alerts apart from state changes, and effectiveness', async () => {
      const vis = (id: string) => {
        const a = kibanaSavedObjects(prefix).find((o) => o.id === `${prefix}-${id}`)!
          .attributes as { visState: string; kibanaSavedObjectMeta: { searchSourceJSON: string } };
        const state = JSON.parse(a.visState) as { aggs: Array<{ params: { field?: string } }> };
        const source = JSON.parse(a.kibanaSavedObjectMeta.searchSourceJSON) as {
          query: { query: string };
        };
        return { fields: state.aggs.map((g) => g.params.field), query: source.query.query };
      };
      const states = await client.search({
        index: `${prefix}-alerts*`,
        size: 0,
        aggs: { s: { terms: { field: 'state' } } },
      });
      const byState = (states.aggregations!.s as { buckets: Array<{ key: string }> }).buckets;
      expect(byState.map((b) => b.key).sort()).toEqual(['firing', 'resolved']);
      expect(vis('alert-states').fields).toContain('state');
      // The alert panels count alerts, not the state changes beside them.
      for (const id of ['alerts-by-rule', 'alerts-by-type'])
        expect(vis(id).query).toBe('not state : ("pending" or "inactive" or "resolved")');
      const alertsOnly = await client.count({
        index: `${prefix}-alerts*`,
        query: {
          bool: { must_not: [{ terms: { state: ['pending', 'inactive', 'resolved'] } }] },
        },
      });
      expect(alertsOnly.count).toBe(1);
      // Effectiveness: verified outcomes (none here: the verification is not part of
      // this test) and actions skipped by a guard.
      const eff = await client.search({
        index: `${prefix}-actions*`,
        size: 0,
        query: { terms: { decision: ['effective', 'ineffective', 'suppressed'] } },
        aggs: { d: { terms: { field: 'decision' } } },
      });
      expect(
        (eff.aggregations!.d as { buckets: Array<{ key: string }> }).buckets.map((b) => b.key),
      ).toEqual(['suppressed']);
      expect(vis('remediation-effectiveness')).toEqual({
        fields: [undefined, '@timestamp', 'decision'],
        query: 'decision : ("effective" or "ineffective" or "suppressed")',
      });
    });
  },
);
