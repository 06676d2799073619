import type { TestProject } from 'vitest/node';

/**
 * Starts the real servers the integration tests talk to, once per run, and hands
 * their addresses to the tests with `inject('kafkaBrokers')` etc. Each server module
 * honours its environment variable (KAFKA_BROKERS, ELASTICSEARCH_URL, AWS_ENDPOINT_URL)
 * and otherwise fetches and starts the server itself. A server that cannot be had is
 * reported as `null` with a reason, and its tests skip with that reason — except in CI,
 * where that is a failure. DROVER_SERVERS=off skips starting them (local unit runs).
 */
declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string | null;
    elasticsearchUrl: string | null;
    awsEndpoint: string | null;
    serverSkipReasons: Record<string, string>;
  }
}

type Started = { url: string; stop(): Promise<void> };
type Starter = () => Promise<Started>;

const stops: Array<() => Promise<void>> = [];

async function bring(
  name: string,
  envVar: string,
  load: () => Promise<Starter>,
  reasons: Record<string, string>,
) {
  if (process.env[envVar]) return process.env[envVar]!;
  if (process.env.DROVER_SERVERS === 'off') {
    reasons[name] = `DROVER_SERVERS=off and ${envVar} is not set`;
    return null;
  }
  try {
    const start = await load();
    const started = await start();
    stops.push(started.stop);
    return started.url;
  } catch (err) {
    if (process.env.CI) throw err;
    reasons[name] = `${name} could not be started: ${(err as Error).message}`;
    return null;
  }
}

export async function setup(project: TestProject) {
  const reasons: Record<string, string> = {};
  const [kafka, es, aws] = await Promise.all([
    bring(
      'kafka',
      'KAFKA_BROKERS',
      async () => (await import('./servers/kafka.ts')).startKafka,
      reasons,
    ),
    bring(
      'elasticsearch',
      'ELASTICSEARCH_URL',
      async () => (await import('./servers/elasticsearch.ts')).startElasticsearch,
      reasons,
    ),
    bring(
      'moto',
      'AWS_ENDPOINT_URL',
      async () => (await import('./servers/moto.ts')).startMoto,
      reasons,
    ),
  ]);
  project.provide('kafkaBrokers', kafka);
  project.provide('elasticsearchUrl', es);
  project.provide('awsEndpoint', aws);
  project.provide('serverSkipReasons', reasons);
}

export async function teardown() {
  await Promise.allSettled(stops.map((stop) => stop()));
}
