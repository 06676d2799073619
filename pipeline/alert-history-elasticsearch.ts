import { ElasticsearchIndexer } from '../ingest/sinks/elasticsearch.ts';
import {
  type Alert,
  alertDocument,
  type Explanation,
  type StateChange,
  stateDocument,
} from '../rules/index.ts';
import type { AlertHistory, AlertRecord, StateRecord } from '../actions/history/types.ts';

/**
 * Alerts and state changes in the alerts index family (`<prefix>-alerts-*`), where the
 * Kibana dashboards chart alert state over time: each alert is a document with
 * `state: firing` and its explanation (stored, not mapped), each state change a document
 * with its `state` and, for a resolution, `alert_id`. Written create-only under their
 * own ids (the indexer writes the same alert documents: whichever comes first stands,
 * and they are the same), so a replay changes nothing. Retention is the index family's
 * (ILM where the server has it).
 */
export class ElasticsearchAlertHistory implements AlertHistory {
  private readonly indexer: ElasticsearchIndexer;

  constructor(options: { node: string; prefix?: string }) {
    this.indexer = new ElasticsearchIndexer({
      node: options.node,
      ...(options.prefix !== undefined && { prefix: options.prefix }),
    });
  }

  /** Installs the index templates (idempotent, as the indexer does). */
  async init(): Promise<this> {
    await this.indexer.start();
    return this;
  }

  private get pattern(): string {
    return `${this.indexer.prefix}-alerts*`;
  }

  async recordAlert(alert: Alert, explanation?: Explanation): Promise<void> {
    await this.indexer.indexAlerts([alertDocument(alert, explanation)]);
    await this.refresh();
  }

  async recordState(change: StateChange): Promise<void> {
    await this.indexer.indexAlerts([stateDocument(change)]);
    await this.refresh();
  }

  /** So an explain right after sees what was written (alerts are few: one per firing). */
  private async refresh(): Promise<void> {
    await this.indexer.client.indices.refresh({
      index: this.pattern,
      ignore_unavailable: true,
      allow_no_indices: true,
    });
  }

  async alert(id: string): Promise<AlertRecord | undefined> {
    const res = await this.indexer.client.search<Record<string, unknown>>({
      index: this.pattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: 1,
      query: { bool: { filter: [{ term: { id } }, { term: { state: 'firing' } }] } },
    });
    const doc = res.hits.hits[0]?._source;
    if (!doc) return undefined;
    const alert: Alert = {
      id: doc.id as string,
      rule: doc.rule as string,
      type: doc.type as Alert['type'],
      ...(typeof doc.description === 'string' && { description: doc.description }),
      key: (doc.key ?? {}) as Record<string, unknown>,
      at: doc['@timestamp'] as string,
      figures: (doc.figures ?? {}) as Record<string, unknown>,
      ...(doc.sample !== undefined && { sample: doc.sample as Record<string, unknown> }),
      labels: (doc.labels ?? {}) as Record<string, string>,
      actions: [],
    };
    const explanation = doc.explanation as Explanation | undefined;
    return { alert, ...(explanation && { explanation }) };
  }

  async states(alertId: string): Promise<StateRecord[]> {
    const res = await this.indexer.client.search<Record<string, unknown>>({
      index: this.pattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: 1000,
      query: { bool: { filter: [{ term: { alert_id: alertId } }] } },
      sort: [{ '@timestamp': { order: 'asc' } }, { id: { order: 'asc' } }],
    });
    return res.hits.hits.map((h) => {
      const d = h._source!;
      return {
        id: d.id as string,
        rule: d.rule as string,
        type: d.type as StateRecord['type'],
        key: (d.key ?? {}) as Record<string, unknown>,
        state: d.state as StateRecord['state'],
        at: d['@timestamp'] as string,
        alert: d.alert_id as string,
        ...(typeof d.firing_since === 'string' && { firing_since: d.firing_since }),
        labels: (d.labels ?? {}) as Record<string, string>,
      };
    });
  }

  prune(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.indexer.close();
  }
}
