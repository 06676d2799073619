import { SilenceError, validateMatchers } from '../actions/guards/index.ts';

/**
 * What the control API accepts, checked before anything reaches a store: a caller's
 * mistake is a 400 naming it, never a 500 or a journal dump.
 */
export class InputError extends Error {
  readonly statusCode = 400;
}

/** `GET /v1/actions?limit=`: 1..1000, default 100 (the journal is never dumped whole). */
export const LIST_LIMIT = { default: 100, max: 1_000 };
/** A silence ends at most this far ahead: past it, it is a typo or a kill switch in disguise. */
export const MAX_SILENCE_MS = 366 * 24 * 3_600_000;
/** Matchers per silence, and bytes per matcher name, value and comment. */
export const SILENCE_LIMITS = { matchers: 32, field: 256, value: 1_024, comment: 1_024 };
/** Rule names are at most this long in a filter. */
const MAX_RULE_NAME = 256;

export function parseListQuery(query: unknown): { rule?: string; limit: number } {
  const q = (query ?? {}) as Record<string, unknown>;
  const limitText = q.limit;
  let limit = LIST_LIMIT.default;
  if (limitText !== undefined) {
    if (typeof limitText !== 'string' || !/^\d{1,4}$/.test(limitText))
      throw new InputError(`limit is an integer from 1 to ${LIST_LIMIT.max}`);
    limit = Number(limitText);
    if (limit < 1 || limit > LIST_LIMIT.max)
      throw new InputError(`limit is an integer from 1 to ${LIST_LIMIT.max}`);
  }
  const rule = q.rule;
  if (
    rule !== undefined &&
    (typeof rule !== 'string' || rule === '' || rule.length > MAX_RULE_NAME)
  )
    throw new InputError(`rule is one rule name (at most ${MAX_RULE_NAME} characters)`);
  return rule === undefined ? { limit } : { rule, limit };
}

export function parseKillSwitch(body: unknown): boolean {
  const on = isObject(body) ? body.on : undefined;
  if (typeof on !== 'boolean') throw new InputError('send { "on": true } or { "on": false }');
  return on;
}

export interface SilenceInput {
  matchers: Record<string, string>;
  until: number;
  comment: string;
  expireOnResolve: boolean;
}

const SILENCE_SHAPE =
  'send { "matchers": { "rule" | "type" | "labels.NAME" | "key.FIELD": "value" }, "until": ISO time, "comment"?: text, "expire_on_resolve"?: boolean }';

export function parseSilence(body: unknown, now: number): SilenceInput {
  if (!isObject(body)) throw new InputError(SILENCE_SHAPE);
  for (const key of Object.keys(body))
    if (key !== 'matchers' && key !== 'until' && key !== 'comment' && key !== 'expire_on_resolve')
      throw new InputError(`unknown field "${clip(key)}": ${SILENCE_SHAPE}`);
  const raw = body.matchers;
  if (!isObject(raw)) throw new InputError(`matchers must be an object: ${SILENCE_SHAPE}`);
  const entries = Object.entries(raw);
  if (entries.length === 0 || entries.length > SILENCE_LIMITS.matchers)
    throw new InputError(`a silence has 1 to ${SILENCE_LIMITS.matchers} matchers`);
  // A record without a prototype: "__proto__" is a matcher name like any other (and refused).
  const matchers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [field, value] of entries) {
    if (field.length > SILENCE_LIMITS.field)
      throw new InputError(`a matcher name is at most ${SILENCE_LIMITS.field} characters`);
    if (typeof value !== 'string' || value.length > SILENCE_LIMITS.value)
      throw new InputError(
        `matcher "${clip(field)}" must be a string of at most ${SILENCE_LIMITS.value} characters`,
      );
    matchers[field] = value;
  }
  try {
    validateMatchers(matchers);
  } catch (err) {
    if (err instanceof SilenceError) throw new InputError(clip(err.message, 400));
    throw err;
  }
  const until = typeof body.until === 'string' ? Date.parse(body.until) : Number.NaN;
  if (!Number.isFinite(until))
    throw new InputError('until must be an ISO 8601 time, such as "2026-12-24T18:00:00Z"');
  if (until <= now) throw new InputError('until is in the past: a silence must end in the future');
  if (until > now + MAX_SILENCE_MS)
    throw new InputError(
      `until is more than ${MAX_SILENCE_MS / 86_400_000} days ahead; use the kill switch to stop every action`,
    );
  const comment = body.comment ?? '';
  if (typeof comment !== 'string' || comment.length > SILENCE_LIMITS.comment)
    throw new InputError(`comment is text of at most ${SILENCE_LIMITS.comment} characters`);
  const expire = body.expire_on_resolve ?? false;
  if (typeof expire !== 'boolean') throw new InputError('expire_on_resolve is true or false');
  return { matchers: { ...matchers }, until, comment, expireOnResolve: expire };
}

/** SQLite's ids are integers, Elasticsearch's UUIDs: both fit this, nothing else need. */
export function parseSilenceId(id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(id))
    throw new InputError('a silence id is a number or a UUID');
  return id;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Echoes a caller's text in an error at a bounded length. */
function clip(text: string, max = 64): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
