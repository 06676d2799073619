import { createHash } from 'node:crypto';
import type { Event } from '../ingest/model/index.ts';
import type { Alert, RuleSpec } from './types.ts';

/**
 * What made an alert fire (docs/actions.md#explaining-a-decision): its figures, the
 * window it looked at in event time, the rule's content hash and source file, and a
 * bounded sample of the events that counted.
 *
 * The sample comes from one ring the engine keeps of the events rules matched, not from
 * rule state: nothing is added per key, and nothing to the snapshot (after a restart the
 * ring refills from the replayed stream). Events are written by whoever sends them, so
 * everything here is bounded:
 * - the ring holds at most EVIDENCE_RING references to matched events (each at most the
 *   bus's maxEventBytes, 1 MiB by default): at most that many events kept alive beyond
 *   their batch, whatever the number of rules or keys;
 * - an explanation shows at most EVIDENCE_EVENTS events, each rendered from at most
 *   EVIDENCE_FIELDS fields with string values clipped to EVIDENCE_VALUE_CHARS characters
 *   (nested values are not walked), at most EVIDENCE_EVENT_BYTES bytes of JSON per
 *   event (the fields beyond give way to a marker), and at most EVIDENCE_BYTES in all; the
 *   rest is counted, not shown. Rendering reads a bounded part of each event: its cost
 *   does not grow with the event's size.
 */
export const EVIDENCE_RING = 128;
export const EVIDENCE_EVENTS = 10;
export const EVIDENCE_FIELDS = 64;
export const EVIDENCE_VALUE_CHARS = 256;
export const EVIDENCE_EVENT_BYTES = 2 * 1024;
export const EVIDENCE_BYTES = 16 * 1024;

export interface Explanation {
  /** The rule's content hash (sha256 of its definition) and the file it came from. */
  rule: { name: string; hash: string; file?: string };
  figures: Record<string, unknown>;
  /** The window the rule looked at, in event time (ISO 8601); spike: its reference window too. */
  window: { from: string; to: string; reference?: { from: string; to: string } };
  /** Events that counted, newest last, rendered within the bounds above. */
  events: Array<Record<string, unknown>>;
  /** Matched events of this rule and key within the window the ring still held. */
  eventsSeen: number;
  /** Events seen but not shown (over EVIDENCE_EVENTS or EVIDENCE_BYTES). */
  eventsOmitted: number;
}

interface Entry {
  rule: string;
  key: string;
  t: number;
  event: Event;
}

/** The ring of recently matched events: O(1) per matched event, no allocation once full. */
export class EvidenceRing {
  private readonly entries: Array<Entry | undefined>;
  private next = 0;

  constructor(readonly size = EVIDENCE_RING) {
    this.entries = new Array<Entry | undefined>(size);
  }

  push(rule: string, key: string, event: Event, t: number): void {
    const slot = this.entries[this.next];
    if (slot) {
      slot.rule = rule;
      slot.key = key;
      slot.t = t;
      slot.event = event;
    } else this.entries[this.next] = { rule, key, t, event };
    this.next = (this.next + 1) % this.size;
  }

  /** Matched events of `rule` and `key` with times in [from, to], oldest first. */
  find(rule: string, key: string, from: number, to: number): Event[] {
    const found: Array<Entry> = [];
    for (let i = 0; i < this.size; i++) {
      const e = this.entries[(this.next + i) % this.size];
      if (e && e.rule === rule && e.key === key && e.t >= from && e.t <= to) found.push(e);
    }
    return found.sort((a, b) => a.t - b.t).map((e) => e.event);
  }
}

/** The window a rule looked at when it fired at `at` (epoch ms). */
export function windowOf(
  rule: RuleSpec,
  at: number,
): { from: number; to: number; reference?: { from: number; to: number } } {
  switch (rule.type) {
    case 'any':
      return { from: at, to: at };
    case 'spike':
      return {
        from: at - rule.timeframe,
        to: at,
        reference: { from: at - 2 * rule.timeframe, to: at - rule.timeframe },
      };
    case 'new_term':
      return { from: at - rule.terms_window_size, to: at };
    case 'expiry':
      return { from: at - rule.ttl, to: at };
    case 'change':
      return { from: rule.timeframe === undefined ? at : at - rule.timeframe, to: at };
    default:
      return { from: at - rule.timeframe, to: at };
  }
}

const hashes = new WeakMap<RuleSpec, string>();

/** sha256 of the rule's definition (every option, in a stable order; not where it was read from). */
export function ruleHash(rule: RuleSpec): string {
  let h = hashes.get(rule);
  if (h === undefined) {
    const { source: _s, ...content } = rule;
    h = createHash('sha256').update(stableStringify(content)).digest('hex');
    hashes.set(rule, h);
  }
  return h;
}

/** The explanation of an alert of `rule`, whose key string (RuleRunner.keyOf) is `key`. */
export function explain(
  rule: RuleSpec,
  alert: Alert,
  key: string | undefined,
  ring: EvidenceRing | undefined,
): Explanation {
  const at = Date.parse(alert.at);
  const w = windowOf(rule, at);
  const seen =
    ring && key !== undefined
      ? ring.find(rule.name, key, Math.min(w.from, w.reference?.from ?? w.from), w.to)
      : [];
  // Newest first until a bound is reached, then shown oldest first.
  const events: Array<Record<string, unknown>> = [];
  let bytes = 0;
  for (let i = seen.length - 1; i >= 0 && events.length < EVIDENCE_EVENTS; i--) {
    const rendered = renderEvent(seen[i]!);
    const size = Buffer.byteLength(JSON.stringify(rendered));
    if (bytes + size > EVIDENCE_BYTES) break;
    bytes += size;
    events.push(rendered);
  }
  events.reverse();
  const iso = (t: number) => (Number.isFinite(t) ? new Date(t).toISOString() : String(t));
  return {
    rule: {
      name: rule.name,
      hash: ruleHash(rule),
      ...(rule.source?.file !== undefined && { file: rule.source.file }),
    },
    figures: alert.figures,
    window: {
      from: iso(w.from),
      to: iso(w.to),
      ...(w.reference && { reference: { from: iso(w.reference.from), to: iso(w.reference.to) } }),
    },
    events,
    eventsSeen: seen.length,
    eventsOmitted: seen.length - events.length,
  };
}

/**
 * An event within the bounds above: its first fields (at most EVIDENCE_FIELDS, at most
 * EVIDENCE_EVENT_BYTES of JSON), strings clipped with a marker, nested values replaced
 * by a marker of their kind (never walked), and a `…fields` marker when fields were left
 * out. `for…in` stops at the bound, so an event with a million fields costs no more than
 * one with sixty-four.
 */
export function renderEvent(event: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let n = 0;
  let bytes = 2;
  let more = false;
  for (const name in event) {
    if (!Object.hasOwn(event, name)) continue;
    if (n === EVIDENCE_FIELDS) {
      more = true;
      break;
    }
    const field = clipText(name);
    const v = event[name];
    let value: unknown;
    if (typeof v === 'string') value = clipText(v);
    else if (typeof v === 'number' || typeof v === 'boolean' || v === null) value = v;
    else if (Array.isArray(v)) value = `[array of ${v.length}]`;
    else value = `[${typeof v}]`;
    // Bounded strings: measuring them is bounded too.
    const size =
      Buffer.byteLength(JSON.stringify(field)) + Buffer.byteLength(JSON.stringify(value)) + 2;
    // Room is kept for the marker (under 100 bytes).
    if (bytes + size > EVIDENCE_EVENT_BYTES - 100) {
      more = true;
      break;
    }
    bytes += size;
    n++;
    out[field] = value;
  }
  if (more) out['…fields'] = `${n} fields shown; the rest not shown (bounds of an explanation)`;
  return out;
}

function clipText(s: string): string {
  return s.length <= EVIDENCE_VALUE_CHARS
    ? s
    : `${s.slice(0, EVIDENCE_VALUE_CHARS)}… (${s.length} characters)`;
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
