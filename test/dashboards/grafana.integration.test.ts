import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  GRAFANA_SCHEMA_VERSION,
  grafanaDashboard,
  grafanaQueries,
  renderArtifacts,
} from '../../dashboards/index.ts';
import { startPrometheus } from '../servers/shippers.ts';
import { errorLine, startServe, until } from '../support/drover.ts';

const DASHBOARDS = join(import.meta.dirname, '..', '..', 'dashboards');

/**
 * Metrics a panel charts that the post-action verification emits (by convention:
 * drover_remediation_verifications_total{outcome="effective|ineffective"}). Until a
 * Drover exports it, its queries are checked to parse and to name it and its `outcome`
 * label, not run for data; once exported it is checked as every other metric, and like
 * the failure counters it may lack samples when nothing here verified a remediation.
 */
const VERIFICATION = 'drover_remediation_verifications_total';
/**
 * Series only a rules worker on the Kafka bus has samples of (labelled per task or reason),
 * and only a Kafka consumer that met a corrupt record batch (per partition; read from a
 * worker in test/pipeline/rules-workers-corrupt.integration.test.ts).
 */
const KAFKA_WORKERS =
  /drover_rules_(task_lag_messages|fenced_alerts_total)|drover_bus_(corrupt_batches_total|stopped_partitions)/;
const prometheusBin = inject('prometheus');
const prometheusReason = inject('serverSkipReasons').prometheus;
const prometheusSkip = prometheusReason ? ` (skipped: ${prometheusReason})` : '';

/** What Grafana substitutes before a query reaches Prometheus. */
function interpolate(expr: string, rateInterval = '1m'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range', '1h')
    .replaceAll('$job', '.*')
    .replaceAll('$instance', '.*');
}

interface Parsed {
  errors: string[];
  metrics: string[];
  /** Label names the query groups by or matches on. */
  labels: Array<{ metric?: string; label: string }>;
}

function parsePromql(expr: string): Parsed {
  const text = interpolate(expr);
  const tree = parser.parse(text);
  const out: Parsed = { errors: [], metrics: [], labels: [] };
  const slice = (n: { from: number; to: number }) => text.slice(n.from, n.to);
  tree.iterate({
    enter(ref) {
      const n = ref.node;
      if (n.type.isError)
        out.errors.push(`syntax error at ${n.from}: "${text.slice(n.from, n.from + 20)}"`);
      if (n.name === 'VectorSelector') {
        const id = n.getChild('Identifier');
        const metric = id ? slice(id) : undefined;
        if (metric) out.metrics.push(metric);
        const matchers = n.getChild('LabelMatchers');
        for (let c = matchers?.firstChild; c; c = c.nextSibling) {
          const name = c.getChild('LabelName');
          if (name) out.labels.push({ metric, label: slice(name) });
        }
      }
      if (n.name === 'GroupingLabels') {
        for (let c = n.firstChild; c; c = c.nextSibling)
          if (c.name === 'LabelName') out.labels.push({ label: slice(c) });
      }
    },
  });
  return out;
}

describe('the Grafana dashboard', () => {
  const dashboard = grafanaDashboard();

  it('is the committed file, with provisioning beside it', () => {
    for (const [path, content] of Object.entries(renderArtifacts()))
      expect(
        readFileSync(join(DASHBOARDS, path), 'utf8'),
        `dashboards/${path} is stale: npm run dashboards`,
      ).toBe(content);
  });

  it('has a current schema, a Prometheus data-source variable every panel uses, and a tidy grid', () => {
    expect(dashboard.schemaVersion).toBe(GRAFANA_SCHEMA_VERSION);
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(ds).toMatchObject({ name: 'datasource', query: 'prometheus' });
    const panels = dashboard.panels as Array<{
      id: number;
      type: string;
      title: string;
      datasource?: { uid: string };
      gridPos: { x: number; y: number; w: number; h: number };
    }>;
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      if (p.type !== 'row') expect(p.datasource?.uid, p.title).toBe('${datasource}');
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
    // Each area docs/architecture.md#drovers-own-telemetry names has a panel.
    const titles = panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const area of [
      'ingested by protocol',
      'errors by protocol',
      'bus lag',
      'corrupt record batches',
      'indexing latency',
      'failures',
      'rule evaluation',
      'alerts by rule',
      'tasks held per worker',
      'task lag by partition',
      'lease lapses',
      'task restores',
      'fenced alerts by reason',
      'actions by adapter and outcome',
      'suppressions by reason',
      'remediation effectiveness',
    ])
      expect(titles).toContain(area);
  });

  it('every query parses as PromQL (and the check does catch a broken one)', () => {
    expect(parsePromql('sum by (le) (rate(x_bucket[5m])').errors).not.toEqual([]);
    expect(parsePromql('rate(x{job=~"a"}[$__rate_interval]) +').errors).not.toEqual([]);
    const queries = grafanaQueries(dashboard);
    expect(queries.length).toBeGreaterThan(15);
    for (const q of queries)
      expect(parsePromql(q.expr).errors, `${q.where}: ${q.expr}`).toEqual([]);
  });
});

/** A running `drover serve`, driven through ingest, alerts, actions and a suppression. */
describe('the Grafana dashboard against a running Drover', () => {
  let child: ChildProcess;
  let url: string;
  let exposition = '';

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-dash-'));
    mkdirSync(join(dir, 'rules'));
    writeFileSync(
      join(dir, 'rules', 'errors.yaml'),
      `name: host-errors
type: frequency
query_key: host.name
num_events: 2
timeframe: 10m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
actions:
  - { adapter: script, operation: kill-and-replace, target: "{{ host.name }}" }
`,
    );
    writeFileSync(
      join(dir, 'drover.yaml'),
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "true"] }
guards: { cooldown: 0s, budget: { max: 1, window: 1h } }
`,
    );
    const served = await startServe(join(dir, 'drover.yaml'));
    child = served.child;
    url = served.url;
    const t = Date.now();
    const line = (host: string, i: number) => errorLine(host, t + i);
    // Two hosts trip the rule: one action runs, the budget of one suppresses the other.
    const body = [line('a', 0), line('a', 1), 'not json', line('b', 2), line('b', 3)].join('\n');
    const r = await fetch(`${url}/ingest`, { method: 'POST', body });
    expect(r.status).toBe(200);
    for (let i = 0; i < 200; i++) {
      exposition = await (await fetch(`${url}/metrics`)).text();
      if (
        /drover_guard_suppressions_total\{/.test(exposition) &&
        /drover_index_batch_seconds_count [1-9]/.test(exposition)
      )
        break;
      await new Promise((res) => setTimeout(res, 100));
    }
  }, 60_000);

  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('uses only metrics and labels that Drover exports', () => {
    const families = new Map<string, string>();
    for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1]!, m[2]!);
    const samples = new Map<string, Set<string>>();
    for (const m of exposition.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? /gm)) {
      const labels = samples.get(m[1]!) ?? new Set<string>();
      for (const l of (m[2] ?? '').matchAll(/(\w+)="/g)) labels.add(l[1]!);
      samples.set(m[1]!, labels);
    }
    expect(families.size).toBeGreaterThan(20);
    const familyOf = (name: string) =>
      families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    // Labels Prometheus adds to every scraped series.
    const targetLabels = new Set(['job', 'instance']);
    const unsampled: string[] = [];
    let verificationQueries = 0;
    for (const q of grafanaQueries()) {
      const parsed = parsePromql(q.expr);
      expect(parsed.metrics.length, q.where).toBeGreaterThan(0);
      if (parsed.metrics.includes(VERIFICATION)) {
        verificationQueries++;
        expect(q.expr, q.where).toMatch(/sum by \(outcome\)/);
      }
      for (const metric of parsed.metrics) {
        if (metric === VERIFICATION && !families.has(VERIFICATION)) continue;
        expect(
          families.has(familyOf(metric)),
          `${q.where} uses ${metric}, which Drover does not export`,
        ).toBe(true);
        if (!samples.has(metric)) {
          unsampled.push(metric);
          continue;
        }
        const known = samples.get(metric)!;
        const used = parsed.labels.filter(
          (l) => (l.metric ?? metric) === metric && !targetLabels.has(l.label),
        );
        for (const { label } of used)
          if (label !== 'le')
            expect(known.has(label), `${q.where}: ${metric} has no label ${label}`).toBe(true);
      }
    }
    expect(verificationQueries).toBe(1);
    // Only failure counters nothing here provoked may lack samples (and verifications:
    // nothing here verifies a remediation), and the rules workers' series by partition
    // and by fencing reason (this Drover runs the embedded bus; the Kafka rules-workers
    // tests read them from workers).
    expect(
      unsampled.filter(
        (m) => !/failures|throttled/.test(m) && m !== VERIFICATION && !KAFKA_WORKERS.test(m),
      ),
    ).toEqual([]);
  });

  it.skipIf(!prometheusBin)(
    `every query runs on a real Prometheus scraping this Drover, and the panels have data${prometheusSkip}`,
    async () => {
      const target = new URL(url).host;
      const prometheus = await startPrometheus(
        prometheusBin!,
        `global: { scrape_interval: 1s }
scrape_configs:
  - job_name: drover
    static_configs: [{ targets: ['${target}'] }]
`,
      );
      try {
        // Enough scrapes for rates over a 10 s window (Grafana's rate interval is at
        // least four scrape intervals).
        await until('five scrapes', async () => {
          const r = await prometheus.query('count_over_time(up{job="drover"}[1m])');
          return Number(r[0]?.value[1] ?? 0) >= 5 ? true : undefined;
        });
        const empty: string[] = [];
        for (const q of grafanaQueries()) {
          // Not exported (yet): parsed and checked above, no data to ask for.
          if (q.expr.includes(VERIFICATION)) continue;
          const result = await prometheus.query(interpolate(q.expr, '10s'));
          if (result.length === 0) empty.push(`${q.where}: ${q.expr}`);
        }
        // Only the failure counters nothing here provoked, and the rules workers' series
        // by partition and reason, may come back empty.
        expect(
          empty.filter((e) => !/failures_total|throttled_total/.test(e) && !KAFKA_WORKERS.test(e)),
        ).toEqual([]);
        const [events] = await prometheus.query(
          'sum(drover_ingest_events_total{job="drover", protocol="ndjson"})',
        );
        expect(Number(events!.value[1])).toBe(4);
      } finally {
        await prometheus.stop();
      }
    },
    60_000,
  );
});
