import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  cacheDir,
  freePort,
  run,
  startProcess,
  stopProcess,
  waitFor,
  withInstallLock,
} from './common.ts';

/**
 * Real log shippers for the wire-protocol tests, from the registries this machine
 * reaches: rsyslog's omelasticsearch output (Debian's rsyslog-elasticsearch), Elastic's
 * official Python client (PyPI `elasticsearch` 8.x), which does the product check and
 * bulk error handling applications and Python shippers rely on, and OpenTelemetry's
 * Python SDK with its OTLP/HTTP exporters.
 */
const RSYSLOG_MODULE_DIRS = ['/usr/lib/x86_64-linux-gnu/rsyslog', '/usr/lib/rsyslog'];
const PY_REQUIREMENTS = [
  'elasticsearch>=8.15,<9',
  // OpenTelemetry's own SDK and OTLP/HTTP (protobuf) exporter, for /v1/logs and /v1/metrics.
  'opentelemetry-sdk>=1.27,<2',
  'opentelemetry-exporter-otlp-proto-http>=1.27,<2',
];

function omelasticsearchInstalled(): boolean {
  return RSYSLOG_MODULE_DIRS.some((d) => existsSync(join(d, 'omelasticsearch.so')));
}

/** rsyslogd with its Elasticsearch output, installed with apt-get when missing. */
export async function ensureRsyslog(): Promise<string> {
  const rsyslogd = '/usr/sbin/rsyslogd';
  if (existsSync(rsyslogd) && omelasticsearchInstalled()) return rsyslogd;
  if (process.getuid?.() !== 0)
    throw new Error('rsyslog-elasticsearch is not installed and apt-get needs root');
  await withInstallLock(join(cacheDir('apt'), 'install.lock'), () => {
    const install = () =>
      spawnSync(
        'apt-get',
        ['install', '-y', '-q', '--no-install-recommends', 'rsyslog', 'rsyslog-elasticsearch'],
        { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      );
    let r = install();
    if (r.status !== 0) {
      // A fresh machine has no package lists yet.
      run('apt-get', ['update', '-q'], '/');
      r = install();
    }
    if (r.status !== 0)
      throw new Error(`apt-get install rsyslog-elasticsearch failed: ${r.stderr.slice(-1000)}`);
  });
  if (!omelasticsearchInstalled()) throw new Error('omelasticsearch.so missing after install');
  return rsyslogd;
}

/** A Python with Elastic's client, in a venv under the cache, installed once. */
export async function ensurePythonElasticsearch(): Promise<string> {
  const venv = join(cacheDir('python-elasticsearch'), 'venv');
  const python = join(venv, 'bin', 'python');
  const marker = join(venv, '.drover-installed');
  const wanted = `${PY_REQUIREMENTS.join('\n')}\n`;
  const installed = () => existsSync(marker) && readFileSync(marker, 'utf8') === wanted;
  if (installed()) return python;
  mkdirSync(dirname(venv), { recursive: true });
  await withInstallLock(`${venv}.lock`, () => {
    if (installed()) return;
    if (!existsSync(python)) run('python3', ['-m', 'venv', venv], dirname(venv));
    run(
      python,
      ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', ...PY_REQUIREMENTS],
      dirname(venv),
    );
    writeFileSync(marker, wanted);
  });
  return python;
}

/**
 * Prometheus, built from source (Go module proxy: github.com/prometheus/prometheus at
 * PROMETHEUS_MODULE_VERSION, i.e. v3.1.0) into the cache once: it scrapes a running
 * Drover for the dashboard tests and remote_writes to it for the ingest tests.
 */
const PROMETHEUS_MODULE_VERSION = 'v0.301.0';

export async function ensurePrometheus(): Promise<string> {
  // `go install pkg@version` refuses modules with replace directives, as Prometheus has.
  return buildGoModule(
    'prometheus',
    'github.com/prometheus/prometheus',
    PROMETHEUS_MODULE_VERSION,
    './cmd/prometheus',
  );
}

/**
 * Filebeat, built from source like Prometheus (the Go module proxy serves the beats
 * repository's 7.x tags only: github.com/elastic/beats/v7), into the cache once.
 */
const FILEBEAT_MODULE_VERSION = 'v7.17.29';

export async function ensureFilebeat(): Promise<string> {
  return buildGoModule(
    'filebeat',
    'github.com/elastic/beats/v7',
    FILEBEAT_MODULE_VERSION,
    './filebeat',
  );
}

/** Downloads a Go module and builds one of its commands as the main module (replace directives apply). */
async function buildGoModule(
  name: string,
  module: string,
  version: string,
  command: string,
): Promise<string> {
  const dir = cacheDir(name);
  const binary = join(dir, name);
  const marker = join(dir, `.built-${version}`);
  if (existsSync(marker) && existsSync(binary)) return binary;
  await withInstallLock(join(dir, 'build.lock'), () => {
    if (existsSync(marker) && existsSync(binary)) return;
    const download = spawnSync('go', ['mod', 'download', '-json', `${module}@${version}`], {
      encoding: 'utf8',
      maxBuffer: 16 << 20,
    });
    if (download.status !== 0)
      throw new Error(`go mod download ${module} failed: ${download.stderr.slice(-1000)}`);
    const source = (JSON.parse(download.stdout) as { Dir: string }).Dir;
    const work = join(dir, 'src');
    rmSync(work, { recursive: true, force: true });
    cpSync(source, work, { recursive: true });
    run('chmod', ['-R', 'u+w', work], dir);
    const build = spawnSync('go', ['build', '-o', binary, command], {
      cwd: work,
      encoding: 'utf8',
      env: { ...process.env, CGO_ENABLED: '0' },
      maxBuffer: 64 << 20,
    });
    if (build.status !== 0)
      throw new Error(`go build ${module} ${command} failed: ${build.stderr.slice(-2000)}`);
    rmSync(work, { recursive: true, force: true });
    writeFileSync(marker, '');
  });
  return binary;
}

/**
 * An OpenTelemetry Collector with the filelog receiver and the otlphttp exporter, built
 * with the collector's own builder (ocb) from the Go module proxy. The proxy this machine
 * reaches has no checksum database, so the builder's `go mod tidy` runs with GOSUMDB=off
 * (modules still come from the proxy over HTTPS; only the sumdb cross-check is skipped).
 */
const OTELCOL_VERSION = 'v0.116.0';

export async function ensureOtelCollector(): Promise<string> {
  const dir = cacheDir('otelcol');
  const binary = join(dir, 'otelcol-drover');
  const marker = join(dir, `.built-${OTELCOL_VERSION}`);
  if (existsSync(marker) && existsSync(binary)) return binary;
  await withInstallLock(join(dir, 'build.lock'), () => {
    if (existsSync(marker) && existsSync(binary)) return;
    const env = { ...process.env, GOBIN: dir, GOSUMDB: 'off', CGO_ENABLED: '0' };
    const install = spawnSync(
      'go',
      ['install', `go.opentelemetry.io/collector/cmd/builder@${OTELCOL_VERSION}`],
      { encoding: 'utf8', env, maxBuffer: 16 << 20 },
    );
    if (install.status !== 0)
      throw new Error(`go install of the collector builder failed: ${install.stderr.slice(-1000)}`);
    const version = OTELCOL_VERSION;
    writeFileSync(
      join(dir, 'builder.yaml'),
      `dist:
  name: otelcol-drover
  description: OpenTelemetry Collector for Drover's tests
  output_path: ${join(dir, 'src')}
receivers:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver ${version}
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter ${version}
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor ${version}
`,
    );
    const build = spawnSync(join(dir, 'builder'), ['--config', join(dir, 'builder.yaml')], {
      encoding: 'utf8',
      env,
      maxBuffer: 64 << 20,
    });
    if (build.status !== 0)
      throw new Error(`the collector build failed: ${(build.stderr || build.stdout).slice(-2000)}`);
    cpSync(join(dir, 'src', 'otelcol-drover'), binary);
    rmSync(join(dir, 'src'), { recursive: true, force: true });
    writeFileSync(marker, '');
  });
  return binary;
}

export interface RunningPrometheus {
  url: string;
  /** Runs an instant query; rejects with Prometheus's own error for a bad one. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  stop(): Promise<void>;
}

/** Starts a Prometheus of its own with the given configuration (YAML), in a temp dir. */
export async function startPrometheus(binary: string, config: string): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-prometheus-'));
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const child = startProcess(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { cwd: dir, logFile: join(dir, 'prometheus.log') },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `Prometheus on ${url}`,
    async () => (await fetch(`${url}/-/ready`)).ok,
    60_000,
    child,
  );
  return {
    url,
    async query(expr) {
      const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await r.json()) as {
        status: string;
        error?: string;
        data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
      return body.data!.result;
    },
    async stop() {
      await stopProcess(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
