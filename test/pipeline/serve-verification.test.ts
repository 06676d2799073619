import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { errorLine, killServes, startServe, stopServe, until, workdir } from '../support/drover.ts';

/**
 * Live verification (docs/actions.md#verification): `drover serve` replaces two real
 * replicas (the process adapter); one alert resolves within its window (effective), the
 * other does not before the clock-driven watermark passes it (ineffective, escalated
 * through on_ineffective to a real webhook receiver). GET /v1/actions shows both
 * outcomes and /metrics counts them.
 */
const REPLICA = join(import.meta.dirname, '..', 'actions', 'fixtures', 'replica.js');

let hook: Server | undefined;
afterEach(async () => {
  killServes();
  if (hook) await new Promise((r) => hook!.close(r));
  hook = undefined;
});

type Entry = {
  id: string;
  rule: string;
  target: string;
  decision: string;
  verification?: { outcome: string; by?: string };
};

describe('drover serve: verification of remediations', () => {
  it('journals effective and ineffective, escalates, and counts both', async () => {
    const pages: Array<{ title: string }> = [];
    hook = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        pages.push(JSON.parse(raw) as (typeof pages)[number]);
        res.writeHead(202).end('{}');
      });
    });
    await new Promise<void>((r) => hook!.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`;
    const rule = (
      name: string,
      host: string,
      resolveAfter: string,
      within: string,
    ) => `name: ${name}
type: any
query_key: host.name
realert: 1h
resolve_after: ${resolveAfter}
filter: { all: [ { fact: host.name, operator: equal, value: ${host} } ] }
actions:
  - adapter: fleet
    operation: kill-and-replace
    verify_within: ${within}
    on_ineffective: { adapter: pager, operation: notify, group: false }
`;
    const dir = workdir('drover-serve-verify-', {
      'rules/helps.yaml': rule('replace-helps', 'web-1', '1s', '20s'),
      'rules/does-not-help.yaml': rule('replace-does-not-help', 'web-2', '1h', '5s'),
    });
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
guards: { cooldown: 0s }
adapters:
  pager: { type: webhook, url: "${hookUrl}" }
  fleet:
    type: process
    services:
      web: { command: "${process.execPath}", args: ["${REPLICA}"], replicas: 2, healthPath: /healthz }
`,
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
