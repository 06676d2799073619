import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  errorLine,
  hostFatalRule,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

/**
 * A stop that cannot finish (here a remediation command that outlives it) ends at
 * `shutdownTimeout`: `drover serve` logs the step it was in and exits with status 1,
 * instead of staying up until the command ends.
 */
afterEach(killServes);

describe('drover serve: a bounded stop', () => {
  it('exits at shutdownTimeout, non-zero, naming the step that hung', async () => {
    const dir = workdir('drover-serve-shutdown-', {
      'rules/fatal.yaml': hostFatalRule(
        '{ adapter: slow, operation: kill-and-replace, target: "{{ host.name }}" }',
      ),
    });
    const started = join(dir, 'started');
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
shutdownTimeout: 2s
adapters:
  slow: { type: exec, command: /bin/sh, args: ["-c", "touch ${started}; sleep 60"], timeoutMs: 120000 }
`,
    );
    const served = await startServe(config);
    const body = errorLine('web-1', Date.now());
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    await until('the remediation command to start', () => existsSync(started), 30_000);
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => served.child.once('exit', (c) => r(c)));
    served.child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000)),
    ]);
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_000);
    const line = served
      .log()
      .split('\n')
      .find((l) => l.includes('stopping took longer than shutdownTimeout'));
    expect(JSON.parse(line!)).toMatchObject({
      step: 'waiting for actions in flight',
      shutdownTimeoutMs: 2_000,
    });
  }, 60_000);
});
