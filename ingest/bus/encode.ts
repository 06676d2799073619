import { inspect } from 'node:util';
import type { Event } from '../model/event.ts';

/** How much of a refused event the dead-letter store keeps: enough to see what it was. */
export const DEAD_LETTER_BODY_CHARS = 65_536;

/** Why an event was refused, for code to branch on; `reason` is the sentence for people. */
export type RefusalCode = 'not-an-event' | 'not-json' | 'too-large';

export type Serialized =
  { ok: true; body: string } | { ok: false; code: RefusalCode; reason: string; body: string };

/**
 * Serializes one event for the log, or says why it cannot go there. A bad event is
 * refused on its own: it never fails the publish of the events around it.
 */
export function serialize(event: Event, maxEventBytes: number): Serialized {
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    return { ok: false, code: 'not-an-event', reason: 'not an event object', body: preview(event) };
  let body: string;
  try {
    body = JSON.stringify(event);
  } catch (err) {
    return {
      ok: false,
      code: 'not-json',
      reason: `event cannot be serialized as JSON: ${(err as Error).message}`,
      body: preview(event),
    };
  }
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most bodies need no count.
  if (body.length * 3 > maxEventBytes) {
    const bytes = Buffer.byteLength(body);
    if (bytes > maxEventBytes)
      return {
        ok: false,
        code: 'too-large',
        reason: `event of ${bytes} bytes exceeds the limit of ${maxEventBytes}`,
        body: body.slice(0, DEAD_LETTER_BODY_CHARS),
      };
  }
  return { ok: true, body };
}

export function preview(value: unknown): string {
  return inspect(value, { depth: 3, breakLength: Number.POSITIVE_INFINITY }).slice(
    0,
    DEAD_LETTER_BODY_CHARS,
  );
}

/**
 * The partition key: a service's events stay in order on one partition. Events without
 * a service fall back to their host, then to one fixed key, so the choice is stable.
 */
export function keyOf(event: Event): string {
  return event['service.name'] ?? event['host.name'] ?? '';
}

/** Messages handled per second over a sliding window, for Retry-After estimates. */
export class RateMeter {
  private readonly samples: Array<{ at: number; n: number }> = [];

  constructor(private readonly windowMs = 30_000) {}

  record(n: number, now: number): void {
    this.samples.push({ at: now, n });
    this.trim(now);
  }

  perSecond(now: number): number {
    this.trim(now);
    if (this.samples.length === 0) return 0;
    const total = this.samples.reduce((sum, s) => sum + s.n, 0);
    // Over at least one second, so a single quick batch does not read as a huge rate.
    const span = Math.max(1_000, now - this.samples[0]!.at);
    return (total * 1_000) / span;
  }

  private trim(now: number): void {
    while (this.samples.length > 0 && this.samples[0]!.at < now - this.windowMs)
      this.samples.shift();
  }
}

/**
 * Seconds until `backlog` messages are drained at `perSecond`, within [1, 300]. With no
 * measured progress the wait is a guess, so it stays moderate rather than huge.
 */
export function retryAfterSeconds(backlog: number, perSecond: number): number {
  if (perSecond <= 0) return 30;
  return Math.min(300, Math.max(1, Math.ceil(backlog / perSecond)));
}
