import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cacheDir, run, withInstallLock } from './common.ts';

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
