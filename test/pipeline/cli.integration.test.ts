import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { serverEnv } from '../support/drover.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');

function drover(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = mkdtempSync(join(tmpdir(), 'drover-cli-'));

const esUrl = inject('elasticsearchUrl');
const esReason = inject('serverSkipReasons').elasticsearch;

describe.skipIf(!esUrl)(
  `drover actions with the Elasticsearch store${esReason ? ` (skipped: ${esReason})` : ''}`,
  () => {
    it('reads and flips the store drover serve is configured with', async () => {
      const { createElasticsearchStore } = await import('../../actions/index.ts');
      const prefix = `c${randomUUID().slice(0, 8)}`;
      const config = join(dir, `es-${prefix}.yaml`);
      writeFileSync(
        config,
        `actions: { store: elasticsearch, url: ${esUrl}, prefix: ${prefix} }\n`,
      );
      expect(drover(['actions', 'kill-switch', 'on', '--config', config]).stdout).toContain(
        'kill switch is on',
      );
      const store = await createElasticsearchStore({ node: esUrl!, prefix });
      expect(await store.killSwitch()).toBe(true);
      await store.record({
        id: 'e1#0',
        at: Date.parse('2024-01-01T00:00:00Z'),
        alertId: 'e1',
        rule: 'r-es',
        key: { 'host.name': 'web-9' },
        adapter: 'fleet',
        operation: 'kill-and-replace',
        target: 'web-9',
        decision: 'failed',
        error: 'adapter timed out',
      });
      await store.close();
      const listed = drover(['actions', 'list', '--config', config, '--format', 'json'])
        .stdout.trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: string; decision: string; error: string });
      expect(listed.map((d) => [d.id, d.decision, d.error])).toEqual([
        ['e1#0', 'failed', 'adapter timed out'],
      ]);
      expect(drover(['actions', 'list', '--config', config, '--db', 'x.db']).code).toBe(2);
    }, 60_000);
  },
);
