import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import {
  adminHeaders,
  BIN,
  errorLine,
  hostFatalRule,
  killServes,
  serverEnv,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';

/**
 * Explaining an alert on the Elasticsearch back ends: a real `drover serve` with its
 * journal on Elasticsearch (actions.store) and the alerts index family beside it; the
 * alert fires, acts through a real exec adapter and resolves; after the server stopped,
 * `drover explain --config` reads the chain back from Elasticsearch alone, and the
 * alerts index holds the firing and the resolution as `state` documents.
 */
const esUrl = inject('elasticsearchUrl');
const esSkip = inject('serverSkipReasons').elasticsearch;

afterEach(() => killServes());

describe.skipIf(!esUrl)(
  `drover explain on Elasticsearch${esSkip ? ` (skipped: ${esSkip})` : ''}`,
  () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    afterAll(async () => {
      const es = new Client({ node: esUrl! });
      await es.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es.indices.deleteIndexTemplate({ name: `${prefix}-*` }).catch(() => {});
      await es.close();
    });

    it('the chain of an alert, its resolution and its action, after the server stopped', async () => {
      const dir = workdir('drover-explain-es-', {
        'rules/fatal.yaml': hostFatalRule(
          '{ adapter: script, operation: kill-and-replace, target: "{{ host.name }}" }',
          ['realert: 1s', 'resolve_after: 1s'],
        ),
      });
      const config = join(dir, 'drover.yaml');
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: ${process.execPath}, args: ["-e", "0"] }
actions: { store: elasticsearch, url: "${esUrl}", prefix: ${prefix} }
`,
      );
      const served = await startServe(config);
      const body = errorLine('web-1', Date.now());
      expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
      const admin = { authorization: adminHeaders(join(dir, 'state')).authorization! };
      const chain = await until(
        'the alert explained, resolved and acted on',
        async () => {
          const listed = await fetch(`${served.url}/v1/actions`);
          // An error answer (a loaded Elasticsearch): ask again until the deadline.
          if (listed.status !== 200) return undefined;
          const r = (await listed.json()) as { decisions: Array<{ alertId: string }> };
          const id = r.decisions[0]?.alertId;
          if (!id) return undefined;
          const res = await fetch(`${served.url}/v1/alerts/${id}`, { headers: admin });
          if (res.status !== 200) return undefined;
          const c = (await res.json()) as {
            id: string;
            states: Array<{ state: string }>;
            decisions: Array<{ verification?: { outcome: string } }>;
          };
          // Resolved, and the replacement's verification settled by that resolution (read
          // before, the chain would change under the comparison with the CLI's below).
          return c.states.length === 2 && c.decisions[0]?.verification?.outcome === 'effective'
            ? c
            : undefined;
        },
        30_000,
      );
      expect(chain.states.map((s) => s.state)).toEqual(['firing', 'resolved']);
      expect(chain.decisions).toEqual([
        expect.objectContaining({
          decision: 'executed',
          adapter: 'script',
          target: 'web-1',
          verification: expect.objectContaining({ outcome: 'effective', by: 'resolution' }),
        }),
      ]);
      expect(await stopServe(served)).toBe(0);

      const out = spawnSync(
        process.execPath,
        [BIN, 'explain', chain.id, '--config', config, '--format', 'json'],
        { encoding: 'utf8', env: serverEnv(), cwd: dir },
      );
      expect(out.status, out.stderr).toBe(0);
      const read = JSON.parse(out.stdout) as typeof chain & {
        explanation: { rule: { name: string; file: string }; events: Array<{ message?: string }> };
        alert: { rule: string };
      };
      expect(read).toEqual(
        expect.objectContaining({ id: chain.id, states: chain.states, decisions: chain.decisions }),
      );
      expect(read.alert.rule).toBe('host-fatal');
      expect(read.explanation.rule.file).toMatch(/rules\/fatal\.yaml$/);
      expect(read.explanation.events.map((e) => e.message)).toEqual(['failed']);

      // The alerts index family charts alert state over time.
      const es = new Client({ node: esUrl! });
      try {
        await es.indices.refresh({ index: `${prefix}-alerts*` });
        const states = await es.search<{ state: string }>({
          index: `${prefix}-alerts*`,
          query: { match_all: {} },
          aggs: { states: { terms: { field: 'state' } } },
          size: 0,
        });
        const buckets = (
          states.aggregations!.states as { buckets: Array<{ key: string; doc_count: number }> }
        ).buckets;
        expect(Object.fromEntries(buckets.map((b) => [b.key, b.doc_count]))).toEqual({
          firing: 1,
          resolved: 1,
        });
      } finally {
        await es.close();
      }
    }, 90_000);
  },
);
