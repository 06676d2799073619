import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createAdapters } from '../../actions/index.ts';
import { renderArtifacts } from '../../dashboards/index.ts';
import { loadConfig } from '../../pipeline/config.ts';
import { loadRules } from '../../rules/index.ts';
import { DEFAULT_VERSION as ES_VERSION } from '../servers/elasticsearch.ts';
import { DEFAULT_VERSION as KAFKA_VERSION } from '../servers/kafka.ts';

/**
 * Docker does not run on this machine, so the compose set-up is checked for
 * consistency instead: every file it mounts or builds from exists, and the services
 * agree on names, ports, paths, versions and the token.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
}

const compose = parse(readFileSync(join(DEPLOY, 'docker-compose.yaml'), 'utf8')) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const services = compose.services;

/** Bind mounts of a service: host path (resolved) → container path. */
function binds(name: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of services[name]!.volumes ?? []) {
    const [source, target] = v.split(':');
    if (source!.startsWith('.') || source!.startsWith('/'))
      out.set(target!, resolve(DEPLOY, source!));
  }
  return out;
}

/** The host file or folder mounted at a container path (or under a mounted folder). */
function hostPath(service: string, containerPath: string): string | undefined {
  for (const [target, source] of binds(service)) {
    if (containerPath === target) return source;
    if (containerPath.startsWith(`${target}/`))
      return join(source, containerPath.slice(target.length + 1));
  }
  return undefined;
}

const port = (published: string) => published.split(':')[1]!.split('/')[0];

describe('deploy/docker-compose.yaml', () => {
  it('has the scaled set-up: Kafka, Elasticsearch, Kibana with the saved objects, Prometheus, Grafana, Drover', () => {
    for (const s of [
      'kafka',
      'elasticsearch',
      'kibana',
      'kibana-setup',
      'prometheus',
      'grafana',
      'drover',
    ])
      expect(Object.keys(services)).toContain(s);
  });

  it('mounts and builds only files that exist, and names only volumes it declares', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [target, source] of binds(name))
        expect(existsSync(source), `${name}: ${source} (→ ${target})`).toBe(true);
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (!source.startsWith('.') && !source.startsWith('/'))
          expect(Object.keys(compose.volumes), `${name}: volume ${source}`).toContain(source);
      }
      if (s.build) {
        const context = resolve(DEPLOY, s.build.context);
        expect(existsSync(join(context, s.build.dockerfile)), `${name}: Dockerfile`).toBe(true);
        const dockerfile = readFileSync(join(context, s.build.dockerfile), 'utf8');
        // COPY --from=STAGE copies from an earlier stage of the build, not the context.
        for (const m of dockerfile.matchAll(/^COPY (?!--from=)(.+) \S+$/gm))
          for (const src of m[1]!.split(' '))
            expect(existsSync(join(context, src)), `${name}: COPY ${src}`).toBe(true);
      }
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) expect(Object.keys(services), `${name} depends on ${d}`).toContain(d);
    }
  });

  it('runs the server versions the tests run against', () => {
    expect(services.kafka!.image).toBe(`apache/kafka:${KAFKA_VERSION}`);
    expect(services.elasticsearch!.image).toMatch(
      new RegExp(`:${ES_VERSION.replaceAll('.', '\\.')}$`),
    );
    expect(services.kibana!.image).toMatch(new RegExp(`:${ES_VERSION.replaceAll('.', '\\.')}$`));
  });

  it('configures Drover for the compose services, with a valid config and rules whose adapters exist', async () => {
    const configPath = hostPath('drover', '/etc/drover/drover.yaml')!;
    expect(configPath).toBe(join(DEPLOY, 'drover.yaml'));
    // loadConfig refuses non-loopback without a token; the compose file supplies one.
    const config = loadConfig(configPath, { DROVER_TOKEN: 'x' });
    expect(config.bus).toMatchObject({ kind: 'kafka' });
    const brokers = (config.bus as { brokers: string[] }).brokers;
    expect(String(services.kafka!.environment!.KAFKA_ADVERTISED_LISTENERS)).toContain(brokers[0]);
    // The journal goes where Kibana reads it.
    expect(config.actions).toMatchObject({
      store: 'elasticsearch',
      url: 'http://elasticsearch:9200',
    });
    const es = new URL((config.index as { url: string }).url);
    expect(es.hostname).toBe('elasticsearch');
    expect(es.port).toBe('9200');
    expect(String(services.kibana!.environment!.ELASTICSEARCH_HOSTS)).toContain(es.origin);
    expect(config.listen.host).toBe('0.0.0.0');
    expect(services.drover!.ports!.map(port)).toContain(String(config.listen.port));
    expect(services.drover!.ports!.map(port)).toContain(String(config.listen.statsdPort));
    // The state dir is a volume, so snapshots and positions survive a restart.
    expect(services.drover!.volumes!.some((v) => v.endsWith(`:${config.stateDir}`))).toBe(true);
    // Rules: the configured folder is the mounted examples, and they lint clean
    // against exactly the adapters this config defines.
    // Relative paths resolve against the config's folder, /etc/drover in the container.
    const inContainer = join('/etc/drover', relative(DEPLOY, config.rules.paths[0]!));
    const rulesDir = hostPath('drover', inContainer)!;
    expect(rulesDir).toBe(join(ROOT, 'examples', 'rules'));
    const { rules, diagnostics } = await loadRules([rulesDir]);
    expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(rules.length).toBeGreaterThan(5);
    for (const r of rules)
      for (const a of r.actions) {
        const adapter = typeof a === 'string' ? a : a.adapter;
        expect(Object.keys(config.adapters), `${r.name} → ${adapter}`).toContain(adapter);
      }
    // The adapters start (options valid), and the set-up acts in shadow mode.
    const adapters = await createAdapters(config.adapters);
    expect([...adapters.keys()].sort()).toEqual(['fleet', 'pager']);
    await Promise.all([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
    expect(config.guards.dryRun).toBe(true);
    // The token: generated into a volume Drover and Prometheus both mount.
    const entry = services.drover!.entrypoint!.join(' ');
    expect(entry).toContain('DROVER_TOKEN="$$(cat /run/drover/token)"');
    expect(services['token-init']!.volumes).toContain('drover-secrets:/run/drover');
  });

  it('points Prometheus at Drover, with the token, and Grafana at Prometheus and the dashboard', () => {
    const promPath = hostPath('prometheus', '/etc/prometheus/prometheus.yml')!;
    const prom = parse(readFileSync(promPath, 'utf8')) as {
      scrape_configs: Array<{
        job_name: string;
        metrics_path: string;
        authorization: { credentials_file: string };
        static_configs: Array<{ targets: string[] }>;
      }>;
    };
    expect(services.prometheus!.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    const job = prom.scrape_configs.find((j) => j.job_name === 'drover')!;
    expect(job.metrics_path).toBe('/metrics');
    const config = loadConfig(join(DEPLOY, 'drover.yaml'), { DROVER_TOKEN: 'x' });
    expect(job.static_configs[0]!.targets).toEqual([`drover:${config.listen.port}`]);
    expect(services.prometheus!.volumes).toContain('drover-secrets:/run/drover:ro');
    expect(job.authorization.credentials_file).toBe('/run/drover/token');
    // /metrics needs a read token: the scrape's secret is one.
    const entrypoint = String(services.drover!.entrypoint);
    expect(entrypoint).toContain('DROVER_READ_TOKEN="$$(cat /run/drover/token)"');
    expect(
      loadConfig(join(DEPLOY, 'drover.yaml'), { DROVER_READ_TOKEN: 'x' }).listen.readTokens,
    ).toEqual(['x']);

    // Grafana: provisioning where Grafana reads it, the dashboards folder where the
    // provider looks, and the data source at the Prometheus service.
    const artifacts = renderArtifacts();
    const provisioning = hostPath('grafana', '/etc/grafana/provisioning')!;
    const provider = parse(
      readFileSync(join(provisioning, 'dashboards', 'drover.yaml'), 'utf8'),
    ) as {
      providers: Array<{ options: { path: string } }>;
    };
    const dashboardsDir = hostPath('grafana', provider.providers[0]!.options.path)!;
    expect(existsSync(join(dashboardsDir, 'drover-pipeline.json'))).toBe(true);
    const home = String(services.grafana!.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH);
    expect(existsSync(hostPath('grafana', home)!)).toBe(true);
    const ds = parse(
      readFileSync(join(provisioning, 'datasources', 'prometheus.yaml'), 'utf8'),
    ) as {
      datasources: Array<{ type: string; url: string }>;
    };
    expect(ds.datasources[0]!.type).toBe('prometheus');
    const promUrl = new URL(ds.datasources[0]!.url);
    expect(promUrl.hostname).toBe('prometheus');
    expect(services.prometheus!.ports!.map(port)).toContain(promUrl.port);
    expect(Object.keys(artifacts).length).toBe(4);
  });

  it('imports the Kibana saved objects into the Kibana service', () => {
    const setup = services['kibana-setup']!;
    const cmd = setup.command!.join(' ');
    expect(cmd).toContain('http://kibana:5601/api/saved_objects/_import?overwrite=true');
    expect(cmd).toContain('kbn-xsrf');
    const file = /file=@(\S+)/.exec(cmd)![1]!;
    expect(hostPath('kibana-setup', file)).toBe(
      join(ROOT, 'dashboards', 'kibana', 'drover.ndjson'),
    );
    expect(services.kibana!.ports!.map(port)).toContain('5601');
  });
});
