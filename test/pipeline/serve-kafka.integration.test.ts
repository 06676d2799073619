import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import {
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

const brokers = inject('kafkaBrokers');
const esUrl = inject('elasticsearchUrl');
const reasons = inject('serverSkipReasons');
const skip = [reasons.kafka, reasons.elasticsearch].filter(Boolean).join('; ');

afterEach(killServes);

// Kafka start-up may wait out a killed member's session (30 s) before rewinding.
const serve = (config: string) =>
  startServe(config, {
    env: { KAFKA_BROKERS: brokers!, ELASTICSEARCH_URL: esUrl! },
    timeoutMs: 90_000,
  });

describe.skipIf(!brokers || !esUrl)(
  `drover serve on Kafka and Elasticsearch${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const prefix = `s${randomUUID().slice(0, 8)}`;
    const client = new Client({ node: esUrl ?? 'http://127.0.0.1:1' });
    afterAll(async () => {
      await client.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await client.close();
    });

    it('a kill -9 mid-incident replays from Kafka: no window lost, no action repeated, the alert indexed once', async () => {
      const dir = workdir('drover-serve-kafka-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
      const acted = join(dir, 'acted.txt');
      const config = join(dir, 'drover.yaml');
      // No snapshot is taken before the kills: the state must come back from Kafka alone.
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix}. }
index: { kind: elasticsearch, prefix: ${prefix} }
rules: { paths: [rules], allowedLateness: 1s }
snapshotEvery: 1h
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s }
`,
      );
      let run = await serve(config);
      const t = Date.now();
      await fetch(`${run.url}/ingest`, {
        method: 'POST',
        body: [errorLine('web-1', t), errorLine('web-1', t + 1)].join('\n'),
      });
      // Both consumed by the rules (and so committed by the group) before the kill.
      await until('the rules to hold web-1', async () => {
        const r = (await (await fetch(`${run.url}/v1/rules`)).json()) as {
          rules: Array<{ keys: number }>;
        };
        return r.rules[0]!.keys > 0 ? true : undefined;
      });
      await new Promise((r) => setTimeout(r, 1_000));
      run.child.kill('SIGKILL');
      await new Promise((r) => run.child.once('exit', r));

      run = await serve(config);
      await fetch(`${run.url}/ingest`, { method: 'POST', body: errorLine('web-1', t + 2) });
      await until('the executed action', async () => {
        const r = (await (await fetch(`${run.url}/v1/actions`)).json()) as {
          decisions: Array<{ decision: string }>;
        };
        return r.decisions.some((d) => d.decision === 'executed') ? true : undefined;
      });

      // Killed again after acting: the replay fires the same alert; the claim holds.
      run.child.kill('SIGKILL');
      await new Promise((r) => run.child.once('exit', r));
      run = await serve(config);
      await until('the replayed alert', async () => {
        const r = (await (await fetch(`${run.url}/v1/alerts`)).json()) as { alerts: unknown[] };
        return r.alerts.length > 0 ? true : undefined;
      });
      await new Promise((r) => setTimeout(r, 1_000));
      run.child.kill('SIGTERM');
      await new Promise((r) => run.child.once('exit', r));

      expect(readFileSync(acted, 'utf8').trim().split('\n')).toEqual(['web-1']);
      const store = openActionStore(join(dir, 'state', 'actions.db'));
      const decisions = store.list();
      store.close();
      expect(decisions.filter((d) => d.decision === 'executed')).toHaveLength(1);
      // The alert reached Elasticsearch once, keyed by its id, for Kibana.
      await client.indices.refresh({ index: `${prefix}-alerts*` });
      const alerts = await client.search({ index: `${prefix}-alerts*` });
      expect(alerts.hits.hits.map((h) => (h._source as { rule: string }).rule)).toEqual([
        'host-error-burst',
      ]);
    }, 240_000);
  },
);
