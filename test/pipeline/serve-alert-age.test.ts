import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  adminHeaders,
  errorLine,
  hostFatalRule,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

/**
 * guards.maxAlertAge through `drover serve`: events from an hour ago (a replay of history:
 * a first start over a retained topic, a lost changelog, an outage's backlog) still make
 * their alert, but its remediation is journaled as stale instead of run; the same rule on
 * an event of now runs the real command.
 */
afterEach(killServes);

describe('drover serve: stale alerts are not remediated', () => {
  it('journals the hour-old alert as alert-age and replaces only the host failing now', async () => {
    const dir = workdir('drover-serve-alert-age-', {
      'rules/fatal.yaml': hostFatalRule(
        '{ adapter: script, operation: kill-and-replace, target: "{{ host.name }}" }',
      ),
    });
    const acted = join(dir, 'acted');
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo \\"$DROVER_TARGET\\" >> ${acted}"] }
`,
    );
    const served = await startServe(config);
    const now = Date.now();
    const body = `${errorLine('web-old', now - 3_600_000)}\n${errorLine('web-now', now)}\n`;
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const headers = adminHeaders(join(dir, 'state'));
    const journal = async () => {
      const r = await fetch(`${served.url}/v1/actions`, { headers });
      return ((await r.json()) as { decisions: Array<Record<string, unknown>> }).decisions;
    };
    const entries = await until(
      'both decisions in the journal',
      async () => {
        const e = await journal();
        return e.length >= 2 ? e : undefined;
      },
      30_000,
    );
    const byTarget = Object.fromEntries(entries.map((e) => [e.target as string, e]));
    expect(byTarget['web-old']).toMatchObject({ decision: 'suppressed', guard: 'alert-age' });
    expect(byTarget['web-old']!.reason).toMatch(
      /stale alert: .* 1\.0h before now \(guards.maxAlertAge 15m\)/,
    );
    expect(byTarget['web-now']).toMatchObject({ decision: 'executed' });
    await until('the command to have run', () => existsSync(acted), 10_000);
    expect(readFileSync(acted, 'utf8')).toBe('web-now\n');
    // Both alerts were made: the rule judged history as it judges the present.
    const alerts = (await (await fetch(`${served.url}/v1/alerts`, { headers })).json()) as {
      alerts: Array<{ key: Record<string, string> }>;
    };
    expect(alerts.alerts.map((a) => a.key['host.name']).sort()).toEqual(['web-now', 'web-old']);
  }, 60_000);
});
