import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openActionStore, Remediator, WebhookAdapter } from '../../../actions/index.ts';
import type { Alert } from '../../../rules/index.ts';

/** A webhook URL is often the credential itself: it must not reach the journal. */
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

const SLACK_PATH = '/services/T0001/B0002/xoxbSecretPathPart123456';
const TOKEN = 'tok-abcdef123456';
const PASSWORD = 'hunter2-password';
const SIGNING = 'signing-secret-999';

/** Answers every request with `status` and a body echoing what it received, as some do. */
async function echoing(status: number): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      res
        .writeHead(status)
        .end(`invalid_token for ${req.url} auth=${req.headers.authorization ?? ''}`),
    );
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

function alert(): Alert {
  return {
    id: 'alert-1',
    rule: 'web-down',
    type: 'frequency',
    key: { 'service.name': 'web' },
    at: '2024-01-01T00:00:00.000Z',
    figures: { count: 3 },
    sample: { '@timestamp': 0, 'service.name': 'web' },
    labels: {},
    actions: [
      // Paged per alert, so the failures are journaled as the alert is handled.
      { adapter: 'slack', operation: 'notify', group: false },
      { adapter: 'down', operation: 'notify', group: false },
    ],
  };
}

describe('webhook secrets stay out of the journal', () => {
  it('a failing Slack webhook and an unreachable one journal no part of their credentials', async () => {
    const port = await echoing(403);
    const closed = await echoing(200);
    servers.pop()!.close(); // nothing listens there any more
    const url = (p: number) =>
      `http://drover:${PASSWORD}@127.0.0.1:${p}${SLACK_PATH}?token=${TOKEN}&channel=ops`;
    const store = openActionStore(join(mkdtempSync(join(tmpdir(), 'drover-hook-')), 'a.db'));
    try {
      const r = new Remediator({
        store,
        adapters: new Map([
          [
            'slack',
            new WebhookAdapter('slack', {
              url: url(port),
              format: 'slack',
              secret: SIGNING,
              headers: { authorization: `Bearer ${TOKEN}` },
              retries: 0,
            }),
          ],
          ['down', new WebhookAdapter('down', { url: url(closed), retries: 0 })],
        ]),
      });
      const decisions = await r.handle(alert());
      expect(decisions.map((d) => d.decision)).toEqual(['failed', 'failed']);
      expect(decisions[0]!.error).toMatch(/http:\/\/127\.0\.0\.1:\d+\/… answered 403/);
      expect(decisions[1]!.error).toMatch(
        /http:\/\/127\.0\.0\.1:\d+\/…: fetch failed: .*ECONNREFUSED/,
      );
      const journal = JSON.stringify(store.list());
      expect(journal).toContain('answered 403');
      for (const secret of [PASSWORD, TOKEN, SIGNING, 'xoxbSecretPathPart123456', SLACK_PATH])
        expect(journal).not.toContain(secret);
    } finally {
      store.close();
    }
  });
});

describe('a webhook URL with templates', () => {
  async function recording(): Promise<{ port: number; urls: string[] }> {
    const urls: string[] = [];
    const server = createServer((req, res) => {
      urls.push(req.url!);
      req.resume();
      req.on('end', () => res.writeHead(200).end('ok'));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as { port: number }).port, urls };
  }
  const ctx = { idempotencyKey: 'a#0', rule: 'web-down' };

  it('encodes each value into its URL component, so no value changes the URL’s structure', async () => {
    const { port, urls } = await recording();
    const hook = new WebhookAdapter('hook', {
      url: `http://127.0.0.1:${port}/hooks/{{ target }}/restart?rule={{ rule }}&op={{ operation }}`,
      retries: 0,
    });
    await hook.killAndReplace('web-1', ctx);
    await hook.killAndReplace('a/../../admin?x=1&y=2#frag', ctx);
    await hook.scale('@evil.example.com:80', { by: 1 }, ctx);
    expect(urls).toEqual([
      '/hooks/web-1/restart?rule=web-down&op=kill-and-replace',
      '/hooks/a%2F..%2F..%2Fadmin%3Fx%3D1%26y%3D2%23frag/restart?rule=web-down&op=kill-and-replace',
      '/hooks/%40evil.example.com%3A80/restart?rule=web-down&op=scale',
    ]);
    for (const dots of ['..', '.', '%2e%2e'])
      await expect(hook.killAndReplace(dots, ctx)).rejects.toThrow(/path segment/);
    expect(urls).toHaveLength(3);
  });

  it('refuses at start-up a template in the scheme, host or port', () => {
    for (const url of [
      'http://{{ target }}.example.com/hook',
      'http://hooks.example.com:{{ target }}/hook',
      '{{ target }}://hooks.example.com/',
      'http://hooks.example.com{{ target }}',
    ])
      expect(() => new WebhookAdapter('hook', { url })).toThrow(/scheme, host and port/);
  });
});
