/**
 * The hot path (docs/architecture.md#performance-budget): Drover's engine evaluating a
 * realistic mix of rules with their windows, against json-rules-engine doing only the
 * filtering and against JSON.parse of the same events — measured side by side in one run.
 */

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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
  /** Rounds of the per-process figure (`forked`); 0 leaves it out. */
  forkedRounds: number;
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
    forkedRounds: get('--forked-rounds', 5),
  };
}

/**
 * Times several passes side by side: each round runs every pass once, in turn, and
 * each pass keeps its best round. Interleaving exposes all of them to the same noise
 * of a shared machine, so their ratios hold even when absolute figures wander. A pass
 * returns the ms of its own that are set-up, not the work measured (a new engine's
 * build): `best` leaves them out, `bestWhole` keeps them.
 */
function timeInterleaved(
  passes: Array<() => number>,
  rounds = 7,
): { best: number[]; bestWhole: number[] } {
  for (const pass of passes) pass(); // warm up
  const best = passes.map(() => Number.POSITIVE_INFINITY);
  const bestWhole = passes.map(() => Number.POSITIVE_INFINITY);
  for (let round = 0; round < rounds; round++) {
    passes.forEach((pass, i) => {
      const start = process.hrtime.bigint();
      const setUp = pass();
      const whole = Number(process.hrtime.bigint() - start) / 1e6;
      best[i] = Math.min(best[i]!, whole - setUp);
      bestWhole[i] = Math.min(bestWhole[i]!, whole);
    });
  }
  return { best, bestWhole };
}

function servicesFor(rules: number): number {
  // Five rules per service, as in the mix: the fleet grows with the rule set.
  return Math.max(1, Math.floor(rules / 5));
}

interface Measured {
  rules: number;
  events: number;
  drover_events_per_s: number;
  /** The same with each pass's engine build counted (see droverPass). */
  drover_events_per_s_with_build: number;
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
  /** Returns 0: all of it is the work measured. */
  parsePass: () => number;
  /**
   * A fresh engine over the whole stream. Returns the ms its build took: a server builds
   * its engine once at start (and at each rule reload), not per batch of events, and at
   * 1,000 rules a build early in a process, its code not yet optimized, costs 15–50 ms
   * (a warm one about 5), so the figures leave it out; `*_with_build` keep it.
   */
  droverPass: () => number;
  /** droverPass in its two parts. */
  build: () => Engine;
  run: (engine: Engine) => void;
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
      return 0;
    },
    droverPass: () => {
      const start = process.hrtime.bigint();
      const engine = setup.build();
      const buildMs = Number(process.hrtime.bigint() - start) / 1e6;
      setup.run(engine);
      return buildMs;
    },
    build: () => {
      setup.alerts = 0;
      return new Engine(rules, { allowedLatenessMs: 5_000, onAlert: () => setup.alerts++ });
    },
    run: (engine) => {
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
  droverWholeMs: number,
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
    drover_events_per_s_with_build: perS(events.length, droverWholeMs),
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

/**
 * One rule count in a process of its own (`--one N`): a warm-up pass, then the best of
 * PASSES passes by CPU time (`process.cpuUsage`: every thread of the process, so the
 * garbage collector's helpers count) and by wall time, each without the engine's build
 * (see droverPass) and, `*_with_build`, with it. Printed as one JSON line.
 */
const PASSES = 5;

async function one(ruleCount: number, options: Options): Promise<number> {
  const setup = prepare(ruleCount, options);
  setup.droverPass();
  const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
  const best = { cpu: Infinity, wall: Infinity, cpuWhole: Infinity, wallWhole: Infinity };
  let buildCpu = Infinity;
  for (let i = 0; i < PASSES; i++) {
    const c0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    const engine = setup.build();
    const c1 = process.cpuUsage();
    const w1 = process.hrtime.bigint();
    setup.run(engine);
    const w2 = process.hrtime.bigint();
    const c2 = process.cpuUsage();
    const run = cpuMs(c2) - cpuMs(c1);
    best.cpu = Math.min(best.cpu, run);
    best.cpuWhole = Math.min(best.cpuWhole, cpuMs(c2) - cpuMs(c0));
    best.wall = Math.min(best.wall, Number(w2 - w1) / 1e6);
    best.wallWhole = Math.min(best.wallWhole, Number(w2 - w0) / 1e6);
    buildCpu = Math.min(buildCpu, cpuMs(c1) - cpuMs(c0));
  }
  process.stdout.write(
    `${JSON.stringify({
      rules: ruleCount,
      cpu_ms: best.cpu,
      wall_ms: best.wall,
      cpu_ms_with_build: best.cpuWhole,
      wall_ms_with_build: best.wallWhole,
      build_cpu_ms: buildCpu,
      alerts: setup.alerts,
    })}\n`,
  );
  return 0;
}

interface OneResult {
  cpu_ms: number;
  wall_ms: number;
  cpu_ms_with_build: number;
  wall_ms_with_build: number;
  build_cpu_ms: number;
  alerts: number;
}

function child(ruleCount: number, options: Options): Promise<OneResult> {
  const script = fileURLToPath(new URL('./index.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        ...process.execArgv,
        script,
        'hot-path',
        '--one',
        String(ruleCount),
        '--events',
        String(options.events),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`hot-path --one ${ruleCount} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as OneResult);
    });
  });
}

/**
 * The scaling figure with each rule count in processes of its own, alternating (100
 * then 1,000, then 1,000 then 100, ...): a round's ratio is the 100-rule pass's CPU time
 * over the 1,000-rule one's (both the same events), the figure their median. In one
 * process (the interleaved figure) each engine's passes run beside the other's heap and
 * on code whose type feedback both shaped; separate processes measure each deployment
 * as it runs, as JMH forks a JVM per benchmark. Without the engine's build (`ratio`,
 * `scaling_1000_vs_100_cpu`) and with it (`ratio_with_build`, and its median).
 */
async function forked(options: Options) {
  const rounds: Array<{
    cpu_ms_100: number;
    cpu_ms_1000: number;
    build_cpu_ms_100: number;
    build_cpu_ms_1000: number;
    cpu_ms_with_build_100: number;
    cpu_ms_with_build_1000: number;
    ratio: number;
    ratio_with_build: number;
    wall_ratio: number;
  }> = [];
  for (let r = 0; r < options.forkedRounds; r++) {
    const order = r % 2 === 0 ? [100, 1000] : [1000, 100];
    const got = new Map<number, OneResult>();
    for (const n of order) got.set(n, await child(n, options));
    const a = got.get(100)!;
    const b = got.get(1000)!;
    rounds.push({
      cpu_ms_100: Math.round(a.cpu_ms),
      cpu_ms_1000: Math.round(b.cpu_ms),
      build_cpu_ms_100: Math.round(a.build_cpu_ms * 10) / 10,
      build_cpu_ms_1000: Math.round(b.build_cpu_ms * 10) / 10,
      cpu_ms_with_build_100: Math.round(a.cpu_ms_with_build),
      cpu_ms_with_build_1000: Math.round(b.cpu_ms_with_build),
      ratio: Math.round((a.cpu_ms / b.cpu_ms) * 100) / 100,
      ratio_with_build: Math.round((a.cpu_ms_with_build / b.cpu_ms_with_build) * 100) / 100,
      wall_ratio: Math.round((a.wall_ms / b.wall_ms) * 100) / 100,
    });
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length === 0 ? null : s[Math.floor(s.length / 2)]!;
  };
  return {
    rounds,
    scaling_1000_vs_100_cpu: median(rounds.map((x) => x.ratio)),
    scaling_1000_vs_100_cpu_with_build: median(rounds.map((x) => x.ratio_with_build)),
    scaling_1000_vs_100_wall: median(rounds.map((x) => x.wall_ratio)),
  };
}

export async function hotPath(args: string[]): Promise<number> {
  const options = parseOptions(args);
  const oneAt = args.indexOf('--one');
  if (oneAt >= 0) return one(Number(args[oneAt + 1]), options);
  const setups = options.ruleCounts.map((count) => prepare(count, options));
  // Every pass of every rule count in one interleaved timing, so their ratios compare.
  const { best, bestWhole } = timeInterleaved(setups.flatMap((s) => [s.parsePass, s.droverPass]));
  const results: Measured[] = [];
  for (const [i, setup] of setups.entries()) {
    results.push(
      await measure(setup, best[2 * i]!, best[2 * i + 1]!, bestWhole[2 * i + 1]!, options),
    );
  }
  const [at100, at1000] = results as [Measured, Measured];
  const summary = {
    ...at100,
    at_1000_rules: at1000,
    scaling_1000_vs_100:
      Math.round((at1000.drover_events_per_s / at100.drover_events_per_s) * 100) / 100,
    scaling_1000_vs_100_with_build:
      Math.round(
        (at1000.drover_events_per_s_with_build / at100.drover_events_per_s_with_build) * 100,
      ) / 100,
    forked: options.forkedRounds > 0 ? await forked(options) : null,
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
      `1000 rules run at ${summary.scaling_1000_vs_100}× the throughput of 100 (${summary.scaling_1000_vs_100_with_build}× with each pass's engine build)\n`,
    );
    if (summary.forked)
      process.stdout.write(
        `each rule count in its own processes, ${summary.forked.rounds.length} rounds: 1000 rules at ${summary.forked.scaling_1000_vs_100_cpu}× the throughput of 100 by CPU time (${summary.forked.rounds.map((r) => r.ratio).join(', ')}; ${summary.forked.scaling_1000_vs_100_cpu_with_build}× with the engine's build), ${summary.forked.scaling_1000_vs_100_wall}× by wall time\n`,
      );
    process.stdout.write(`targets: ${JSON.stringify(summary.targets)}\n`);
  }
  return summary.targets.agree ? 0 : 1;
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}
