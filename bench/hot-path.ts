/**
 * The hot path (docs/architecture.md#performance-budget): Drover's engine evaluating a
 * realistic mix of rules with their windows, against json-rules-engine doing only the
 * filtering and against JSON.parse of the same events — measured side by side in one run.
 */

import { type Event, normalize } from '../ingest/model/index.ts';
import {
  compileFilter,
  createReferenceEngine,
  Engine,
  type RuleSpec,
  toRuleConditions,
} from '../rules/index.ts';
import { generateFleet } from './fleet.ts';
import { ruleMix } from './rule-mix.ts';

interface Options {
  events: number;
  /** json-rules-engine is slow; it runs on a prefix of the stream. */
  referenceEvents: number;
  ruleCounts: number[];
  json: boolean;
}

function parseOptions(args: string[]): Options {
  const get = (flag: string, fallback: number) => {
    const i = args.indexOf(flag);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  return {
    events: get('--events', 200_000),
    referenceEvents: get('--reference-events', 5_000),
    ruleCounts: [100, 1000],
    json: args.includes('--json'),
  };
}

/**
 * Times several passes side by side: each round runs every pass once, in turn, and
 * each pass keeps its best round. Interleaving exposes all of them to the same noise
 * of a shared machine, so their ratios hold even when absolute figures wander.
 */
function timeInterleaved(passes: Array<() => void>, rounds = 7): number[] {
  for (const pass of passes) pass(); // warm up
  const best = passes.map(() => Number.POSITIVE_INFINITY);
  for (let round = 0; round < rounds; round++) {
    passes.forEach((pass, i) => {
      const start = process.hrtime.bigint();
      pass();
      best[i] = Math.min(best[i]!, Number(process.hrtime.bigint() - start) / 1e6);
    });
  }
  return best;
}

function servicesFor(rules: number): number {
  // Five rules per service, as in the mix: the fleet grows with the rule set.
  return Math.max(1, Math.floor(rules / 5));
}

interface Measured {
  rules: number;
  events: number;
  drover_events_per_s: number;
  json_rules_engine_events_per_s: number;
  json_parse_events_per_s: number;
  speedup_vs_json_rules_engine: number;
  drover_vs_json_parse: number;
  agree: boolean;
  verdicts_compared: number;
  alerts: number;
  keys: number;
  bytes_per_key: number;
  heap_used_mib: number;
}

interface Setup {
  rules: RuleSpec[];
  events: Event[];
  lines: string[];
  engine?: Engine;
  alerts: number;
  parsePass: () => void;
  droverPass: () => void;
}

function prepare(ruleCount: number, options: Options): Setup {
  const rules = ruleMix(ruleCount);
  const raw = generateFleet({
    services: servicesFor(ruleCount),
    replicas: 5,
    events: options.events,
    seed: 7,
  });
  const events: Event[] = raw.map((r) => normalize(r));
  // JSON.parse of the same events, serialized as they were normalized; and Drover with
  // every rule and its windows on the whole stream, a fresh engine per pass.
  const lines = events.map((e) => JSON.stringify(e));
  const setup: Setup = {
    rules,
    events,
    lines,
    alerts: 0,
    parsePass: () => {
      for (let i = 0; i < lines.length; i++) JSON.parse(lines[i]!);
    },
    droverPass: () => {
      setup.alerts = 0;
      const engine = new Engine(rules, { allowedLatenessMs: 5_000, onAlert: () => setup.alerts++ });
      for (let i = 0; i < events.length; i++) engine.process(events[i]!);
      setup.engine = engine;
    },
  };
  return setup;
}

async function measure(
  setup: Setup,
  parseMs: number,
  droverMs: number,
  options: Options,
): Promise<Measured> {
  const { rules, events } = setup;
  const stats = setup.engine!.stats();
  const keys = stats.reduce((n, r) => n + r.keys + (r.terms ?? 0), 0);
  const bytes = stats.reduce((n, r) => n + r.bytes, 0);

  // json-rules-engine evaluating only the filters, one engine holding every rule.
  const reference = createReferenceEngine();
  rules.forEach((rule, i) => {
    reference.addRule({
      conditions: toRuleConditions(rule.filter) as never,
      event: { type: String(i) },
      priority: 1,
    });
  });
  // The same number of rule evaluations at every rule count keeps the reference run short.
  const sample = events.slice(
    0,
    Math.max(200, Math.round((options.referenceEvents * 100) / rules.length)),
  );
  const referenceVerdicts: Set<number>[] = [];
  const startRef = process.hrtime.bigint();
  for (const e of sample) {
    const { events: matched } = await reference.run({ ...e });
    referenceVerdicts.push(new Set(matched.map((m) => Number(m.type))));
  }
  const refMs = Number(process.hrtime.bigint() - startRef) / 1e6;

  // The compiled filters must give identical verdicts on the same events.
  const compiled = rules.map((r) => compileFilter(r.filter));
  let agree = true;
  let compared = 0;
  sample.forEach((e, i) => {
    compiled.forEach((filter, r) => {
      compared++;
      if (filter(e) !== referenceVerdicts[i]!.has(r)) agree = false;
    });
  });

  const perS = (n: number, ms: number) => Math.round((n / ms) * 1000);
  const drover = perS(events.length, droverMs);
  const jre = perS(sample.length, refMs);
  const parse = perS(setup.lines.length, parseMs);
  return {
    rules: rules.length,
    events: events.length,
    drover_events_per_s: drover,
    json_rules_engine_events_per_s: jre,
    json_parse_events_per_s: parse,
    speedup_vs_json_rules_engine: Math.round((drover / jre) * 10) / 10,
    drover_vs_json_parse: Math.round((drover / parse) * 100) / 100,
    agree,
    verdicts_compared: compared,
    alerts: setup.alerts,
    keys,
    bytes_per_key: keys === 0 ? 0 : Math.round(bytes / keys),
    heap_used_mib: Math.round(process.memoryUsage().heapUsed / 1048576),
  };
}

export async function hotPath(args: string[]): Promise<number> {
  const options = parseOptions(args);
  const setups = options.ruleCounts.map((count) => prepare(count, options));
  // Every pass of every rule count in one interleaved timing, so their ratios compare.
  const times = timeInterleaved(setups.flatMap((s) => [s.parsePass, s.droverPass]));
  const results: Measured[] = [];
  for (const [i, setup] of setups.entries()) {
    results.push(await measure(setup, times[2 * i]!, times[2 * i + 1]!, options));
  }
  const [at100, at1000] = results as [Measured, Measured];
  const summary = {
    ...at100,
    at_1000_rules: at1000,
    scaling_1000_vs_100:
      Math.round((at1000.drover_events_per_s / at100.drover_events_per_s) * 100) / 100,
    targets: {
      speedup_at_least_100x: at100.speedup_vs_json_rules_engine >= 100,
      faster_than_json_parse: at100.drover_events_per_s > at100.json_parse_events_per_s,
      thousand_rules_at_least_half: at1000.drover_events_per_s >= at100.drover_events_per_s / 2,
      agree: at100.agree && at1000.agree,
    },
    node: process.version,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    const row = (r: Measured) =>
      `${String(r.rules).padStart(5)} rules  drover ${fmt(r.drover_events_per_s)}/s  json-rules-engine ${fmt(r.json_rules_engine_events_per_s)}/s  JSON.parse ${fmt(r.json_parse_events_per_s)}/s  ×${r.speedup_vs_json_rules_engine} vs jre  ${r.drover_vs_json_parse}× JSON.parse  agree=${r.agree} (${fmt(r.verdicts_compared)} verdicts)  ${fmt(r.keys)} keys, ${r.bytes_per_key} B/key`;
    process.stdout.write(`hot path, ${fmt(at100.events)} events, ${process.version}\n`);
    for (const r of results) process.stdout.write(`${row(r)}\n`);
    process.stdout.write(
      `1000 rules run at ${summary.scaling_1000_vs_100}× the throughput of 100\n`,
    );
    process.stdout.write(`targets: ${JSON.stringify(summary.targets)}\n`);
  }
  return summary.targets.agree ? 0 : 1;
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}
