/**
 * The Grafana dashboard over Drover's own metrics (pipeline/telemetry.ts), built here so
 * every panel's query lives next to the metric names it uses and the JSON under
 * dashboards/grafana/ is generated, never hand-edited (`npm run dashboards`).
 */

/** Current Grafana dashboard schema (Grafana 11.3+ / 12). */
export const GRAFANA_SCHEMA_VERSION = 41;
export const GRAFANA_DASHBOARD_UID = 'drover-pipeline';

/** Every query narrows to the chosen jobs and instances. */
const SEL = 'job=~"$job", instance=~"$instance"';

interface Query {
  expr: string;
  legend: string;
}

interface PanelSpec {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  kind?: 'timeseries' | 'stat';
  stack?: boolean;
}

interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

const rate = (metric: string, by: string) =>
  `sum by (${by}) (rate(${metric}{${SEL}}[$__rate_interval]))`;
const quantile = (q: number, metric: string) =>
  `histogram_quantile(${q}, sum by (le) (rate(${metric}_bucket{${SEL}}[$__rate_interval])))`;

export const ROWS: RowSpec[] = [
  {
    title: 'Ingest',
    panels: [
      {
        title: 'Events ingested by protocol',
        description: 'Events accepted per second by each ingest protocol (bulk, ndjson, otlp, …).',
        unit: 'ops',
        stack: true,
        queries: [{ expr: rate('drover_ingest_events_total', 'protocol'), legend: '{{protocol}}' }],
      },
      {
        title: 'Bytes ingested by protocol',
        description: 'Request bytes per second, after decompression.',
        unit: 'Bps',
        stack: true,
        queries: [{ expr: rate('drover_ingest_bytes_total', 'protocol'), legend: '{{protocol}}' }],
      },
      {
        title: 'Ingest errors by protocol',
        description:
          'Lines or records that could not be decoded (reported to the shipper per line), and requests refused with 429 because the bus could not keep up.',
        unit: 'ops',
        queries: [
          {
            expr: rate('drover_ingest_decode_errors_total', 'protocol'),
            legend: 'decode errors {{protocol}}',
          },
          {
            expr: rate('drover_ingest_throttled_total', 'protocol'),
            legend: 'throttled (429) {{protocol}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Bus and indexing',
    panels: [
      {
        title: 'Bus lag',
        description:
          'Messages published but not yet consumed, per consumer group and topic. Growing lag means the rules or the indexer fall behind ingest.',
        unit: 'short',
        queries: [
          {
            expr: `max by (group, topic) (drover_bus_lag_messages{${SEL}})`,
            legend: '{{group}} {{topic}}',
          },
        ],
      },
      {
        title: 'Corrupt record batches',
        description:
          'Kafka record batches still corrupt when fetched again (CRC-32C mismatch, undecodable), per group and partition, and the partitions a group stopped consuming at one (bus.corruptBatch: stop; /readyz names them). A stopped partition stays stopped until an operator acts.',
        unit: 'short',
        queries: [
          {
            expr: `sum by (group, topic, partition) (drover_bus_stopped_partitions{${SEL}})`,
            legend: 'stopped {{group}} {{topic}}/{{partition}}',
          },
          {
            expr: `sum by (group, topic, partition) (increase(drover_bus_corrupt_batches_total{${SEL}}[$__rate_interval]))`,
            legend: 'corrupt {{group}} {{topic}}/{{partition}}',
          },
        ],
      },
      {
        title: 'Indexing latency',
        description: 'Time to index one bus batch (bulk request, retries included).',
        unit: 's',
        queries: [
          { expr: quantile(0.5, 'drover_index_batch_seconds'), legend: 'p50' },
          { expr: quantile(0.99, 'drover_index_batch_seconds'), legend: 'p99' },
        ],
      },
      {
        title: 'Indexed documents and failures',
        description:
          'Documents indexed per second, and failures by kind (dead-lettered documents, failed batches).',
        unit: 'ops',
        queries: [
          {
            expr: `sum(rate(drover_index_documents_total{${SEL}}[$__rate_interval]))`,
            legend: 'indexed',
          },
          {
            expr: rate('drover_index_failures_total', 'kind'),
            legend: 'failed {{kind}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Rules',
    panels: [
      {
        title: 'Rule evaluation time per batch',
        description: 'Time the rules engine spends on one bus batch.',
        unit: 's',
        queries: [
          { expr: quantile(0.5, 'drover_rule_evaluation_seconds'), legend: 'p50' },
          { expr: quantile(0.99, 'drover_rule_evaluation_seconds'), legend: 'p99' },
        ],
      },
      {
        title: 'Events evaluated',
        description: 'Events the rules engine evaluated per second.',
        unit: 'ops',
        queries: [
          {
            expr: `sum(rate(drover_rule_events_total{${SEL}}[$__rate_interval]))`,
            legend: 'events',
          },
        ],
      },
      {
        title: 'Alerts by rule',
        description: 'Alerts fired in each interval, per rule.',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (rule) (increase(drover_alerts_total{${SEL}}[$__rate_interval]))`,
            legend: '{{rule}}',
          },
        ],
      },
      {
        title: 'Keys held by rule',
        description:
          'Distinct query_key values each rule holds state for; a rule that keeps growing here has an unbounded key.',
        unit: 'short',
        queries: [{ expr: `sum by (rule) (drover_rule_keys{${SEL}})`, legend: '{{rule}}' }],
      },
    ],
  },
  {
    title: 'Rules workers (Kafka)',
    panels: [
      {
        title: 'Tasks held per worker',
        description:
          'Tasks (partition i of logs and metrics) each rules worker holds; they move at a rebalance. The sum over workers is the partition count. The global task (the rules whose key does not follow the partitioning) is held by one worker, the others stand by.',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (instance) (drover_rules_tasks_assigned{${SEL}})`,
            legend: '{{instance}}',
          },
          {
            expr: `sum by (instance) (drover_rules_global_task_assigned{${SEL}})`,
            legend: '{{instance}} global task',
          },
        ],
      },
      {
        title: 'Task lag by partition',
        description:
          'Messages of each partition a task holds that its engine has yet to process; a partition that keeps growing here holds its task back.',
        unit: 'short',
        queries: [
          {
            expr: `max by (topic, partition) (drover_rules_task_lag_messages{${SEL}})`,
            legend: '{{topic}}/{{partition}}',
          },
        ],
      },
      {
        title: 'Rebalances, stalls and lease lapses',
        description:
          'Assignments received, stalls noticed (process stopped, event loop blocked) and membership leases lapsed (heartbeats lost): after the last two the tasks hold their alerts until the membership is confirmed.',
        unit: 'short',
        queries: [
          {
            expr: `sum(increase(drover_rules_rebalances_total{${SEL}}[$__rate_interval]))`,
            legend: 'rebalances',
          },
          {
            expr: `sum(increase(drover_rules_stalls_total{${SEL}}[$__rate_interval]))`,
            legend: 'stalls',
          },
          {
            expr: `sum(increase(drover_rules_lease_lapses_total{${SEL}}[$__rate_interval]))`,
            legend: 'lease lapses',
          },
        ],
      },
      {
        title: 'Task restores',
        description:
          'Time to restore an assigned task from the changelog (p90 over the last restores), and events processed again after it (between its snapshot and the log end).',
        unit: 'short',
        queries: [
          {
            expr: `max(drover_rules_task_restore_seconds{${SEL}, quantile="0.9"})`,
            legend: 'restore p90 (s)',
          },
          {
            expr: `sum(increase(drover_rules_task_replayed_events_total{${SEL}}[$__rate_interval]))`,
            legend: 'replayed events',
          },
        ],
      },
      {
        title: 'Fenced alerts by reason',
        description:
          'Alerts a worker did not emit because its task moved (revoked), because it may have lost its membership (stalled: after a stall or a lapsed lease), or past the held bound (held-overflow). The new owner fires them again from the changelog.',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (reason) (increase(drover_rules_fenced_alerts_total{${SEL}}[$__rate_interval]))`,
            legend: '{{reason}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Remediation',
    panels: [
      {
        title: 'Actions by adapter and outcome',
        description:
          'Decisions per interval: executed, dry-run, suppressed or failed, per adapter.',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (adapter, outcome) (increase(drover_actions_total{${SEL}}[$__rate_interval]))`,
            legend: '{{adapter}} {{outcome}}',
          },
        ],
      },
      {
        title: 'Guard-rail suppressions by reason',
        description:
          'Actions a guard rail stopped (cooldown, budget, min-healthy, circuit breaker, kill switch, …).',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (reason) (increase(drover_guard_suppressions_total{${SEL}}[$__rate_interval]))`,
            legend: '{{reason}}',
          },
        ],
      },
      {
        title: 'Remediation effectiveness',
        description:
          'Remediations verified after they ran: effective (the alert resolved) or ineffective (it did not), from drover_remediation_verifications_total; and actions skipped (suppressed by a guard rail).',
        unit: 'short',
        stack: true,
        queries: [
          {
            expr: `sum by (outcome) (increase(drover_remediation_verifications_total{${SEL}}[$__rate_interval]))`,
            legend: '{{outcome}}',
          },
          {
            expr: `sum(increase(drover_actions_total{${SEL}, outcome="suppressed"}[$__rate_interval]))`,
            legend: 'skipped',
          },
        ],
      },
      {
        title: 'Failed actions (last hour)',
        description: 'Actions whose adapter call failed in the last hour.',
        unit: 'short',
        kind: 'stat',
        queries: [
          {
            expr: `sum(increase(drover_actions_total{${SEL}, outcome="failed"}[1h])) or vector(0)`,
            legend: 'failed',
          },
        ],
      },
    ],
  },
  {
    title: 'Process',
    panels: [
      {
        title: 'Event-loop lag',
        description: 'Node.js event-loop delay; sustained values above a few ms slow every stage.',
        unit: 's',
        queries: [
          {
            expr: `max by (instance) (nodejs_eventloop_lag_p99_seconds{${SEL}})`,
            legend: 'p99 {{instance}}',
          },
        ],
      },
      {
        title: 'Memory',
        description: 'Resident memory and V8 heap in use.',
        unit: 'bytes',
        queries: [
          { expr: `process_resident_memory_bytes{${SEL}}`, legend: 'rss {{instance}}' },
          {
            expr: `sum by (instance) (nodejs_heap_size_used_bytes{${SEL}})`,
            legend: 'heap {{instance}}',
          },
        ],
      },
      {
        title: 'CPU',
        description: 'CPU seconds per second used by the Drover process.',
        unit: 'percentunit',
        queries: [
          {
            expr: `rate(process_cpu_seconds_total{${SEL}}[$__rate_interval])`,
            legend: '{{instance}}',
          },
        ],
      },
    ],
  },
];

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

function panel(spec: PanelSpec, id: number, x: number, y: number, w: number) {
  const stat = spec.kind === 'stat';
  return {
    id,
    type: stat ? 'stat' : 'timeseries',
    title: spec.title,
    description: spec.description,
    datasource: DATASOURCE,
    gridPos: { h: 8, w, x, y },
    fieldConfig: {
      defaults: {
        unit: spec.unit,
        ...(stat
          ? {
              thresholds: {
                mode: 'absolute',
                steps: [
                  { color: 'green', value: null },
                  { color: 'red', value: 1 },
                ],
              },
            }
          : {
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: spec.stack ? 30 : 10,
                showPoints: 'never',
                stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
              },
            }),
      },
      overrides: [],
    },
    options: stat
      ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value' }
      : {
          legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
          tooltip: { mode: 'multi', sort: 'desc' },
        },
    targets: spec.queries.map((q, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource: DATASOURCE,
      expr: q.expr,
      legendFormat: q.legend,
      range: true,
    })),
  };
}

export function grafanaDashboard() {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of ROWS) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    const w = Math.floor(24 / Math.min(row.panels.length, 4));
    row.panels.forEach((p, i) => {
      const col = i % 4;
      if (i > 0 && col === 0) y += 8;
      panels.push(panel(p, id++, col * w, y, w));
    });
    y += 8;
  }
  const variable = (name: string, label: string, query: string) => ({
    name,
    label,
    type: 'query',
    datasource: DATASOURCE,
    query: { query, refId: `${name}-variable` },
    definition: query,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  });
  return {
    uid: GRAFANA_DASHBOARD_UID,
    title: 'Drover pipeline',
    description:
      'Drover: ingest, bus, indexing, rules and remediation, from the drover_* metrics at /metrics.',
    tags: ['drover'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    refresh: '30s',
    time: { from: 'now-3h', to: 'now' },
    schemaVersion: GRAFANA_SCHEMA_VERSION,
    version: 1,
    links: [],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          refresh: 1,
          current: {},
          hide: 0,
        },
        variable('job', 'Job', 'label_values(drover_ingest_events_total, job)'),
        variable(
          'instance',
          'Instance',
          'label_values(drover_ingest_events_total{job=~"$job"}, instance)',
        ),
      ],
    },
    panels,
  };
}

/** Every PromQL expression the dashboard sends, with where it comes from. */
export function grafanaQueries(
  dashboard = grafanaDashboard(),
): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of dashboard.panels as Array<{
    title: string;
    targets?: Array<{ refId: string; expr: string }>;
  }>) {
    for (const t of p.targets ?? [])
      out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  }
  for (const v of dashboard.templating.list) {
    if (v.type === 'query' && 'definition' in v) {
      const m = /^label_values\((.*),\s*\w+\)$/.exec(v.definition);
      if (m) out.push({ where: `variable ${v.name}`, expr: m[1]! });
    }
  }
  return out;
}

/** Grafana's file provisioning: the dashboard folder and a Prometheus data source. */
export function grafanaProvisioning(options: { dashboardsPath: string; prometheusUrl: string }) {
  return {
    dashboards: {
      apiVersion: 1,
      providers: [
        {
          name: 'drover',
          folder: 'Drover',
          type: 'file',
          disableDeletion: false,
          allowUiUpdates: false,
          updateIntervalSeconds: 30,
          options: { path: options.dashboardsPath, foldersFromFilesStructure: false },
        },
      ],
    },
    datasources: {
      apiVersion: 1,
      datasources: [
        {
          name: 'Prometheus',
          uid: 'prometheus',
          type: 'prometheus',
          access: 'proxy',
          url: options.prometheusUrl,
          isDefault: true,
          jsonData: { timeInterval: '15s' },
        },
      ],
    },
  };
}
