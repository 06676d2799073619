import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

describe.skipIf(!brokers)(
  `drover serve --roles on Kafka${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('an ingest-only serve publishes; an index+rules+actions serve indexes, alerts and acts', async () => {
      const prefix = `r${randomUUID().slice(0, 8)}`;
      const dir = workdir('drover-roles-kafka-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
      const acted = join(dir, 'acted.txt');
      const config = join(dir, 'drover.yaml');
      // One configuration for both processes, as an operator would deploy them.
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: 0 }
bus: { kind: kafka, topicPrefix: ${prefix}. }
index: { kind: embedded }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s }
`,
      );
      const env = { KAFKA_BROKERS: brokers! };
      const worker = await startServe(config, {
        env,
        args: ['--roles', 'index,rules,actions'],
        timeoutMs: 90_000,
      });
      // Its own state directory, to show what it leaves there: no snapshot, no stores.
      const ingestState = join(dir, 'ingest-state');
      const ingest = await startServe(config, {
        env: { ...env, DROVER_STATE_DIR: ingestState },
        args: ['--roles', 'ingest'],
        timeoutMs: 90_000,
      });
      expect(ingest.log()).toMatch(/"roles":\["ingest"\]/);
      // statsd (a random port here) is an ingest listener: only the ingest replica has it.
      expect(ingest.log()).toMatch(/"statsdPort":[1-9]\d*,/);
      expect(worker.log()).toMatch(/"statsdPort":false,/);

      const t = Date.now();
      const posted = await fetch(`${ingest.url}/ingest`, {
        method: 'POST',
        body: [0, 1, 2].map((i) => errorLine('web-1', t + i)).join('\n'),
      });
      expect(posted.status).toBe(200);

      // The worker opened no ingest listener; the control API stays.
      expect((await fetch(`${worker.url}/ingest`, { method: 'POST', body: '{}' })).status).toBe(
        404,
      );
      expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
      // The ingest replica runs no rules and no remediation, and says where they are.
      const rules = await fetch(`${ingest.url}/v1/rules`);
      expect(rules.status).toBe(404);
      expect(((await rules.json()) as { error: string }).error).toMatch(
        /runs the roles ingest: \/v1\/rules is served where the rules role runs/,
      );
      expect((await fetch(`${ingest.url}/v1/actions`)).status).toBe(404);
      const ingestMetrics = await fetch(`${ingest.url}/metrics`);
      expect(ingestMetrics.status).toBe(200);
      // A group's lag is read (requests to the broker) and shown only where its role runs.
      const lagGroups = (text: string) =>
        [...text.matchAll(/^drover_bus_lag_messages\{group="([^"]+)"/gm)].map((m) => m[1]);
      expect(lagGroups(await ingestMetrics.text())).toEqual([]);
      expect(new Set(lagGroups(await (await fetch(`${worker.url}/metrics`)).text()))).toEqual(
        // host-error-burst is keyed by host.name: the global task's group too.
        new Set([`${prefix}.rules`, `${prefix}.rules-global`, `${prefix}.indexer`]),
      );

      // Indexed by the worker.
      await until('the events indexed by the worker', async () => {
        const r = (await (await fetch(`${worker.url}/v1/search?q=failed`)).json()) as {
          total: number;
        };
        return r.total === 3 ? true : undefined;
      });
      // Alerted and acted on by the worker.
      await until('the alert', async () => {
        const r = (await (await fetch(`${worker.url}/v1/alerts`)).json()) as {
          alerts: Array<{ rule: string }>;
        };
        return r.alerts.some((a) => a.rule === 'host-error-burst') ? true : undefined;
      });
      await until('the action', () => existsSync(acted));
      expect(readFileSync(acted, 'utf8').trim()).toBe('web-1');

      expect(await stopServe(ingest)).toBe(0);
      expect(await stopServe(worker)).toBe(0);
      // The ingest replica took no snapshot and opened no store; the worker snapshotted
      // its tasks to the changelog on Kafka (not to its state directory).
      expect(readdirSync(ingestState)).toEqual(['admin-token']);
      expect(existsSync(join(dir, 'state', 'rules-snapshot.json'))).toBe(false);
      expect(existsSync(join(dir, 'state', 'rules-state.db'))).toBe(false);
      const admin = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const heads = await admin.fetchTopicOffsets(`${prefix}.rules-state`);
      await admin.disconnect();
      expect(heads.reduce((n, p) => n + Number(p.high), 0)).toBeGreaterThan(0);
    }, 240_000);
  },
);
