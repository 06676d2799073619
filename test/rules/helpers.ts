import type { Event } from '../../ingest/model/index.ts';
import { type Alert, Engine, type EngineOptions, type RuleSpec } from '../../rules/index.ts';

export const T0 = Date.parse('2024-01-01T00:00:00Z');
export const s = (n: number) => n * 1000;
export const m = (n: number) => n * 60_000;

/** A rule with the loader's defaults, for engine tests that don't go through YAML. */
export function rule<R extends RuleSpec>(spec: Partial<R> & { name: string; type: R['type'] }): R {
  return {
    query_key: [],
    realert: 0,
    labels: {},
    actions: [],
    enabled: true,
    ...spec,
  } as unknown as R;
}

export function ev(offsetMs: number, fields: Record<string, unknown> = {}): Event {
  return { '@timestamp': T0 + offsetMs, ...fields };
}

export interface Run {
  alerts: Alert[];
  engine: Engine;
}

/** Feeds events in order and ends time at `end` (offset), as a backtest does. */
export function run(
  rules: RuleSpec[],
  events: Event[],
  options: { end?: number; lateness?: number; from?: number } & Partial<EngineOptions> = {},
): Run {
  const alerts: Alert[] = [];
  const engine = new Engine(rules, {
    allowedLatenessMs: options.lateness ?? 0,
    observedFrom: T0,
    alertFrom: options.from === undefined ? undefined : T0 + options.from,
    onAlert: (a) => alerts.push(a),
  });
  for (const e of events) engine.process(e);
  engine.finish(options.end === undefined ? undefined : T0 + options.end);
  return { alerts, engine };
}

/** Offsets (ms from T0) at which alerts fired. */
export function offsets(alerts: Alert[]): number[] {
  return alerts.map((a) => Date.parse(a.at) - T0);
}

export function every(
  startMs: number,
  count: number,
  stepMs: number,
  fields: Record<string, unknown> = {},
): Event[] {
  return Array.from({ length: count }, (_, i) => ev(startMs + i * stepMs, fields));
}
