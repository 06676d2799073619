/**
 * Index names and ECS mappings for what Drover writes to Elasticsearch: events,
 * alerts, the action journal, and dead letters. The dashboards and the journal use
 * these too, so a field is declared once.
 */
export type IndexFamily = 'events' | 'alerts' | 'actions' | 'deadletter';

/** A document of the alerts family: its id (the document id) and its time; see MAPPINGS. */
export type AlertDocument = { '@timestamp': string; id: string } & Record<string, unknown>;

const keyword = { type: 'keyword', ignore_above: 1024 };
const text = { type: 'text' };

/** Strings Drover does not know become keywords (aggregatable in Kibana), long ones are skipped. */
const dynamicTemplates = [
  { labels: { path_match: 'labels.*', match_mapping_type: 'string', mapping: keyword } },
  { strings: { match_mapping_type: 'string', mapping: keyword } },
];

export const MAPPINGS: Record<IndexFamily, Record<string, unknown>> = {
  events: {
    dynamic_templates: dynamicTemplates,
    properties: {
      '@timestamp': { type: 'date' },
      message: text,
      log: { properties: { level: keyword } },
      service: { properties: { name: keyword, version: keyword } },
      host: { properties: { name: keyword } },
      error: {
        properties: {
          type: keyword,
          message: text,
          stack_trace: {
            type: 'text',
            fields: { keyword: { type: 'keyword', ignore_above: 8191 } },
          },
          fingerprint: keyword,
        },
      },
      metric: { properties: { name: keyword, value: { type: 'double' }, type: keyword } },
    },
  },
  alerts: {
    dynamic_templates: dynamicTemplates,
    properties: {
      '@timestamp': { type: 'date' },
      id: keyword,
      rule: keyword,
      type: keyword,
      description: text,
      service: { properties: { name: keyword } },
      key: { type: 'flattened' },
      figures: { type: 'flattened' },
      labels: { type: 'flattened' },
      sample: { type: 'flattened' },
      // firing (an alert), pending, inactive or resolved (a state change).
      state: keyword,
      alert_id: keyword,
      firing_since: { type: 'date' },
      // The events in it are the sender's: kept, never mapped.
      explanation: { type: 'object', enabled: false },
    },
  },
  actions: {
    dynamic_templates: dynamicTemplates,
    properties: {
      '@timestamp': { type: 'date' },
      decision: keyword,
      guard: keyword,
      reason: text,
      // The grouped notification an alert waits in (guard `group`).
      notification: keyword,
      adapter: keyword,
      operation: keyword,
      target: keyword,
      rule: keyword,
      alert: { properties: { id: keyword } },
      error: { properties: { message: text } },
      duration_ms: { type: 'double' },
      result: { type: 'flattened' },
      verification: { properties: { outcome: keyword } },
      verification_json: { type: 'keyword', index: false, doc_values: false },
    },
  },
  deadletter: {
    dynamic: false,
    properties: {
      '@timestamp': { type: 'date' },
      reason: text,
      index: keyword,
      document: { type: 'text', index: false },
    },
  },
};

export function indexPattern(prefix: string, family: IndexFamily): string {
  return `${prefix}-${family}-*`;
}

/** Daily indices by event time (UTC), where the server has no data streams. */
export function dailyIndex(prefix: string, family: IndexFamily, epochMs: number): string {
  const d = new Date(epochMs);
  const day = `${d.getUTCFullYear()}.${String(d.getUTCMonth() + 1).padStart(2, '0')}.${String(d.getUTCDate()).padStart(2, '0')}`;
  return `${prefix}-${family}-${day}`;
}

export function indexTemplate(
  prefix: string,
  family: IndexFamily,
  options: { dataStream: boolean; ilmPolicy?: string },
) {
  return {
    index_patterns: [options.dataStream ? `${prefix}-${family}*` : indexPattern(prefix, family)],
    priority: 200,
    ...(options.dataStream && family !== 'deadletter' && { data_stream: {} }),
    template: {
      settings: {
        number_of_replicas: 0,
        ...(options.ilmPolicy && { 'index.lifecycle.name': options.ilmPolicy }),
      },
      mappings: MAPPINGS[family],
    },
    _meta: { managed_by: 'drover' },
  };
}
