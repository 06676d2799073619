import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { errorLine, killServes, startServe, stopServe, until, workdir } from '../support/drover.ts';
import {
  FLEET_ADAPTER,
  VERIFICATION_RULES,
  type VerifiedEntry as Entry,
} from '../support/verification-fleet.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * Live verification (docs/actions.md#verification): `drover serve` replaces two real
 * replicas (the process adapter); one alert resolves within its window (effective), the
 * other does not before the clock-driven watermark passes it (ineffective, escalated
 * through on_ineffective to a real webhook receiver). GET /v1/actions shows both
 * outcomes and /metrics counts them.
 */
let hook: WebhookReceiver | undefined;
afterEach(async () => {
  killServes();
  if (hook) await hook.close();
  hook = undefined;
});

describe('drover serve: verification of remediations', () => {
  it('journals effective and ineffective, escalates, and counts both', async () => {
    hook = await startWebhookReceiver();
    const pages = hook.pages;
    const dir = workdir('drover-serve-verify-', VERIFICATION_RULES);
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
guards: { cooldown: 0s }
adapters:
  pager: { type: webhook, url: "${hook.url}" }
${FLEET_ADAPTER}`,
    );
    const served = await startServe(config);
    const now = Date.now();
    const body = `${errorLine('web-1', now)}\n${errorLine('web-2', now)}\n`;
    expect((await fetch(`${served.url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const journal = async () =>
      (
        (await (await fetch(`${served.url}/v1/actions?limit=50`)).json()) as {
          decisions: Entry[];
        }
      ).decisions;
    const outcome = (entries: Entry[], name: string) =>
      entries.find((d) => d.rule === name && d.decision === 'executed' && d.verification)
        ?.verification?.outcome;
    await until(
      'both verifications ended',
      async () => {
        const j = await journal();
        return (
          outcome(j, 'replace-helps') === 'effective' &&
          outcome(j, 'replace-does-not-help') === 'ineffective' &&
          j.some((d) => d.id.endsWith('/ineffective') && d.decision === 'executed')
        );
      },
      30_000,
    );
    const j = await journal();
    expect(j.find((d) => d.rule === 'replace-does-not-help' && d.verification)).toMatchObject({
      target: 'web-2',
      verification: { outcome: 'ineffective', by: 'event-time' },
    });
    expect(pages).toEqual([
      expect.objectContaining({ title: expect.stringMatching(/^replace-does-not-help: /) }),
    ]);
    const metrics = await (await fetch(`${served.url}/metrics`)).text();
    expect(metrics).toMatch(/^drover_remediation_verifications_total\{outcome="effective"\} 1$/m);
    expect(metrics).toMatch(/^drover_remediation_verifications_total\{outcome="ineffective"\} 1$/m);
    expect(await stopServe(served)).toBe(0);
  }, 60_000);
});
