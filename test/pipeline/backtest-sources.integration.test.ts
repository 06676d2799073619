import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { normalize } from '../../ingest/model/index.ts';
import {
  BIN,
  killServes,
  serverEnv,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';
import {
  alertView as view,
  type AlertView,
  byAlert as order,
  FLEET_RULE_FILES,
  generateFleetStream,
} from '../support/fleet-stream.ts';

/**
 * `drover backtest --source elasticsearch` over what a real `drover serve` indexed gives
 * the alerts `drover backtest --data` gives on the NDJSON the events were sent as; paging
 * (point in time, or the scroll fallback) is exact at any page size, equal timestamps
 * included; the warm-up report says what each rule got.
 */
const RULES = FLEET_RULE_FILES;
const LATENESS = '30s';
const timeOf = (line: string) =>
  normalize(JSON.parse(line), { receivedAt: Number.NaN })['@timestamp'];

function drover(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...serverEnv(), ...env },
  });
  const alerts = r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => view(JSON.parse(l) as AlertView))
    .sort(order);
  const summaryLine = r.stderr.split('\n').find((l) => l.startsWith('{"summary"'));
  const summary = summaryLine
    ? (
        JSON.parse(summaryLine) as {
          summary: {
            events: number;
            badLines: number;
            lateEvents: number;
            readFrom?: string;
            warmup: Array<{ rule: string; needMs: number | null; gotMs: number; enough: boolean }>;
          };
        }
      ).summary
    : undefined;
  return { status: r.status, stderr: r.stderr, alerts, summary };
}

afterEach(killServes);

const esUrl = inject('elasticsearchUrl');
const reasons = inject('serverSkipReasons');

describe.skipIf(!esUrl)(
  `backtest --source elasticsearch${reasons.elasticsearch ? ` (skipped: ${reasons.elasticsearch})` : ''}`,
  () => {
    const run = `bts${randomUUID().slice(0, 8)}`;
    const client = new Client({ node: esUrl ?? 'http://127.0.0.1:1' });
    afterAll(async () => {
      await client.indices.delete({ index: `${run}*` }).catch(() => {});
      await client.close();
    });

    /** Sends the lines through a real `drover serve` on Elasticsearch; waits until indexed. */
    async function indexThroughServe(dir: string, lines: string[], prefix: string): Promise<void> {
      writeFileSync(
        join(dir, 'drover.yaml'),
        `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: embedded }
index: { kind: elasticsearch, prefix: ${prefix} }
rules: { paths: [rules], allowedLateness: ${LATENESS} }
snapshotEvery: 1h
`,
      );
      const { url } = await startServe(join(dir, 'drover.yaml'), {
        env: { ELASTICSEARCH_URL: esUrl! },
        timeoutMs: 90_000,
      });
      for (let i = 0; i < lines.length; i += 2_000) {
        const r = await fetch(`${url}/ingest`, {
          method: 'POST',
          body: lines.slice(i, i + 2_000).join('\n'),
        });
        expect(r.status).toBe(200);
      }
      await until(
        'the indexer to index every event',
        async () => {
          await client.indices.refresh({ index: `${prefix}-events-*` }).catch(() => {});
          const r = await client
            .count({ index: `${prefix}-events-*` })
            .catch(() => ({ count: -1 }));
          return r.count === lines.length ? true : undefined;
        },
        120_000,
      );
    }

    it('gives the alerts of the NDJSON the events were sent as, at any page size, by point in time and by scroll', async () => {
      const start = Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000;
      const stream = generateFleetStream({ seed: 20261203, start, minutes: 15 });
      // Two events with a fraction of a millisecond: the index keeps it (isoTime).
      const fractional = [
        JSON.stringify({
          '@timestamp': start + 400_000.25,
          message: 'heartbeat',
          'host.name': 'frac-1',
          'service.name': 'api',
        }),
        JSON.stringify({
          '@timestamp': start + 445_000.75,
          message: 'heartbeat',
          'host.name': 'frac-1',
          'service.name': 'api',
        }),
      ];
      // Each where its time falls in the stream, so neither is late in the file either.
      const lines = [...stream.lines];
      for (const line of fractional) {
        const t = timeOf(line);
        lines.splice(
          lines.findIndex((l) => timeOf(l) > t),
          0,
          line,
        );
      }
      const dir = workdir('drover-backtest-es-', RULES);
      const data = join(dir, 'fleet.ndjson');
      writeFileSync(data, `${lines.join('\n')}\n`);
      const prefix = `${run}a`;
      await indexThroughServe(dir, lines, prefix);

      const from = new Date(start + 5 * 60_000).toISOString();
      const rulesDir = join(dir, 'rules');
      const common = ['--rules', rulesDir, '--from', from, '--lateness', LATENESS];
      const fromFile = drover(['backtest', ...common, '--data', data, '--format', 'json']);
      expect(fromFile.summary!.badLines).toBe(0);
      expect(fromFile.alerts.length).toBeGreaterThan(2);
      // frac-1 went silent 45 s after its heartbeat at +400,000.25 ms: due at +445,000.25,
      // before its next one at +445,000.75 (then realert holds the second silence back).
      // Whole milliseconds (an index that dropped the fraction) put both at +445,000.
      expect(fromFile.alerts.filter((a) => a.key['host.name'] === 'frac-1')).toEqual([
        {
          rule: 'replica-silent',
          key: { 'host.name': 'frac-1' },
          at: new Date(start + 445_000).toISOString(),
        },
      ]);

      // The URL from the environment, the index prefix from serve's configuration.
      const es = [
        'backtest',
        ...common,
        '--source',
        'elasticsearch',
        '--config',
        join(dir, 'drover.yaml'),
        '--format',
        'json',
      ];
      const env = { ELASTICSEARCH_URL: esUrl! };
      for (const [method, size] of [
        ['auto', '1000'],
        ['pit', '7'],
        ['scroll', '7'],
      ] as const) {
        const fromEs = drover(es, {
          ...env,
          DROVER_BACKTEST_PAGE_SIZE: size,
          DROVER_BACKTEST_ES_METHOD: method,
        });
        expect(fromEs.status, fromEs.stderr).toBe(1);
        // The default warm-up is new_term's hour: it covers the whole stream.
        expect(fromEs.summary!.events).toBe(lines.length);
        expect(fromEs.summary!.readFrom).toBe(new Date(Date.parse(from) - 3_600_000).toISOString());
        expect(fromEs.alerts).toEqual(fromFile.alerts);
        expect(fromEs.summary!.warmup).toEqual(fromFile.summary!.warmup);
      }
      // Five minutes of history before --from: the windows of a minute or two got all
      // they need, new_term (1h) and nothing more.
      expect(fromFile.summary!.warmup).toEqual([
        { rule: 'host-error-burst', needMs: 60_000, gotMs: 60_000, enough: true },
        { rule: 'latency-high', needMs: 60_000, gotMs: 60_000, enough: true },
        {
          rule: 'new-stack-trace',
          needMs: 3_600_000,
          gotMs: Date.parse(from) - stream.first,
          enough: false,
        },
        { rule: 'replica-silent', needMs: 45_000, gotMs: 45_000, enough: true },
        { rule: 'service-error-spike', needMs: 120_000, gotMs: 120_000, enough: true },
      ]);

      // A warm-up of 90 s: the read starts there, and each rule got at most that.
      const short = drover([...es, '--warmup', '90s'], env);
      expect(short.summary!.readFrom).toBe(new Date(Date.parse(from) - 90_000).toISOString());
      const got = Object.fromEntries(short.summary!.warmup.map((w) => [w.rule, w.gotMs]));
      expect(got['new-stack-trace']).toBeLessThanOrEqual(90_000);
      expect(got['new-stack-trace']).toBeGreaterThan(85_000);
      expect(got['service-error-spike']).toBe(got['new-stack-trace']);
      expect(got['host-error-burst']).toBe(60_000);

      // rules diff reads the same source: the same rules on both sides differ in nothing,
      // over every event of the range; a rule removed on the head shows its alerts removed.
      const head = workdir('drover-backtest-es-head-', {
        'rules/host-error-burst.yaml': RULES['rules/host-error-burst.yaml']!,
      });
      const diffArgs = [
        'rules',
        'diff',
        '--base',
        rulesDir,
        '--from',
        from,
        '--lateness',
        LATENESS,
        '--source',
        'elasticsearch',
        '--config',
        join(dir, 'drover.yaml'),
      ];
      const same = spawnSync(process.execPath, [BIN, ...diffArgs, '--head', rulesDir], {
        encoding: 'utf8',
        env: { ...serverEnv(), ...env },
      });
      expect(same.status, same.stderr).toBe(0);
      expect(same.stderr).toContain(`${lines.length} events, 0 bad lines`);
      expect(same.stderr).toContain('0 rules differ');
      const removed = spawnSync(
        process.execPath,
        [BIN, ...diffArgs, '--head', join(head, 'rules'), '--format', 'json'],
        { encoding: 'utf8', env: { ...serverEnv(), ...env } },
      );
      expect(removed.status, removed.stderr).toBe(1);
      const lost = fromFile.alerts.filter((a) => a.rule !== 'host-error-burst').length;
      expect(removed.stderr).toContain(
        `base ${fromFile.alerts.length} alerts, head ${fromFile.alerts.length - lost} alerts`,
      );

      // The text report: a table on stderr.
      const text = spawnSync(
        process.execPath,
        [BIN, ...es.filter((a) => a !== '--format' && a !== 'json')],
        { encoding: 'utf8', env: { ...serverEnv(), ...env }, maxBuffer: 64 << 20 },
      );
      expect(text.stderr).toContain(`warm-up before ${from}:`);
      expect(text.stderr).toMatch(/new-stack-trace\s+needs 1h\s+got (?:5m|4m59s\d+ms) {2}short/);
      expect(text.stderr).toMatch(/read with point in time \+ search_after/);
    }, 300_000);

    it('pages exactly through thousands of events at one timestamp: none twice, none missed', async () => {
      // Three hours back: clear of the other test's events and of its warm-up.
      const t = Math.floor(Date.now() / 1_000) * 1_000 - 3 * 3_600_000;
      // One `any` rule keyed by seq: each event alerts once, so the alerts list the events.
      const dir = workdir('drover-backtest-es-ties-', {
        'rules/each.yaml': `name: each
type: any
query_key: seq
realert: 0s
`,
      });
      const lines: string[] = [];
      for (let i = 0; i < 1_500; i++)
        lines.push(JSON.stringify({ '@timestamp': t + (i < 1_000 ? 0 : 1), seq: i, message: 'x' }));
      const prefix = `${run}b`;
      await indexThroughServe(dir, lines, prefix);
      for (const method of ['pit', 'scroll']) {
        const r = drover(
          [
            'backtest',
            '--rules',
            join(dir, 'rules'),
            '--source',
            'elasticsearch',
            '--index',
            `${prefix}-events-*`,
            '--from',
            new Date(t).toISOString(),
            '--format',
            'json',
          ],
          {
            ELASTICSEARCH_URL: esUrl!,
            DROVER_BACKTEST_PAGE_SIZE: '64',
            DROVER_BACKTEST_ES_METHOD: method,
          },
        );
        expect(r.status, r.stderr).toBe(1);
        // The fleet test's events are outside this range; only these 1,500 are read.
        expect(r.summary!.events).toBe(1_500);
        const seqs = r.alerts.map((a) => a.key.seq as number).sort((a, b) => a - b);
        expect(seqs).toEqual(Array.from({ length: 1_500 }, (_, i) => i));
      }
    }, 300_000);

    it('a missing index or an unreachable server: a clear error, exit 2, no credentials', () => {
      const dir = workdir('drover-backtest-es-bad-', RULES);
      const prefix = `${run}c`;
      const args = ['backtest', '--rules', join(dir, 'rules'), '--source', 'elasticsearch'];
      const missing = drover([...args, '--index', `${prefix}-nothing-*`, '--from', '2026-01-01'], {
        ELASTICSEARCH_URL: esUrl!,
      });
      expect(missing.status).toBe(2);
      expect(missing.stderr).toContain(`no index matches "${prefix}-nothing-*"`);

      const down = drover([...args, '--from', '2026-01-01'], {
        ELASTICSEARCH_URL: 'http://elastic:s3cr3tpw@127.0.0.1:1',
      });
      expect(down.status).toBe(2);
      expect(down.stderr).toMatch(/drover backtest: elasticsearch http:\/\/\*\*\*@127\.0\.0\.1:1/);
      expect(down.stderr).not.toContain('s3cr3tpw');

      const noFrom = drover(args, { ELASTICSEARCH_URL: esUrl! });
      expect(noFrom.status).toBe(2);
      expect(noFrom.stderr).toContain('--source elasticsearch needs --from');
    });
  },
);

const brokers = inject('kafkaBrokers');

describe.skipIf(!brokers)(
  `backtest --source kafka${reasons.kafka ? ` (skipped: ${reasons.kafka})` : ''}`,
  () => {
    it('gives the alerts of the NDJSON the events were sent as, and moves no group', async () => {
      const prefix = `btk${randomUUID().slice(0, 8)}.`;
      const start = Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000;
      const stream = generateFleetStream({ seed: 20261204, start, minutes: 15 });
      const dir = workdir('drover-backtest-kafka-', RULES);
      const data = join(dir, 'fleet.ndjson');
      writeFileSync(data, `${stream.lines.join('\n')}\n`);
      const config = join(dir, 'drover.yaml');
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix} }
index: { kind: none }
rules: { paths: [rules], allowedLateness: ${LATENESS} }
snapshotEvery: 1h
`,
      );
      const served = await startServe(config, {
        env: { KAFKA_BROKERS: brokers! },
        timeoutMs: 90_000,
      });
      for (let i = 0; i < stream.lines.length; i += 2_000) {
        const r = await fetch(`${served.url}/ingest`, {
          method: 'POST',
          body: stream.lines.slice(i, i + 2_000).join('\n'),
        });
        expect(r.status).toBe(200);
      }
      const kafka = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      try {
        const topics = [`${prefix}logs`, `${prefix}metrics`];
        const published = async () => {
          let n = 0;
          for (const t of topics)
            for (const p of await admin.fetchTopicOffsets(t)) n += Number(p.high) - Number(p.low);
          return n;
        };
        expect(await published()).toBe(stream.lines.length);
        // The rules group has read it all, then serve stops: its offsets are what they are.
        await until(
          'the rules to drain the bus',
          async () => {
            const m = await (await fetch(`${served.url}/metrics`)).text();
            const lag = m
              .split('\n')
              .filter((l) => l.startsWith(`drover_bus_lag_messages{group="${prefix}rules"`));
            return lag.length > 0 && lag.every((l) => l.endsWith(' 0')) ? true : undefined;
          },
          120_000,
        );
        await stopServe(served);
        const groupOffsets = async () => {
          const { groups } = await admin.listGroups();
          const out: Record<string, unknown> = {};
          for (const g of groups.filter((g) => !g.groupId.startsWith('drover-backtest-')))
            for (const t of await admin.fetchOffsets({ groupId: g.groupId, topics }))
              for (const p of t.partitions)
                if (p.offset !== '-1') out[`${g.groupId} ${t.topic} ${p.partition}`] = p.offset;
          return out;
        };
        // Something else wrote to the topic: skipped and counted, the rest read.
        const producer = kafka.producer();
        await producer.connect();
        await producer.send({ topic: `${prefix}logs`, messages: [{ value: 'not json' }] });
        await producer.disconnect();
        const before = await groupOffsets();
        expect(Object.keys(before).length).toBeGreaterThan(0);

        const from = new Date(start + 5 * 60_000).toISOString();
        const common = ['--rules', join(dir, 'rules'), '--from', from, '--lateness', LATENESS];
        const fromFile = drover(['backtest', ...common, '--data', data, '--format', 'json']);
        expect(fromFile.alerts.length).toBeGreaterThan(2);
        for (const size of ['1000', '7']) {
          const fromKafka = drover(
            [
              'backtest',
              ...common,
              '--source',
              'kafka',
              '--topic',
              topics.join(','),
              '--config',
              config,
              '--format',
              'json',
            ],
            { KAFKA_BROKERS: brokers!, DROVER_BACKTEST_PAGE_SIZE: size },
          );
          expect(fromKafka.status, fromKafka.stderr).toBe(1);
          expect(fromKafka.stderr).toContain('messages were not events with a @timestamp: skipped');
          expect(fromKafka.summary!.events).toBe(stream.lines.length);
          expect(fromKafka.alerts).toEqual(fromFile.alerts);
          expect(fromKafka.summary!.warmup).toEqual(fromFile.summary!.warmup);
        }
        expect(await groupOffsets()).toEqual(before);

        const missing = drover(
          ['backtest', ...common, '--source', 'kafka', '--topic', `${prefix}nothing`],
          { KAFKA_BROKERS: brokers! },
        );
        expect(missing.status).toBe(2);
        expect(missing.stderr).toContain(`no topic "${prefix}nothing"`);
      } finally {
        await admin.disconnect();
      }
    }, 300_000);
  },
);
