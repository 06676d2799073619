import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import {
  errorLine,
  hostFatalRule,
  killServes,
  startServe,
  stopServe,
  until,
  workdir,
} from '../support/drover.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

type Page = { title: string; text: string };
let hook: WebhookReceiver<Page> | undefined;
afterEach(async () => {
  killServes();
  if (hook) await hook.close();
  hook = undefined;
});

/**
 * A real receiver for the pages, and a folder whose configuration sends the given rules'
 * notifications to it through the webhook adapter.
 */
async function groupsServe(
  prefix: string,
  rules: Record<string, string>,
): Promise<{ config: string; dir: string; pages: Page[] }> {
  hook = await startWebhookReceiver<Page>();
  const dir = workdir(prefix, rules);
  const config = join(dir, 'drover.yaml');
  writeFileSync(
    config,
    `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  pager: { type: webhook, url: "${hook.url}" }
`,
  );
  return { config, dir, pages: hook.pages };
}

const hostFatal = (groupWait: string) => ({
  'rules/fatal.yaml': hostFatalRule(
    `{ adapter: pager, operation: notify, group_wait: ${groupWait} }`,
  ),
});

describe('drover serve: notification groups', () => {
  it('alerts of 30 hosts wait in one group; stopping sends it as one page', async () => {
    const { config, dir, pages } = await groupsServe('drover-serve-groups-', hostFatal('1h'));
    const served = await startServe(config);
    const t = Date.now();
    const body = Array.from({ length: 30 }, (_, i) => errorLine(`web-${i + 1}`, t + i)).join('\n');
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    await until('30 grouped alerts in the journal', async () => {
      const r = (await (await fetch(`${served.url}/v1/actions?limit=100`)).json()) as {
        decisions: Array<{ guard?: string }>;
      };
      return r.decisions.filter((d) => d.guard === 'group').length === 30;
    });
    expect(pages).toHaveLength(0); // group_wait is an hour
    const metrics = await (await fetch(`${served.url}/metrics`)).text();
    expect(metrics).toMatch(/^drover_notification_groups 1$/m);
    expect(metrics).toMatch(/^drover_notification_group_overflow_total 0$/m);
    expect(await stopServe(served)).toBe(0);
    expect(pages).toHaveLength(1);
    expect(pages[0]!.title).toMatch(/^\[host-fatal\] 30 alerts \(web-1, .* and 10 more\)$/);
    const journal = openActionStore(join(dir, 'state', 'actions.db'));
    const sent = journal.list({ limit: 100 }).filter((d) => d.id.endsWith('/group'));
    journal.close();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ decision: 'executed', result: { alerts: 30 } });
  }, 60_000);

  it('the example fatal-anywhere rule, 300 hosts at once: one page listing them, by default', async () => {
    const example = join(
      import.meta.dirname,
      '..',
      '..',
      'examples',
      'rules',
      'fatal-anywhere.yaml',
    );
    const { config, pages } = await groupsServe('drover-serve-groups-default-', {
      'rules/fatal-anywhere.yaml': readFileSync(example, 'utf8'),
    });
    const served = await startServe(config);
    const t = Date.now();
    const body = Array.from({ length: 300 }, (_, i) =>
      JSON.stringify({ level: 60, time: t + i, hostname: `web-${i + 1}`, name: 'web', msg: 'x' }),
    ).join('\n');
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    await until('one page', () => Promise.resolve(pages.length >= 1), 30_000);
    // group_wait is 10 s: every alert of the burst is in the page, and no other page follows.
    expect(pages[0]!.title).toMatch(/^\[fatal-anywhere\] 300 alerts \(web-1, .* and \d+ more\)$/);
    expect(pages[0]!.text).toMatch(/and 280 more\ngrouped by rule=fatal-anywhere/);
    const r = (await (await fetch(`${served.url}/v1/actions?limit=1000`)).json()) as {
      decisions: Array<{ guard?: string; decision: string; result?: { alerts?: number } }>;
    };
    expect(r.decisions.filter((d) => d.guard === 'group')).toHaveLength(300);
    expect(r.decisions.filter((d) => d.decision === 'executed')).toEqual([
      expect.objectContaining({ result: expect.objectContaining({ alerts: 300 }) }),
    ]);
    // The grouped page is counted and logged like every journaled decision, once.
    const metrics = await (await fetch(`${served.url}/metrics`)).text();
    expect(metrics).toMatch(/^drover_actions_total\{adapter="pager",outcome="executed"\} 1$/m);
    expect(metrics).toMatch(/^drover_guard_suppressions_total\{reason="group"\} 300$/m);
    const logged = served
      .log()
      .split('\n')
      .filter((l) => l.includes('"msg":"remediation executed"'));
    expect(logged).toHaveLength(1);
    expect(await stopServe(served)).toBe(0);
    expect(pages).toHaveLength(1);
  }, 60_000);
  it('killed (SIGKILL) while a group waits: after the restart the page goes out, once', async () => {
    const { config, dir, pages } = await groupsServe('drover-serve-groups-kill-', hostFatal('8s'));
    const first = await startServe(config);
    const t = Date.now();
    const body = Array.from({ length: 3 }, (_, i) => errorLine(`web-${i + 1}`, t + i)).join('\n');
    expect((await fetch(`${first.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    await until('3 grouped alerts in the journal', async () => {
      const r = (await (await fetch(`${first.url}/v1/actions?limit=100`)).json()) as {
        decisions: Array<{ guard?: string }>;
      };
      return r.decisions.filter((d) => d.guard === 'group').length === 3;
    });
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    expect(pages).toHaveLength(0);

    const second = await startServe(config);
    await until('the page', () => Promise.resolve(pages.length >= 1), 30_000);
    expect(pages[0]!.title).toBe('[host-fatal] 3 alerts (web-1, web-2, web-3)');
    expect(second.log()).toContain('notification groups rebuilt from the journal');
    // Stopping sends what still waits: nothing; the restored page went out once.
    expect(await stopServe(second)).toBe(0);
    expect(pages).toHaveLength(1);
    const journal = openActionStore(join(dir, 'state', 'actions.db'));
    const sent = journal.list({ limit: 100 }).filter((d) => d.id.endsWith('/group'));
    journal.close();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ decision: 'executed', result: { alerts: 3 } });
  }, 90_000);
});
