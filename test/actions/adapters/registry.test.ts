import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAdapters, ExecAdapter, WebhookAdapter } from '../../../actions/index.ts';

const ctx = { idempotencyKey: 'alert-1#0', rule: 'web-replica-silent' };

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A local HTTP receiver answering with the given statuses in turn. */
async function receiver(statuses: number[]): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(statuses[Math.min(received.length - 1, statuses.length - 1)]!).end('ok');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, received };
}

describe('webhook adapter', () => {
  it('POSTs the decision with an HMAC signature the receiver can verify', async () => {
    const { url, received } = await receiver([200]);
    const hook = new WebhookAdapter('hook', { url, secret: 's3cret' });
    const result = await hook.killAndReplace('web-1', ctx);
    expect(result.detail).toMatchObject({ status: 200, attempts: 1 });
    const [{ headers, body }] = received as [Received];
    const expected = createHmac('sha256', 's3cret')
      .update(`${String(headers['x-drover-timestamp'])}.${body}`)
      .digest('hex');
    expect(headers['x-drover-signature']).toBe(`sha256=${expected}`);
    expect(JSON.parse(body)).toEqual({
      operation: 'kill-and-replace',
      target: 'web-1',
      idempotency_key: 'alert-1#0',
      rule: 'web-replica-silent',
    });
  });

  it('retries 5xx with backoff, never 4xx', async () => {
    const flaky = await receiver([503, 502, 200]);
    const ok = await new WebhookAdapter('hook', { url: flaky.url, backoffMs: 10 }).scale(
      'web',
      { by: 2 },
      ctx,
    );
    expect(ok.detail).toMatchObject({ attempts: 3 });
    const refusing = await receiver([403]);
    await expect(
      new WebhookAdapter('hook', { url: refusing.url, backoffMs: 10 }).scale('web', { by: 2 }, ctx),
    ).rejects.toThrow(/answered 403/);
    expect(refusing.received).toHaveLength(1);
    const down = await receiver([500]);
    await expect(
      new WebhookAdapter('hook', { url: down.url, backoffMs: 5, retries: 2 }).scale(
        'web',
        { by: 1 },
        ctx,
      ),
    ).rejects.toThrow(/after 3 attempts/);
  });

  it('speaks Slack incoming webhooks and PagerDuty Events v2 for notify', async () => {
    const slack = await receiver([200]);
    await new WebhookAdapter('slack', { url: slack.url, format: 'slack' }).notify(
      { title: 'web-1 replaced', text: 'it went silent', severity: 'warning' },
      ctx,
    );
    expect(JSON.parse(slack.received[0]!.body)).toMatchObject({
      text: '*web-1 replaced*\nit went silent',
      blocks: [{ type: 'header' }, { type: 'section' }],
    });
    const pd = await receiver([202]);
    await new WebhookAdapter('pd', {
      url: pd.url,
      format: 'pagerduty',
      routingKey: 'R0UT1NG',
    }).notify({ title: 'breaker open', text: 'look', severity: 'critical' }, ctx);
    expect(JSON.parse(pd.received[0]!.body)).toEqual({
      routing_key: 'R0UT1NG',
      event_action: 'trigger',
      dedup_key: 'alert-1#0',
      payload: {
        summary: 'breaker open',
        source: 'drover',
        severity: 'critical',
        custom_details: { text: 'look', rule: 'web-replica-silent' },
      },
    });
  });
  it('escapes Slack mrkdwn: an event value cannot mention the channel or disguise a link', async () => {
    const slack = await receiver([200]);
    const hostile = '<!channel> web-1 <http://evil.example|click here> & <@U123>';
    await new WebhookAdapter('slack', { url: slack.url, format: 'slack' }).notify(
      { title: `fatal on ${hostile}`, text: `key ${hostile}`, severity: 'critical' },
      ctx,
    );
    const body = JSON.parse(slack.received[0]!.body) as {
      text: string;
      blocks: Array<{ type: string; text: { type: string; text: string } }>;
      unfurl_links: boolean;
    };
    const escaped =
      '&lt;!channel&gt; web-1 &lt;http://evil.example|click here&gt; &amp; &lt;@U123&gt;';
    expect(body.text).toBe(`*fatal on ${escaped}*\nkey ${escaped}`);
    expect(body.blocks[1]!.text).toEqual({ type: 'mrkdwn', text: `key ${escaped}` });
    // plain_text is never parsed for mentions or links: shown as written.
    expect(body.blocks[0]!.text).toEqual({ type: 'plain_text', text: `fatal on ${hostile}` });
    for (const text of [body.text, body.blocks[1]!.text.text]) expect(text).not.toMatch(/[<>]/);
    expect(body.unfurl_links).toBe(false);
  });

  it('clips Slack text to what Slack accepts, on a character boundary, with a marker', async () => {
    const slack = await receiver([200]);
    await new WebhookAdapter('slack', { url: slack.url, format: 'slack' }).notify(
      { title: '😀'.repeat(100), text: `${'x'.repeat(2_990)}&&&&&`, severity: 'info' },
      ctx,
    );
    const body = JSON.parse(slack.received[0]!.body) as {
      blocks: Array<{ text: { text: string } }>;
    };
    const [header, section] = body.blocks.map((b) => b.text.text) as [string, string];
    expect(header.length).toBeLessThanOrEqual(150);
    expect(header).toMatch(/^(😀)+…$/u);
    expect(section.length).toBeLessThanOrEqual(3_000);
    expect(section).toMatch(/^x{2990}(&amp;)*…$/);
  });
});

describe('exec adapter', () => {
  const dir = mkdtempSync(join(tmpdir(), 'drover-exec-'));
  it('runs a real command with templated arguments and the decision in its environment', async () => {
    const out = join(dir, 'out.txt');
    const exec = new ExecAdapter('script', {
      command: '/bin/sh',
      args: [
        '-c',
        `echo "$DROVER_OPERATION $1 $DROVER_PARAMS_JSON" > ${out}`,
        'sh',
        '{{ target }}',
      ],
    });
    const result = await exec.scale('web', { by: 2 }, ctx);
    expect(result.detail).toMatchObject({ exitCode: 0 });
    expect(readFileSync(out, 'utf8').trim()).toBe('scale web {"by":2}');
  });

  it('fails on a non-zero exit with stderr, and kills a command that outlives its timeout', async () => {
    await expect(
      new ExecAdapter('x', {
        command: '/bin/sh',
        args: ['-c', 'echo nope >&2; exit 3'],
      }).killAndReplace('a', ctx),
    ).rejects.toThrow(/exited with 3: nope/);
    const t = Date.now();
    await expect(
      new ExecAdapter('x', { command: '/bin/sleep', args: ['10'], timeoutMs: 200 }).killAndReplace(
        'a',
        ctx,
      ),
    ).rejects.toThrow(/timed out after 200 ms/);
    expect(Date.now() - t).toBeLessThan(3_000);
    await expect(
      new ExecAdapter('x', { command: '/nonexistent/tool' }).killAndReplace('a', ctx),
    ).rejects.toThrow(/could not start/);
  });

  it('describes a group through describeCommand', async () => {
    const exec = new ExecAdapter('x', {
      command: '/bin/true',
      describeCommand: '/bin/sh',
      describeArgs: ['-c', 'echo \'{"size":3,"healthy":2}\''],
    });
    expect(await exec.describe('web')).toEqual({ group: 'web', size: 3, healthy: 2 });
  });
});

describe('adapter registry', () => {
  it('creates built-in adapters and loads a third-party one from a module path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-reg-'));
    const log = join(dir, 'log.ndjson');
    writeFileSync(log, '');
    const adapters = await createAdapters(
      {
        hook: { type: 'webhook', url: 'http://127.0.0.1:1/never' },
        custom: { type: './test/actions/fixtures/custom-adapter.js', path: log },
      },
      process.cwd(),
    );
    expect(adapters.get('hook')!.type).toBe('webhook');
    await adapters.get('custom')!.scale('web', { to: 3 }, ctx);
    expect(JSON.parse(readFileSync(log, 'utf8'))).toEqual({
      op: 'scale',
      target: 'web',
      params: { to: 3 },
    });
    await expect(createAdapters({ x: { type: 'nomad-without-package' } })).rejects.toThrow(
      /neither built in/,
    );
  });
});
