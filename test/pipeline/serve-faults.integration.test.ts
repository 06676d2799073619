import { spawn } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client } from '@elastic/elasticsearch';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { openSqlite } from '../../ingest/storage/sqlite.ts';
import { readCheckpointHead } from '../../pipeline/checkpoint-store.ts';
import {
  BIN,
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  serverEnv,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

afterAll(killServes);

const esUrl = inject('elasticsearchUrl');
const esSkip = inject('serverSkipReasons').elasticsearch;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Runs an alert whose action sleeps, kills drover serve while it runs, and restarts it:
 * the snapshot must have stayed behind the alert, and the replay must not act again.
 * `store` is a line of configuration for the action store (none: SQLite).
 */
async function snapshotBehindRemediation(store = '', env: NodeJS.ProcessEnv = {}) {
  const dir = workdir('drover-faults-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
  const acted = join(dir, 'acted.txt');
  const config = join(dir, 'drover.yaml');
  writeFileSync(
    config,
    `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
snapshotEvery: 100ms${store}
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}; sleep 5"] }
guards: { cooldown: 0s }
`,
  );
  let run = await startServe(config, { env });
  const t = Date.now();
  const body = [0, 1, 2].map((i) => errorLine('web-1', t + i)).join('\n');
  expect((await fetch(`${run.url}/ingest`, { method: 'POST', body })).status).toBe(200);
  // The action has started (and sleeps): the claim is made, the journal entry is not.
  await until('the action to start', () => existsSync(acted));
  await new Promise((r) => setTimeout(r, 600));
  run.child.kill('SIGKILL');
  await new Promise((r) => run.child.once('exit', r));
  const offset = readCheckpointHead(join(dir, 'state', 'rules-state.db'))?.offsets['logs/0'];
  // Six intervals passed while the action ran: none of them moved past the alert.
  expect(offset ?? 0).toBeLessThan(3);

  // Restarted: the alert is replayed, and the claim turns the duplicate away.
  run = await startServe(config, { env });
  await new Promise((r) => setTimeout(r, 2_000));
  expect(readFileSync(acted, 'utf8').trim().split('\n')).toEqual(['web-1']);
  const journal = (await (await fetch(`${run.url}/v1/actions`)).json()) as {
    decisions: Array<{ decision: string; guard?: string; error?: string }>;
  };
  expect(journal.decisions.filter((d) => d.decision === 'executed')).toEqual([]);
  expect(journal.decisions.some((d) => /^interrupted/.test(d.error ?? ''))).toBe(true);
}

describe('faults degrade, never crash', () => {
  it('a failed snapshot write or an unreadable rule file is logged, counted and survived', async () => {
    const dir = workdir('drover-faults-', {
      'rules/errors.yaml': HOST_ERROR_BURST_RULE,
      'drover.yaml': `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules] }
snapshotEvery: 100ms
adapters:
  script: { type: exec, command: /bin/true }
`,
    });
    const run = await startServe(join(dir, 'drover.yaml'));
    const snapshot = join(dir, 'state', 'rules-state.db');
    await until('a first snapshot', () => readCheckpointHead(snapshot) !== undefined);
    // The checkpoint's head cannot be written (as on a full disk): another connection
    // makes SQLite refuse it.
    const other = openSqlite(snapshot);
    other.exec(`CREATE TRIGGER refuse_insert BEFORE INSERT ON meta BEGIN SELECT RAISE(ABORT, 'full'); END;
      CREATE TRIGGER refuse_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'full'); END;`);
    const faults = async (kind: string) => {
      const text = await (await fetch(`${run.url}/metrics`)).text();
      return Number(
        new RegExp(`drover_faults_total\\{kind="${kind}"\\} (\\d+)`).exec(text)?.[1] ?? 0,
      );
    };
    await until(
      'failed snapshot writes to be counted',
      async () => (await faults('snapshot')) >= 2,
    );
    expect(run.child.exitCode).toBeNull();
    expect(run.log()).toMatch(/the rule snapshot could not be written; retrying/);
    // Once the disk has room again, the next interval writes it.
    other.exec('DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;');
    other.close();
    const before = Date.now();
    await until('a fresh snapshot', () => (readCheckpointHead(snapshot)?.at ?? 0) >= before);

    // SIGHUP with a rule file that cannot be read: the running rules stay.
    symlinkSync(join(dir, 'gone.yaml'), join(dir, 'rules', 'broken.yaml'));
    run.child.kill('SIGHUP');
    await until('the rejected reload to be counted', async () => (await faults('reload')) >= 1);
    expect(run.child.exitCode).toBeNull();
    const rules = (await (await fetch(`${run.url}/v1/rules`)).json()) as { rules: unknown[] };
    expect(rules.rules).toHaveLength(1);
    expect(run.log()).toMatch(/rule reload rejected; the running rules stay/);
  }, 90_000);

  it('a failed start stops what it started (supervised replicas too) and exits non-zero', async () => {
    const dir = workdir('drover-faults-', {
      'rules/errors.yaml': HOST_ERROR_BURST_RULE.replace('adapter: script', 'adapter: fleet'),
    });
    const pidFile = join(dir, 'replica.pid');
    const replica = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); require('http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1')`;
    const config = join(dir, 'drover.yaml');
    // Every interface and no token: refused, but only once the replicas are up.
    const yaml = `stateDir: state
listen: { host: 0.0.0.0, port: 0, statsdPort: false }
rules: { paths: [rules] }
adapters:
  fleet:
    type: process
    services:
      web: { command: ${JSON.stringify(process.execPath)}, args: ['-e', ${JSON.stringify(replica)}], replicas: 1, readiness: listen }
`;
    writeFileSync(config, yaml);
    const child = spawn(process.execPath, [BIN, 'serve', '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: serverEnv(),
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 60_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(log).toMatch(/refusing to listen on 0\.0\.0\.0/);
    expect(code, log).not.toBeNull();
    expect(code).not.toBe(0);
    expect(existsSync(pidFile), log).toBe(true);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const gone = await until('the replica to be gone', () => !alive(pid), 5_000).catch(() => false);
    if (!gone) process.kill(pid, 'SIGKILL');
    expect(gone).toBe(true);
  }, 90_000);

  it('a snapshot stays behind an alert whose remediation is in flight, so a crash replays it once', async () => {
    await snapshotBehindRemediation();
  }, 90_000);
});

describe.skipIf(!esUrl)(
  `faults with actions.store elasticsearch${esSkip ? ` (skipped: ${esSkip})` : ''}`,
  () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    afterAll(async () => {
      const es = new Client({ node: esUrl! });
      await es.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es.indices.deleteIndexTemplate({ name: `${prefix}-*` }).catch(() => {});
      await es.close();
    });

    it('a snapshot stays behind an alert whose remediation is in flight, so a crash replays it once', async () => {
      // The store's URL comes from the file alone, not from the environment.
      await snapshotBehindRemediation(
        `\nactions: { store: elasticsearch, url: "${esUrl}", prefix: ${prefix} }`,
        { ELASTICSEARCH_URL: undefined },
      );
    }, 90_000);
  },
);
