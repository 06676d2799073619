import { createHmac } from 'node:crypto';
import { createRedactor, redactUrl } from './redact.ts';
import { shown } from './target-checks.ts';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
  TargetRefused,
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
 *
 * The URL may hold `{{ target }}`, `{{ operation }}`, `{{ rule }}` and
 * `{{ idempotency_key }}` in its path or query, never in its scheme, host or port (a
 * start-up error). Each value is percent-encoded as one URL component (`/`, `?`, `#`,
 * `&`, `@` included) and a value of only dots is refused, so no value changes where the
 * request goes or which path it names beyond its own segment. The URL is often a credential
 * itself (a Slack webhook's path, `?token=`), so errors name it by scheme, host and port
 * only, and the URL's parts, the signing secret, the routing key and header values are
 * redacted from any text that reaches the journal or a log (a receiver's answer too).
 * Credentials in the URL (`https://user:pass@host/`) are sent as Basic authorization.
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

const URL_VARIABLE = /\{\{\s*(\w+)\s*\}\}/g;

export class WebhookAdapter implements Adapter {
  readonly type = 'webhook';
  /** The URL's origin, which no rendered URL may leave. */
  private readonly origin: string;
  private readonly basicAuth: string | undefined;
  private readonly redact: (text: string) => string;
  private readonly shownUrl: string;

  constructor(
    readonly name: string,
    private readonly options: WebhookOptions,
  ) {
    if (!options.url) throw new Error(`webhook adapter ${name} needs a url`);
    if (options.format === 'pagerduty' && !options.routingKey)
      throw new Error(`webhook adapter ${name}: pagerduty needs a routingKey`);
    this.shownUrl = redactUrl(options.url);
    this.redact = createRedactor(options.url, [
      options.secret,
      options.routingKey,
      ...Object.values(options.headers ?? {}),
    ]);
    const first = options.url.indexOf('{{');
    if (first !== -1 && !/^https?:\/\/[^/?#{}]+\//i.test(options.url.slice(0, first)))
      throw new Error(
        `webhook adapter ${name}: a template may only fill the url's path or query; its scheme, host and port must be written out`,
      );
    let url: URL;
    try {
      url = new URL(options.url.replace(URL_VARIABLE, 'x'));
    } catch {
      throw new Error(`webhook adapter ${name}: url is not a URL (${this.shownUrl})`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new Error(`webhook adapter ${name}: url must be http(s), not ${url.protocol}`);
    this.basicAuth =
      url.username || url.password
        ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
        : undefined;
    this.origin = url.origin;
  }

  /**
   * The URL to call: templates filled with encoded values, user:password taken out
   * (fetch refuses them; they travel as Basic authorization).
   */
  private urlFor(vars: Record<string, string>): string {
    const rendered = this.options.url.replace(URL_VARIABLE, (_, name: string) => {
      const value = vars[name];
      if (value === undefined)
        throw new Error(`the webhook url's "${name}" is not set for this decision`);
      if (/^(\.|%2e)*$/i.test(value))
        throw new TargetRefused(
          `${shown(value)} would be an empty, "." or ".." path segment in the webhook url`,
          'target',
        );
      try {
        return encodeURIComponent(value);
      } catch {
        throw new TargetRefused(`${shown(value)} cannot be encoded into a URL`, 'target');
      }
    });
    const url = new URL(rendered);
    if (url.origin !== this.origin)
      throw new TargetRefused(`the webhook url would leave ${this.origin}`, 'target');
    url.username = '';
    url.password = '';
    return url.href;
  }

  killAndReplace(target: string, ctx: ActionContext): Promise<ActionResult> {
    return this.post(urlVars('kill-and-replace', ctx, target), {
      operation: 'kill-and-replace',
      target,
      idempotency_key: ctx.idempotencyKey,
      rule: ctx.rule,
    });
  }

  scale(target: string, params: ScaleParams, ctx: ActionContext): Promise<ActionResult> {
    return this.post(urlVars('scale', ctx, target), {
      operation: 'scale',
      target,
      params,
      idempotency_key: ctx.idempotencyKey,
      rule: ctx.rule,
    });
  }

  notify(n: Notification, ctx: ActionContext): Promise<ActionResult> {
    const vars = urlVars('notify', ctx);
    if (this.options.format === 'slack') {
      // Title and text carry event values: escaped wherever Slack reads mrkdwn. A header
      // is plain_text, never parsed for mentions or links, so it is shown as written.
      const text = clip(escapeMrkdwn(n.text), SLACK_SECTION_MAX);
      return this.post(vars, {
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
      return this.post(vars, {
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
    return this.post(vars, {
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

  private async post(
    vars: Record<string, string>,
    payload: Record<string, unknown>,
  ): Promise<ActionResult> {
    const url = this.urlFor(vars);
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
        ...(this.basicAuth && { authorization: this.basicAuth }),
        ...this.options.headers,
      };
      if (this.options.secret) {
        headers['x-drover-timestamp'] = timestamp;
        headers['x-drover-signature'] =
          `sha256=${createHmac('sha256', this.options.secret).update(`${timestamp}.${body}`).digest('hex')}`;
      }
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
        const text = await res.text();
        if (res.ok)
          return {
            detail: {
              status: res.status,
              attempts: attempt + 1,
              response: this.redact(text.slice(0, 2_000)),
            },
          };
        lastError = new Error(
          `${this.shownUrl} answered ${res.status}: ${this.redact(text.slice(0, 500))}`,
        );
        if (res.status < 500 && res.status !== 429) throw lastError;
      } catch (err) {
        if (err === lastError) throw err;
        const e = err as Error & { cause?: { message?: string } };
        // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, a TLS error).
        lastError = new Error(
          `${this.shownUrl}: ${this.redact(e.message)}${e.cause?.message ? `: ${this.redact(e.cause.message)}` : ''}`,
        );
      }
    }
    throw new Error(`webhook failed after ${retries + 1} attempts: ${lastError?.message}`);
  }
}

/** What a webhook url's templates may name (notify has no target). */
function urlVars(operation: string, ctx: ActionContext, target?: string): Record<string, string> {
  return {
    operation,
    rule: ctx.rule,
    idempotency_key: ctx.idempotencyKey,
    ...(target !== undefined && { target }),
  };
}

const factory: AdapterFactory = {
  type: 'webhook',
  create: (name, options) => new WebhookAdapter(name, options as unknown as WebhookOptions),
};
export default factory;
