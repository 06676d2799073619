import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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

/**
 * Live, a firing resolves on the wall clock's watermark and `drover serve` hands the
 * resolution to the remediator: send_resolved pages a real receiver through the webhook
 * adapter, and the journal (GET /v1/actions) shows both pages.
 */
type Page = { title: string; text: string; alert: Record<string, unknown> };
let hook: WebhookReceiver<Page> | undefined;
afterEach(async () => {
  killServes();
  if (hook) await hook.close();
  hook = undefined;
});

describe('drover serve: resolved notifications', () => {
  it('an alert pages, and its resolution pages again naming it', async () => {
    hook = await startWebhookReceiver<Page>();
    const pages = hook.pages;
    const dir = workdir('drover-serve-resolved-', {
      'rules/fatal.yaml': hostFatalRule(
        '{ adapter: pager, operation: notify, group: false, send_resolved: true }',
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
  pager: { type: webhook, url: "${hook.url}" }
`,
    );
    const served = await startServe(config);
    const body = errorLine('web-1', Date.now());
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    await until('the alert and its resolution paged', () => pages.length >= 2, 30_000);
    const [fired, resolved] = pages;
    expect(fired!.title).toMatch(/^host-fatal: /);
    const alertId = (fired!.alert as { id: string }).id;
    expect(resolved).toMatchObject({
      title: 'RESOLVED host-fatal (host-fatal)',
      alert: { state: 'resolved', alert: alertId, key: { 'host.name': 'web-1' } },
    });
    const journal = (await (await fetch(`${served.url}/v1/actions?limit=10`)).json()) as {
      decisions: Array<{ alertId: string; decision: string; reason?: string }>;
    };
    expect(journal.decisions.filter((d) => d.alertId === alertId)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          decision: 'executed',
          reason: `resolved: closes alert ${alertId}`,
        }),
        expect.objectContaining({ decision: 'executed' }),
      ]),
    );
    expect(pages).toHaveLength(2);
    expect(await stopServe(served)).toBe(0);
  }, 60_000);
});
