import { createHmac } from 'node:crypto';
import type {
  ActionContext,
  ActionResult,
  Adapter,
  AdapterFactory,
  GroupHealth,
  Notification,
  ScaleParams,
} from './types.ts';
import { clip, escapeMrkdwn } from './slack-text.ts';

/** Slack's limits: a header's text, a section's text, a message's top-level text. */
const SLACK_HEADER_MAX = 150;
const SLACK_SECTION_MAX = 3_000;
const SLACK_TEXT_MAX = 40_000;

/**
 * POSTs each decision as JSON, signed: `X-Drover-Timestamp` (unix seconds) and
 * `X-Drover-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`, so a receiver can
 * check origin and refuse replays. 5xx and network errors are retried with backoff;
 * 4xx are not (the receiver said no). `format: slack` or `pagerduty` shapes notify
 * for a Slack incoming webhook or PagerDuty Events v2 (dedup_key = the idempotency key);
 * Slack text is escaped for mrkdwn and clipped to Slack's limits.
 */
export interface WebhookOptions {
  url: string;
  secret?: string;
  format?: 'drover' | 'slack' | 'pagerduty';
  /** PagerDuty Events v2 integration key. */
  routingKey?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
}

export class WebhookAdapter implements Adapter {
  readonly type = 'webhook';

  constructor(
    readonly name: string,
    private readonly options: WebhookOptions,
  ) {
    if (!options.url) throw new Error(`webhook adapter ${name} needs a url`);
    if (options.format === 'pagerduty' && !options.routingKey)
      throw new Error(`webhook adapter ${name}: pagerduty needs a routingKey`);
  }

  killAndReplace(target: string, ctx: ActionContext): Promise<ActionResult> {
    return this.post({
      operation: 'kill-and-replace',
      target,
      idempotency_key: ctx.idempotencyKey,
      rule: ctx.rule,
    });
  }

  scale(target: string, params: ScaleParams, ctx: ActionContext): Promise<ActionResult> {
    return this.post({
      operation: 'scale',
      target,
      params,
      idempotency_key: ctx.idempotencyKey,
      rule: ctx.rule,
    });
  }

  notify(n: Notification, ctx: ActionContext): Promise<ActionResult> {
    if (this.options.format === 'slack') {
      // Title and text carry event values: escaped wherever Slack reads mrkdwn. A header
      // is plain_text, never parsed for mentions or links, so it is shown as written.
      const text = clip(escapeMrkdwn(n.text), SLACK_SECTION_MAX);
      return this.post({
        text: clip(`*${escapeMrkdwn(n.title)}*\n${text}`, SLACK_TEXT_MAX),
        blocks: [
          { type: 'header', text: { type: 'plain_text', text: clip(n.title, SLACK_HEADER_MAX) } },
          { type: 'section', text: { type: 'mrkdwn', text } },
        ],
        // No previews fetched from a URL an event value put in the text.
        unfurl_links: false,
        unfurl_media: false,
      });
    }
    if (this.options.format === 'pagerduty') {
      return this.post({
        routing_key: this.options.routingKey,
        event_action: 'trigger',
        dedup_key: ctx.idempotencyKey,
        payload: {
          summary: n.title.slice(0, 1024),
          source: 'drover',
          severity: n.severity,
          custom_details: { text: n.text, rule: ctx.rule },
        },
      });
    }
    return this.post({
      operation: 'notify',
      title: n.title,
      text: n.text,
      severity: n.severity,
      alert: n.alert,
      idempotency_key: ctx.idempotencyKey,
      rule: ctx.rule,
    });
  }

  async describe(target: string): Promise<GroupHealth> {
    throw new Error(`the webhook adapter ${this.name} cannot report the health of ${target}`);
  }

  private async post(payload: Record<string, unknown>): Promise<ActionResult> {
    const body = JSON.stringify(payload);
    const retries = this.options.retries ?? 3;
    let lastError: Error | undefined;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0)
        await new Promise((r) =>
          setTimeout(r, (this.options.backoffMs ?? 200) * 2 ** (attempt - 1)),
        );
      const timestamp = String(Math.floor(Date.now() / 1000));
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'drover',
        ...this.options.headers,
      };
      if (this.options.secret) {
        headers['x-drover-timestamp'] = timestamp;
        headers['x-drover-signature'] =
          `sha256=${createHmac('sha256', this.options.secret).update(`${timestamp}.${body}`).digest('hex')}`;
      }
      try {
        const res = await fetch(this.options.url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
        const text = await res.text();
        if (res.ok)
          return {
            detail: { status: res.status, attempts: attempt + 1, response: text.slice(0, 2_000) },
          };
        lastError = new Error(`${this.options.url} answered ${res.status}: ${text.slice(0, 500)}`);
        if (res.status < 500 && res.status !== 429) throw lastError;
      } catch (err) {
        if (err === lastError) throw err;
        lastError = err as Error;
      }
    }
    throw new Error(`webhook failed after ${retries + 1} attempts: ${lastError?.message}`);
  }
}

const factory: AdapterFactory = {
  type: 'webhook',
  create: (name, options) => new WebhookAdapter(name, options as unknown as WebhookOptions),
};
export default factory;
