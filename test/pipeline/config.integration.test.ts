import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { ElasticsearchStore } from '../../actions/index.ts';
import {
  adminHeaders,
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

const url = inject('elasticsearchUrl');
const reason = inject('serverSkipReasons').elasticsearch;

afterEach(killServes);

describe.skipIf(!url)(
  `drover serve with actions.store elasticsearch${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const es = url ? new Client({ node: url }) : undefined;
    afterAll(async () => {
      await es?.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es?.indices.deleteIndexTemplate({ name: `${prefix}-*` }).catch(() => {});
      await es?.close();
    });

    // The store's URL comes from the file alone here, not from the environment.
    const serve = async (config: string) => {
      const run = await startServe(config, { env: { ELASTICSEARCH_URL: undefined } });
      expect(run.log()).toMatch(/"actions":"elasticsearch"/);
      return run;
    };

    it('acts, journals to Elasticsearch, reports an interrupted claim, and serves the store over its API', async () => {
      const dir = workdir('drover-serve-es-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
      const acted = join(dir, 'acted.txt');
      const config = join(dir, 'drover.yaml');
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
index: { kind: none }
actions: { store: elasticsearch, url: "${url}", prefix: ${prefix} }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s }
`,
      );
      // A worker died between claiming and journaling.
      const other = await new ElasticsearchStore({ node: url!, prefix }).init();
      await other.claim('lost-alert#0', Date.now());

      const run = await serve(config);
      type Journal = { decisions: Array<{ id: string; decision: string; error?: string }> };
      const journal = async () =>
        ((await (await fetch(`${run.url}/v1/actions`)).json()) as Journal).decisions;
      expect(await journal()).toMatchObject([
        { id: 'lost-alert#0', decision: 'failed', error: expect.stringMatching(/^interrupted/) },
      ]);

      const t = Date.now();
      const body = [0, 1, 2].map((i) => errorLine('web-7', t + i)).join('\n');
      expect((await fetch(`${run.url}/ingest`, { method: 'POST', body })).status).toBe(200);
      await until('an executed action', async () =>
        (await journal()).some((d) => d.decision === 'executed'),
      );
      expect(readFileSync(acted, 'utf8').trim()).toBe('web-7');
      // Another worker on the same prefix sees the decision.
      expect((await other.list()).map((d) => d.decision).sort()).toEqual(['executed', 'failed']);

      const headers = adminHeaders(join(dir, 'state'));
      const put = await fetch(`${run.url}/v1/kill-switch`, {
        method: 'PUT',
        headers,
        body: '{"on":true}',
      });
      expect(await put.json()).toEqual({ on: true });
      expect(await other.killSwitch()).toBe(true);
      expect(await (await fetch(`${run.url}/v1/kill-switch`)).json()).toEqual({ on: true });

      const added = await fetch(`${run.url}/v1/silences`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          matchers: { rule: 'host-error-burst' },
          until: new Date(Date.now() + 86_400_000).toISOString(),
        }),
      });
      expect(added.status).toBe(201);
      const { id } = (await added.json()) as { id: string };
      const listed = (await (await fetch(`${run.url}/v1/silences`)).json()) as {
        silences: Array<{ id: string }>;
      };
      expect(listed.silences.map((s) => s.id)).toEqual([id]);
      const remove = { method: 'DELETE', headers: { authorization: headers.authorization! } };
      expect((await fetch(`${run.url}/v1/silences/${id}`, remove)).status).toBe(204);
      expect((await fetch(`${run.url}/v1/silences/${id}`, remove)).status).toBe(404);
      await other.close();
    }, 60_000);
  },
);
