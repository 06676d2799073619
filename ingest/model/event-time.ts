/**
 * The range of event times ingest accepts. An event's time moves the rules' watermark
 * (event time), so a time far in the future would make every honest event late, and
 * one past what a Date can hold makes the rules engine and the indexers throw on it.
 *
 * - Not before 1970-01-01T00:00:00Z: nothing Drover watches logged earlier, and a
 *   negative epoch is far more often a unit mistake than a real time.
 * - Not more than MAX_FUTURE_MS past the receiver's wall clock: shippers' clocks drift
 *   by seconds, not minutes, and a few minutes of future is as far as an event may
 *   pull the watermark ahead of real time.
 */
export const MIN_EVENT_TIME = 0;
export const MAX_FUTURE_MS = 5 * 60_000;

/**
 * The latest time accepted, read from the wall clock only when a time passes the
 * cached one: the clock only moves forward, so the cache errs on the safe side and the
 * hot path reads no clock.
 */
let latest = Date.now() + MAX_FUTURE_MS;

/** Whether `ms` (epoch milliseconds) is a time an event may carry. */
export function isEventTime(ms: number): boolean {
  if (!(ms >= MIN_EVENT_TIME)) return false; // NaN included
  if (ms <= latest) return true;
  latest = Date.now() + MAX_FUTURE_MS;
  return ms <= latest;
}

/** At most this many characters of a sender's value are quoted in an error. */
const QUOTED_CHARS = 64;

/** Why a time is refused, quoting at most QUOTED_CHARS of what was sent. */
export function eventTimeError(field: string, sent: unknown, ms: number): string {
  let shown = typeof sent === 'string' ? JSON.stringify(sent) : String(sent);
  if (shown.length > QUOTED_CHARS)
    shown = `${shown.slice(0, QUOTED_CHARS)}… (${shown.length} characters)`;
  const when =
    Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? ` (${new Date(ms).toISOString()})` : '';
  return `${field} ${shown}${when} is out of range: event times must fall between 1970-01-01T00:00:00Z and ${MAX_FUTURE_MS / 60_000} minutes past the receiver's clock`;
}
