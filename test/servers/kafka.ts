import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import {
  cacheDir,
  freePort,
  mavenFetch,
  run,
  startProcess,
  startRetrying,
  stopProcess,
  waitFor,
} from './common.ts';

/**
 * A real single-node Kafka in KRaft mode (no ZooKeeper), from the broker jars on
 * Maven Central. The current major by default; DROVER_TEST_KAFKA_VERSION picks another
 * (CI's compatibility run uses the previous major, 3.9.1). kafkajs negotiates each API
 * below its own maxima, and `test/ingest/bus/kafka-api-versions.integration.test.ts` fails when a
 * version it sends falls below a broker's minimum.
 */
/** The version `npm test` runs and `deploy/` ships. */
export const DEFAULT_VERSION = '4.4.0';
export const VERSION = process.env.DROVER_TEST_KAFKA_VERSION ?? DEFAULT_VERSION;
/** The SLF4J API both 3.9 and 4.x brokers are built against. */
const SLF4J = '1.7.36';

/** A KRaft cluster id: 16 random bytes, base64url — never starting with "-", which the tool would read as an option. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

export interface StartedKafka {
  url: string;
  stop(): Promise<void>;
  /**
   * With `startKafka({ cuttable: true })`: a second listener whose advertised address is
   * `advertised` (a port nothing listens on yet) while the broker listens on `target`.
   * A client bootstrapped at `advertised` is told to reach the broker there for every
   * request, so a TCP relay on that port (test/support/net-cut.ts) carries all of its
   * traffic, and cutting the relay cuts that client, and only it, off the broker.
   */
  cuttable?: { advertised: number; target: number };
}

export function startKafka(options: { cuttable?: boolean } = {}): Promise<StartedKafka> {
  return startRetrying(() => startOnce(options));
}

async function startOnce(options: { cuttable?: boolean }): Promise<StartedKafka> {
  const home = cacheDir(`kafka-${VERSION}`);
  // The broker logs through SLF4J 1.7 and ships no binding: without one it logs nothing
  // at all, and a failed start is a mute timeout. slf4j-simple writes to its stderr,
  // which goes to kafka.log (named in every start-up error).
  mavenFetch(
    home,
    `<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>${SLF4J}</version></dependency>`,
    join('libs', `slf4j-simple-${SLF4J}.jar`),
  );
  const data = mkdtempSync(join(tmpdir(), 'drover-kafka-'));
  const [broker, controller] = [await freePort(), await freePort()];
  const cuttable = options.cuttable
    ? { advertised: await freePort(), target: await freePort() }
    : undefined;
  const config = join(data, 'server.properties');
  writeFileSync(
    config,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controller}`,
      `listeners=PLAINTEXT://127.0.0.1:${broker},CONTROLLER://127.0.0.1:${controller}${cuttable ? `,CUT://127.0.0.1:${cuttable.target}` : ''}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${broker}${cuttable ? `,CUT://127.0.0.1:${cuttable.advertised}` : ''}`,
      'controller.listener.names=CONTROLLER',
      `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${cuttable ? ',CUT:PLAINTEXT' : ''}`,
      'inter.broker.listener.name=PLAINTEXT',
      `log.dirs=${join(data, 'logs')}`,
      'num.partitions=1',
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
    ].join('\n'),
  );
  const classpath = join(home, 'libs', '*');
  run(
    'java',
    ['-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', clusterId(), '-c', config],
    data,
  );
  const child = startProcess(
    'java',
    [
      '-Xms256m',
      '-Xmx512m',
      '-Dorg.slf4j.simpleLogger.defaultLogLevel=info',
      '-Dorg.slf4j.simpleLogger.showDateTime=true',
      '-cp',
      classpath,
      'kafka.Kafka',
      config,
    ],
    {
      cwd: data,
      logFile: join(data, 'kafka.log'),
    },
  );
  const url = `127.0.0.1:${broker}`;
  try {
    await waitFor(
      `Kafka on ${url} (log: ${join(data, 'kafka.log')})`,
      async () => {
        // Drover's kafkajs (its idle timer fixed), as the code under test uses it.
        const { Kafka, logLevel } = kafkajs();
        const admin = new Kafka({
          clientId: 'drover-test-setup',
          brokers: [url],
          logLevel: logLevel.NOTHING,
          retry: { retries: 0 },
        }).admin();
        await admin.connect();
        try {
          const cluster = await admin.describeCluster();
          return cluster.brokers.length > 0;
        } finally {
          await admin.disconnect();
        }
      },
      120_000,
      child,
    );
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return {
    url,
    ...(cuttable && { cuttable }),
    async stop() {
      await stopProcess(child);
      rmSync(data, { recursive: true, force: true });
    },
  };
}
