import { createHash } from 'node:crypto';
import type { Event } from '../model/event.ts';
import { LEVELS } from '../model/event.ts';
import { toEpochMs } from '../model/normalize.ts';

/** `GET /v1/search` parameters, the same for every index back end. */
export interface SearchParams {
  /** Words and "quoted phrases", all required. */
  q?: string;
  from?: number;
  to?: number;
  service?: string;
  level?: string;
  size?: number;
}

export interface SearchResult {
  total: number;
  /** Newest first. */
  events: Event[];
}

export interface SearchIndex {
  search(params: SearchParams): Promise<SearchResult>;
}

export class SearchParamsError extends Error {}

/** Validates query-string parameters into SearchParams, with a clear error for each. */
export function parseSearchParams(query: Record<string, string | undefined>): SearchParams {
  const params: SearchParams = {};
  for (const key of Object.keys(query)) {
    if (!['q', 'from', 'to', 'service', 'level', 'size'].includes(key))
      throw new SearchParamsError(`unknown parameter "${key}"`);
  }
  if (query.q) params.q = query.q;
  for (const key of ['from', 'to'] as const) {
    if (query[key] === undefined) continue;
    const ms = toEpochMs(query[key]);
    if (ms === undefined)
      throw new SearchParamsError(`${key} must be an ISO 8601 time or epoch milliseconds`);
    params[key] = ms;
  }
  if (query.service) params.service = query.service;
  if (query.level) {
    if (!(LEVELS as readonly string[]).includes(query.level))
      throw new SearchParamsError(`level must be one of ${LEVELS.join(', ')}`);
    params.level = query.level;
  }
  if (query.size !== undefined) {
    const size = Number(query.size);
    if (!Number.isInteger(size) || size < 1 || size > 10_000)
      throw new SearchParamsError('size must be an integer from 1 to 10000');
    params.size = size;
  }
  return params;
}

/**
 * A document id that is the same when the bus redelivers a message (so indexing twice
 * is a no-op) and different when a recreated bus reuses an offset for another event.
 */
export function documentId(
  message: {
    topic: string;
    partition: number;
    offset: string;
    event: Event;
  },
  /** `JSON.stringify(message.event)`, when the caller has it already. */
  json = JSON.stringify(message.event),
): string {
  return createHash('sha1')
    .update(`${message.topic}/${message.partition}/${message.offset}\n`)
    .update(json)
    .digest('base64url')
    .slice(0, 22);
}
