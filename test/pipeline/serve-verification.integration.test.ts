import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import {
  adminHeaders,
  errorLine,
  killServes,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';
import {
  FLEET_ADAPTER,
  VERIFICATION_RULES,
  type VerifiedEntry as Entry,
} from '../support/verification-fleet.ts';

/**
 * The closed loop on the other back ends: `drover serve` on Kafka (rules in tasks, each
 * with its own engine and watermark) with the index, the alerts and the journal on
 * Elasticsearch. Two real replicas are replaced (the process adapter): one alert resolves
 * within its window (effective), the other does not (ineffective, escalated through
 * on_ineffective to a notify action); the journal read back from Elasticsearch holds
 * both outcomes, and `GET /v1/alerts/ID` explains the ineffective one, verification
 * included.
 */
const brokers = inject('kafkaBrokers');
const esUrl = inject('elasticsearchUrl');
const reasons = inject('serverSkipReasons');
const skip = [reasons.kafka, reasons.elasticsearch].filter(Boolean).join('; ');

afterEach(killServes);

describe.skipIf(!brokers || !esUrl)(
  `drover serve on Kafka and Elasticsearch: verification${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const prefix = `v${randomUUID().slice(0, 8)}`;
    afterAll(async () => {
      const es = new Client({ node: esUrl! });
      await es.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es.close();
    });

    it('journals effective and ineffective to Elasticsearch and explains them', async () => {
      const dir = workdir('drover-serve-verify-kafka-', VERIFICATION_RULES);
      const config = join(dir, 'drover.yaml');
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix}. }
index: { kind: elasticsearch, prefix: ${prefix} }
rules: { paths: [rules], allowedLateness: 1s }
guards: { cooldown: 0s }
adapters:
  pager: { type: exec, command: "${process.execPath}", args: ["-e", "0"] }
${FLEET_ADAPTER}actions: { store: elasticsearch, prefix: ${prefix} }
`,
      );
      const served = await startServe(config, {
        env: { KAFKA_BROKERS: brokers!, ELASTICSEARCH_URL: esUrl! },
        timeoutMs: 90_000,
      });
      const now = Date.now();
      const body = `${errorLine('web-1', now)}\n${errorLine('web-2', now)}\n`;
      expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
      const journal = async () => {
        const res = await fetch(`${served.url}/v1/actions?limit=50`);
        // A loaded Elasticsearch may answer an error: ask again until the deadline.
        return res.status === 200 ? ((await res.json()) as { decisions: Entry[] }).decisions : [];
      };
      const verified = (entries: Entry[], name: string) =>
        entries.find((d) => d.rule === name && d.decision === 'executed' && d.verification);
      const j = await until(
        'both verifications ended',
        async () => {
          const entries = await journal();
          return verified(entries, 'replace-helps')?.verification?.outcome === 'effective' &&
            verified(entries, 'replace-does-not-help')?.verification?.outcome === 'ineffective' &&
            entries.some((d) => d.id.endsWith('/ineffective') && d.decision === 'executed')
            ? entries
            : undefined;
        },
        60_000,
      );
      const failed = verified(j, 'replace-does-not-help')!;
      expect(failed).toMatchObject({ target: 'web-2', verification: { outcome: 'ineffective' } });

      const admin = { authorization: adminHeaders(join(dir, 'state')).authorization! };
      const chain = (await (
        await fetch(`${served.url}/v1/alerts/${failed.alertId}`, { headers: admin })
      ).json()) as { states: Array<{ state: string }>; decisions: Entry[] };
      expect(chain.states.map((s) => s.state)).toEqual(['firing']);
      expect(chain.decisions.map((d) => [d.decision, d.verification?.outcome])).toEqual(
        expect.arrayContaining([
          ['executed', 'ineffective'],
          ['executed', undefined],
        ]),
      );
      const metrics = await (await fetch(`${served.url}/metrics`)).text();
      expect(metrics).toMatch(/^drover_remediation_verifications_total\{outcome="effective"\} 1$/m);
      expect(metrics).toMatch(
        /^drover_remediation_verifications_total\{outcome="ineffective"\} 1$/m,
      );
      expect(await stopServe(served)).toBe(0);
    }, 150_000);
  },
);
