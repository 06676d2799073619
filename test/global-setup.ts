import type { TestProject } from 'vitest/node';
import { ensureBuilt } from './support/build.ts';

/**
 * Starts the real servers the integration tests talk to, once per run, and hands their
 * addresses to the tests (`inject('kafkaBrokers')`, `inject('elasticsearchUrl')`).
 * KAFKA_BROKERS / ELASTICSEARCH_URL point at servers of your own instead. A server that cannot be had is reported as null with the reason,
 * and its tests skip with that reason — except in CI, where that fails the run.
 * DROVER_SERVERS=off starts none (quick local runs of the unit tests).
 */
declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string | null;
    elasticsearchUrl: string | null;
    awsEndpoint: string | null;
    /** rsyslogd with omelasticsearch, and a Python with Elastic's client: real shippers. */
    rsyslogd: string | null;
    esPython: string | null;
    /** A Prometheus binary (tests start their own, with their own scrape config). */
    prometheus: string | null;
    filebeat: string | null;
    otelcol: string | null;
    /** A Python with junitparser, a JUnit XML reader (the CI format tests). */
    junitparser: string | null;
    /** A Python with ElastAlert 2 importable (test/servers/elastalert-validate.py runs on it). */
    elastalertPython: string | null;
    serverSkipReasons: Record<string, string>;
  }
}

const stops: Array<() => Promise<void>> = [];

async function bring(
  name: string,
  envVar: string,
  start: () => Promise<{ url: string; stop(): Promise<void> }>,
  reasons: Record<string, string>,
) {
  if (process.env[envVar]) return process.env[envVar];
  if (process.env.DROVER_SERVERS === 'off') {
    reasons[name] = `DROVER_SERVERS=off and ${envVar} is not set`;
    return null;
  }
  const began = Date.now();
  try {
    const server = await start();
    stops.push(() => server.stop());
    process.stderr.write(
      `[servers] ${name} at ${server.url} in ${((Date.now() - began) / 1000).toFixed(1)}s\n`,
    );
    return server.url;
  } catch (err) {
    if (process.env.CI) throw err;
    reasons[name] = `${name} could not be started: ${(err as Error).message}`;
    return null;
  }
}

/** A tool the tests run (not a server): installed once, its path handed over. */
async function obtain(
  name: string,
  install: () => Promise<string>,
  reasons: Record<string, string>,
) {
  if (process.env.DROVER_SERVERS === 'off') {
    reasons[name] = 'DROVER_SERVERS=off';
    return null;
  }
  try {
    return await install();
  } catch (err) {
    if (process.env.CI) throw err;
    reasons[name] = `${name} could not be installed: ${(err as Error).message}`;
    return null;
  }
}

export async function setup(project: TestProject) {
  // The CLI tests spawn bin/drover.js, which runs dist/: rebuilt here when stale.
  ensureBuilt();
  const reasons: Record<string, string> = {};
  const [kafka, elasticsearch, moto] = await Promise.all([
    bring(
      'kafka',
      'KAFKA_BROKERS',
      async () => (await import('./servers/kafka.ts')).startKafka(),
      reasons,
    ),
    bring(
      'elasticsearch',
      'ELASTICSEARCH_URL',
      async () => (await import('./servers/elasticsearch.ts')).startElasticsearch(),
      reasons,
    ),
    bring(
      'moto',
      'AWS_ENDPOINT_URL',
      async () => (await import('./servers/moto.ts')).startMoto(),
      reasons,
    ),
  ]);
  const [rsyslogd, esPython, prometheus, filebeat, otelcol, junitparser, elastalertPython] =
    await Promise.all([
      obtain(
        'rsyslog',
        async () => (await import('./servers/shippers.ts')).ensureRsyslog(),
        reasons,
      ),
      obtain(
        'python-elasticsearch',
        async () => (await import('./servers/shippers.ts')).ensurePythonElasticsearch(),
        reasons,
      ),
      obtain(
        'prometheus',
        async () => (await import('./servers/shippers.ts')).ensurePrometheus(),
        reasons,
      ),
      obtain(
        'filebeat',
        async () => (await import('./servers/shippers.ts')).ensureFilebeat(),
        reasons,
      ),
      obtain(
        'otelcol',
        async () => (await import('./servers/shippers.ts')).ensureOtelCollector(),
        reasons,
      ),
      obtain(
        'junitparser',
        async () => (await import('./servers/junitparser.ts')).ensureJunitparser(),
        reasons,
      ),
      obtain(
        'elastalert',
        async () => (await import('./servers/elastalert.ts')).ensureElastalert(),
        reasons,
      ),
    ]);
  project.provide('junitparser', junitparser);
  project.provide('elastalertPython', elastalertPython);
  project.provide('otelcol', otelcol);
  project.provide('filebeat', filebeat);
  project.provide('prometheus', prometheus);
  project.provide('rsyslogd', rsyslogd);
  project.provide('esPython', esPython);
  project.provide('kafkaBrokers', kafka);
  project.provide('elasticsearchUrl', elasticsearch);
  project.provide('awsEndpoint', moto);
  project.provide('serverSkipReasons', reasons);
}

export async function teardown() {
  await Promise.allSettled(stops.map((stop) => stop()));
}
