/**
 * Kibana saved objects over the indices Drover writes (ingest/index/templates.ts):
 * data views for events, alerts and the action journal, a logs dashboard and an
 * alerts-and-actions dashboard. Agg-based visualizations and saved searches in the 8.x
 * saved-object format, importable with `POST /api/saved_objects/_import`. Generated
 * (`npm run dashboards`) so field names are written once, here, and tested against the
 * mapping of a real Elasticsearch.
 */

export const KIBANA_CORE_MIGRATION_VERSION = '8.8.0';

export interface SavedObjectReference {
  name: string;
  type: string;
  id: string;
}

export interface SavedObject {
  type: 'index-pattern' | 'visualization' | 'search' | 'dashboard';
  id: string;
  attributes: Record<string, unknown>;
  references: SavedObjectReference[];
  coreMigrationVersion: string;
  typeMigrationVersion: string;
  managed: boolean;
}

type DataView = 'events' | 'alerts' | 'actions';

/** A field a visualization reads, and how: aggregations need an aggregatable field. */
export interface FieldUse {
  object: string;
  dataView: DataView;
  field: string;
  aggregatable: boolean;
}

interface Agg {
  type: 'count' | 'date_histogram' | 'terms' | 'avg' | 'max' | 'percentiles';
  schema: 'metric' | 'segment' | 'group' | 'bucket' | 'split';
  field?: string;
  size?: number;
  label?: string;
  percents?: number[];
}

interface VisSpec {
  id: string;
  title: string;
  description: string;
  dataView: DataView;
  kind: 'histogram' | 'line' | 'area' | 'table' | 'pie';
  query?: string;
  aggs: Agg[];
}

interface SearchSpec {
  id: string;
  title: string;
  description: string;
  dataView: DataView;
  query: string;
  columns: string[];
}

const SEARCH_SOURCE_REF = 'kibanaSavedObjectMeta.searchSourceJSON.index';
/** The alerts index holds state changes beside alerts (`state`): alerts only (older ones have no state). */
const ALERTS_ONLY = 'not state : ("pending" or "inactive" or "resolved")';
const dataViewId = (prefix: string, v: DataView) => `${prefix}-${v}`;

function aggJson(agg: Agg, id: number): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  if (agg.field) params.field = agg.field;
  if (agg.type === 'date_histogram') {
    Object.assign(params, {
      useNormalizedEsInterval: true,
      scaleMetricValues: false,
      interval: 'auto',
      drop_partials: false,
      min_doc_count: 1,
      extended_bounds: {},
    });
  }
  if (agg.type === 'terms') {
    Object.assign(params, {
      orderBy: '1',
      order: 'desc',
      size: agg.size ?? 10,
      otherBucket: false,
      missingBucket: false,
    });
  }
  if (agg.type === 'percentiles') params.percents = agg.percents ?? [50, 99];
  if (agg.label) params.customLabel = agg.label;
  return { id: String(id), enabled: true, type: agg.type, params, schema: agg.schema };
}

function xyParams(kind: 'histogram' | 'line' | 'area', metricLabel: string) {
  const mode = kind === 'line' ? 'normal' : 'stacked';
  return {
    type: kind,
    grid: { categoryLines: false },
    categoryAxes: [
      {
        id: 'CategoryAxis-1',
        type: 'category',
        position: 'bottom',
        show: true,
        style: {},
        scale: { type: 'linear' },
        labels: { show: true, filter: true, truncate: 100 },
        title: {},
      },
    ],
    valueAxes: [
      {
        id: 'ValueAxis-1',
        name: 'LeftAxis-1',
        type: 'value',
        position: 'left',
        show: true,
        style: {},
        scale: { type: 'linear', mode: 'normal' },
        labels: { show: true, rotate: 0, filter: false, truncate: 100 },
        title: { text: metricLabel },
      },
    ],
    seriesParams: [
      {
        show: true,
        type: kind === 'histogram' ? 'histogram' : kind === 'area' ? 'area' : 'line',
        mode,
        data: { label: metricLabel, id: '1' },
        valueAxis: 'ValueAxis-1',
        drawLinesBetweenPoints: true,
        lineWidth: 2,
        interpolate: 'linear',
        showCircles: kind === 'line',
      },
    ],
    addTooltip: true,
    detailedTooltip: true,
    addLegend: true,
    legendPosition: 'right',
    times: [],
    addTimeMarker: false,
    thresholdLine: { show: false, value: 10, width: 1, style: 'full', color: '#E7664C' },
    labels: {},
    palette: { type: 'palette', name: 'default' },
    isVislibVis: true,
    fittingFunction: 'linear',
    radiusRatio: 0,
  };
}

function visParams(spec: VisSpec) {
  const metric = spec.aggs.find((a) => a.schema === 'metric');
  const metricLabel = metric?.label ?? 'Count';
  switch (spec.kind) {
    case 'table':
      return {
        perPage: 10,
        showPartialRows: false,
        showMetricsAtAllLevels: false,
        showTotal: false,
        totalFunc: 'sum',
        percentageCol: '',
        autoFitRowToContent: false,
      };
    case 'pie':
      return {
        type: 'pie',
        addTooltip: true,
        legendDisplay: 'show',
        legendPosition: 'right',
        isDonut: true,
        nestedLegend: false,
        distinctColors: false,
        truncateLegend: true,
        maxLegendLines: 1,
        palette: { type: 'palette', name: 'default' },
        labels: {
          show: true,
          last_level: true,
          values: true,
          valuesFormat: 'percent',
          truncate: 100,
          position: 'default',
        },
      };
    default:
      return xyParams(spec.kind, metricLabel);
  }
}

function searchSource(query = '', withIndex = true): string {
  return JSON.stringify({
    query: { query, language: 'kuery' },
    filter: [],
    ...(withIndex && { indexRefName: SEARCH_SOURCE_REF }),
  });
}

function visualization(prefix: string, spec: VisSpec): SavedObject {
  return {
    type: 'visualization',
    id: `${prefix}-${spec.id}`,
    attributes: {
      title: spec.title,
      description: spec.description,
      uiStateJSON: '{}',
      version: 1,
      visState: JSON.stringify({
        title: spec.title,
        type: spec.kind,
        aggs: spec.aggs.map((a, i) => aggJson(a, i + 1)),
        params: visParams(spec),
      }),
      kibanaSavedObjectMeta: { searchSourceJSON: searchSource(spec.query) },
    },
    references: [
      { name: SEARCH_SOURCE_REF, type: 'index-pattern', id: dataViewId(prefix, spec.dataView) },
    ],
    coreMigrationVersion: KIBANA_CORE_MIGRATION_VERSION,
    typeMigrationVersion: '8.5.0',
    managed: false,
  };
}

function savedSearch(prefix: string, spec: SearchSpec): SavedObject {
  return {
    type: 'search',
    id: `${prefix}-${spec.id}`,
    attributes: {
      title: spec.title,
      description: spec.description,
      columns: spec.columns,
      sort: [['@timestamp', 'desc']],
      grid: {},
      hideChart: true,
      isTextBasedQuery: false,
      kibanaSavedObjectMeta: { searchSourceJSON: searchSource(spec.query) },
    },
    references: [
      { name: SEARCH_SOURCE_REF, type: 'index-pattern', id: dataViewId(prefix, spec.dataView) },
    ],
    coreMigrationVersion: KIBANA_CORE_MIGRATION_VERSION,
    typeMigrationVersion: '8.0.0',
    managed: false,
  };
}

function dataView(prefix: string, v: DataView, name: string): SavedObject {
  return {
    type: 'index-pattern',
    id: dataViewId(prefix, v),
    // `${prefix}-events*` covers daily indices (drover-events-2024.06.01) and data streams.
    attributes: { title: `${prefix}-${v}*`, name, timeFieldName: '@timestamp' },
    references: [],
    coreMigrationVersion: KIBANA_CORE_MIGRATION_VERSION,
    typeMigrationVersion: '8.0.0',
    managed: false,
  };
}

interface DashboardPanel {
  object: SavedObject;
  w: number;
  h: number;
}

function dashboard(
  prefix: string,
  id: string,
  title: string,
  description: string,
  rows: DashboardPanel[][],
): SavedObject {
  const panels: unknown[] = [];
  const references: SavedObjectReference[] = [];
  let y = 0;
  let n = 0;
  for (const row of rows) {
    let x = 0;
    for (const p of row) {
      n++;
      const panelIndex = String(n);
      panels.push({
        version: KIBANA_CORE_MIGRATION_VERSION,
        type: p.object.type,
        gridData: { x, y, w: p.w, h: p.h, i: panelIndex },
        panelIndex,
        embeddableConfig: { enhancements: {} },
        panelRefName: `panel_${panelIndex}`,
      });
      references.push({
        name: `${panelIndex}:panel_${panelIndex}`,
        type: p.object.type,
        id: p.object.id,
      });
      x += p.w;
    }
    y += Math.max(...row.map((p) => p.h));
  }
  return {
    type: 'dashboard',
    id: `${prefix}-${id}`,
    attributes: {
      title,
      description,
      version: 1,
      timeRestore: true,
      timeFrom: 'now-24h',
      timeTo: 'now',
      refreshInterval: { pause: false, value: 30_000 },
      panelsJSON: JSON.stringify(panels),
      optionsJSON: JSON.stringify({
        useMargins: true,
        syncColors: false,
        syncCursor: true,
        syncTooltips: false,
        hidePanelTitles: false,
      }),
      kibanaSavedObjectMeta: { searchSourceJSON: searchSource('', false) },
    },
    references,
    coreMigrationVersion: KIBANA_CORE_MIGRATION_VERSION,
    typeMigrationVersion: '8.7.0',
    managed: false,
  };
}

const COUNT: Agg = { type: 'count', schema: 'metric' };
const OVER_TIME: Agg = { type: 'date_histogram', schema: 'segment', field: '@timestamp' };
const ERRORS = 'log.level : ("error" or "fatal" or "critical")';

const VISUALIZATIONS: VisSpec[] = [
  {
    id: 'events-by-service',
    title: 'Drover · Events over time by service',
    description: 'Every event Drover indexed, stacked by service.name.',
    dataView: 'events',
    kind: 'histogram',
    aggs: [COUNT, OVER_TIME, { type: 'terms', schema: 'group', field: 'service.name', size: 10 }],
  },
  {
    id: 'events-by-level',
    title: 'Drover · Events over time by level',
    description: 'Events by log.level (metric samples have none and are left out).',
    dataView: 'events',
    kind: 'area',
    query: 'log.level : *',
    aggs: [COUNT, OVER_TIME, { type: 'terms', schema: 'group', field: 'log.level', size: 8 }],
  },
  {
    id: 'errors-by-service',
    title: 'Drover · Errors by service',
    description: 'Events at error level or above, per interval and service.',
    dataView: 'events',
    kind: 'line',
    query: ERRORS,
    aggs: [
      { ...COUNT, label: 'Errors' },
      OVER_TIME,
      { type: 'terms', schema: 'group', field: 'service.name', size: 10 },
    ],
  },
  {
    id: 'top-stack-fingerprints',
    title: 'Drover · Top stack fingerprints',
    description:
      'Stack traces grouped by fingerprint (same frames, different messages), with their exception type, services and when last seen.',
    dataView: 'events',
    kind: 'table',
    query: 'error.fingerprint : *',
    aggs: [
      { ...COUNT, label: 'Occurrences' },
      {
        type: 'terms',
        schema: 'bucket',
        field: 'error.fingerprint',
        size: 20,
        label: 'Fingerprint',
      },
      { type: 'terms', schema: 'bucket', field: 'error.type', size: 1, label: 'Exception' },
      { type: 'terms', schema: 'bucket', field: 'service.name', size: 3, label: 'Service' },
      { type: 'max', schema: 'metric', field: '@timestamp', label: 'Last seen' },
    ],
  },
  {
    id: 'alerts-by-rule',
    title: 'Drover · Alerts over time by rule',
    description: 'Alerts the rules engine fired, stacked by rule.',
    dataView: 'alerts',
    kind: 'histogram',
    query: ALERTS_ONLY,
    aggs: [
      { ...COUNT, label: 'Alerts' },
      OVER_TIME,
      { type: 'terms', schema: 'group', field: 'rule', size: 20 },
    ],
  },
  {
    id: 'alerts-by-type',
    title: 'Drover · Alerts by rule type',
    description: 'Alerts by rule type (spike, flatline, new_term, …).',
    dataView: 'alerts',
    kind: 'pie',
    query: ALERTS_ONLY,
    aggs: [
      { ...COUNT, label: 'Alerts' },
      { type: 'terms', schema: 'segment', field: 'type', size: 10 },
    ],
  },
  {
    id: 'alert-states',
    title: 'Drover · Alert state over time',
    description:
      'Alerts firing and the state changes after them (resolved; pending and inactive where recorded), from the alerts index.',
    dataView: 'alerts',
    kind: 'histogram',
    aggs: [
      { ...COUNT, label: 'State changes' },
      OVER_TIME,
      { type: 'terms', schema: 'group', field: 'state', size: 4 },
    ],
  },
  {
    id: 'remediation-effectiveness',
    title: 'Drover · Remediation effectiveness',
    description:
      'Remediations verified effective or ineffective after they ran, and actions skipped (suppressed by a guard rail), from the journal.',
    dataView: 'actions',
    kind: 'histogram',
    query: 'decision : ("effective" or "ineffective" or "suppressed")',
    aggs: [
      { ...COUNT, label: 'Decisions' },
      OVER_TIME,
      { type: 'terms', schema: 'group', field: 'decision', size: 3 },
    ],
  },
  {
    id: 'decisions-over-time',
    title: 'Drover · Decisions over time',
    description: 'Every remediation decision: executed, dry-run, suppressed or failed.',
    dataView: 'actions',
    kind: 'histogram',
    aggs: [
      { ...COUNT, label: 'Decisions' },
      OVER_TIME,
      { type: 'terms', schema: 'group', field: 'decision', size: 4 },
    ],
  },
  {
    id: 'actions-by-adapter',
    title: 'Drover · Actions by adapter and outcome',
    description: 'Decisions per adapter, operation and outcome, with the adapter time.',
    dataView: 'actions',
    kind: 'table',
    aggs: [
      { ...COUNT, label: 'Decisions' },
      { type: 'terms', schema: 'bucket', field: 'adapter', size: 10, label: 'Adapter' },
      { type: 'terms', schema: 'bucket', field: 'operation', size: 3, label: 'Operation' },
      { type: 'terms', schema: 'bucket', field: 'decision', size: 4, label: 'Outcome' },
      { type: 'avg', schema: 'metric', field: 'duration_ms', label: 'Avg adapter time (ms)' },
    ],
  },
  {
    id: 'suppressions-by-guard',
    title: 'Drover · Guard-rail suppressions',
    description: 'Actions the guard rails stopped, by guard.',
    dataView: 'actions',
    kind: 'pie',
    query: 'decision : "suppressed"',
    aggs: [
      { ...COUNT, label: 'Suppressed' },
      { type: 'terms', schema: 'segment', field: 'guard', size: 12 },
    ],
  },
];

const SEARCHES: SearchSpec[] = [
  {
    id: 'newest-stack-traces',
    title: 'Drover · Newest stack traces',
    description: 'The latest events carrying a stack trace.',
    dataView: 'events',
    query: 'error.stack_trace : *',
    columns: ['service.name', 'host.name', 'error.type', 'error.message', 'error.fingerprint'],
  },
  {
    id: 'newest-alerts',
    title: 'Drover · Newest alerts',
    description: 'The latest alerts, newest first.',
    dataView: 'alerts',
    query: ALERTS_ONLY,
    columns: ['rule', 'type', 'service.name', 'description'],
  },
  {
    id: 'journal',
    title: 'Drover · Decision journal',
    description: 'Every decision with its target, the guard that stopped it or the error.',
    dataView: 'actions',
    query: '',
    columns: [
      'rule',
      'adapter',
      'operation',
      'target',
      'decision',
      'guard',
      'reason',
      'error.message',
    ],
  },
];

export function kibanaSavedObjects(prefix = 'drover'): SavedObject[] {
  const views = [
    dataView(prefix, 'events', 'Drover events'),
    dataView(prefix, 'alerts', 'Drover alerts'),
    dataView(prefix, 'actions', 'Drover action journal'),
  ];
  const vis = new Map(VISUALIZATIONS.map((v) => [v.id, visualization(prefix, v)]));
  const search = new Map(SEARCHES.map((s) => [s.id, savedSearch(prefix, s)]));
  const get = <T>(m: Map<string, T>, id: string) => m.get(id)!;
  const logs = dashboard(
    prefix,
    'logs',
    'Drover · Logs',
    'Events over time by service and level, errors by service, top stack fingerprints and the newest stack traces.',
    [
      [
        { object: get(vis, 'events-by-service'), w: 24, h: 12 },
        { object: get(vis, 'events-by-level'), w: 24, h: 12 },
      ],
      [
        { object: get(vis, 'errors-by-service'), w: 24, h: 12 },
        { object: get(vis, 'top-stack-fingerprints'), w: 24, h: 12 },
      ],
      [{ object: get(search, 'newest-stack-traces'), w: 48, h: 15 }],
    ],
  );
  const alerts = dashboard(
    prefix,
    'alerts-and-actions',
    'Drover · Alerts and actions',
    'Alerts by rule and type, alert state over time, remediation effectiveness and decisions, guard-rail suppressions and the journal.',
    [
      [
        { object: get(vis, 'alerts-by-rule'), w: 32, h: 12 },
        { object: get(vis, 'alerts-by-type'), w: 16, h: 12 },
      ],
      [
        { object: get(vis, 'alert-states'), w: 24, h: 12 },
        { object: get(vis, 'remediation-effectiveness'), w: 24, h: 12 },
      ],
      [
        { object: get(vis, 'decisions-over-time'), w: 32, h: 12 },
        { object: get(vis, 'suppressions-by-guard'), w: 16, h: 12 },
      ],
      [
        { object: get(vis, 'actions-by-adapter'), w: 24, h: 14 },
        { object: get(search, 'newest-alerts'), w: 24, h: 14 },
      ],
      [{ object: get(search, 'journal'), w: 48, h: 15 }],
    ],
  );
  return [...views, ...vis.values(), ...search.values(), logs, alerts];
}

/** One object per line, as the saved-objects export writes and the import API reads. */
export function toNdjson(objects: SavedObject[]): string {
  return `${objects.map((o) => JSON.stringify(o)).join('\n')}\n`;
}

const FIELD_IN_KQL = /([A-Za-z_@][\w.@]*)\s*:/g;

/**
 * Every field the saved objects read, from what is saved (visState aggs, search columns
 * and sort, KQL queries), not from the specs above: the test checks the artifact.
 */
export function fieldUses(objects: SavedObject[]): FieldUse[] {
  const views = new Map(
    objects
      .filter((o) => o.type === 'index-pattern')
      .map((o) => [o.id, o.id.slice(o.id.lastIndexOf('-') + 1) as DataView]),
  );
  const uses: FieldUse[] = [];
  for (const o of objects) {
    if (o.type !== 'visualization' && o.type !== 'search') continue;
    const ref = o.references.find((r) => r.name === SEARCH_SOURCE_REF);
    const view = ref && views.get(ref.id);
    if (!view) continue;
    const where = `${o.type} ${o.id}`;
    const meta = o.attributes.kibanaSavedObjectMeta as { searchSourceJSON: string };
    const source = JSON.parse(meta.searchSourceJSON) as { query: { query: string } };
    for (const m of source.query.query.matchAll(FIELD_IN_KQL))
      uses.push({ object: where, dataView: view, field: m[1]!, aggregatable: false });
    if (o.type === 'visualization') {
      const vis = JSON.parse(o.attributes.visState as string) as {
        aggs: Array<{ params: { field?: string } }>;
      };
      for (const a of vis.aggs)
        if (a.params.field)
          uses.push({ object: where, dataView: view, field: a.params.field, aggregatable: true });
    } else {
      for (const c of o.attributes.columns as string[])
        uses.push({ object: where, dataView: view, field: c, aggregatable: false });
      for (const [field] of o.attributes.sort as Array<[string, string]>)
        uses.push({ object: where, dataView: view, field, aggregatable: true });
    }
  }
  return uses;
}
