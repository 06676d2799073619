/**
 * Scale-out of the rules tier on Kafka (docs/scale-out.md), issue 15's benchmark:
 *
 * - events per CPU second of 1, 2 and 3 rules workers (real `drover serve --roles
 *   rules,actions` processes sharing the rules group) over the same seeded fleet stream
 *   on a 6-partition topic; the CPU is the workers' own (utime + stime from
 *   /proc/PID/stat), counted from the moment every worker holds its tasks until every
 *   event is processed, so start-up is left out and snapshots, heartbeats and the merge
 *   are in. `cpu_ratio_3_vs_1` is 3 workers' total CPU per event over one worker's.
 * - `agree`: the union of the workers' alerts equals, alert for alert (rule, key, time),
 *   `drover backtest` on the same events, in every run.
 * - restore time per task against its state size: the last run's workers stop (a final
 *   snapshot of each task to the changelog), then each task's latest snapshot is read
 *   from the changelog, parsed and restored into an engine here, timed per task; and a
 *   fresh worker restoring all six (its `drover_rules_task_restore_seconds`).
 * - `kafka_ingest_vs_json_parse`: HTTP NDJSON into Kafka per server CPU second against
 *   JSON.parse on one core (bench/ingest.ts's measure), and
 *   `rules_consumer_events_per_cpu_s`: the rules consumer from Kafka through the merge
 *   into an engine (bench/rules-consumer.ts's measure), with the bus's default codec
 *   (lz4 since 2026-12-05); `kafka_ingest_gzip_vs_json_parse` and
 *   `rules_consumer_gzip_events_per_cpu_s` are the same with gzip, the default before,
 *   so that figures from before and after the change compare.
 *
 * Uses KAFKA_BROKERS, or starts a single-node Kafka as the tests do (test/servers/kafka.ts).
 *
 * To compare builds and find where the CPU goes (bench/README.md, "Scale-out on Kafka"):
 * `--before PATH` runs each worker count with another build's bin/drover.js too, just
 * before this build's, and `--repeat N` runs the whole sequence N times, so the two
 * builds' ratios come from the same run, side by side; `--node-args "ARGS"` passes node
 * options to the workers (`--cpu-prof --cpu-prof-dir=DIR`: a profile per worker, written
 * at its stop); `--pin CPUS` pins every worker's threads to those CPUs (taskset);
 * `--warm-up` publishes the first third and waits for the workers to process it before
 * the rest (the `warm` figure is then the last two thirds' exactly); `--workers-only`
 * leaves out the restore, ingest and consumer figures. Each worker's CPU is also split
 * by thread (`main`, `others`), `sys` time, and `sched` (/proc's schedstat, ns-exact).
 *
 * `--warm-up-per-worker W`: each worker count also runs steady: its workers first process
 * workers × W events of the same fleet (not counted), then the `--events` measured, the
 * same events for every count; `cpu_ratio_3_vs_1_steady` is three workers' CPU for them
 * over one's, beside the whole-run `cpu_ratio_3_vs_1` (from the workers' start). A worker
 * that has run a while, as in production, is the steady case. `--variant "ARGS"` runs
 * each step a second time with these node options for the workers (build `variant`),
 * just before this build's plain run: a V8 flag's effect, side by side in one run.
 * `--node PATH` runs every build's workers on another Node.js binary (Node.js 24 from
 * test/node-runtime.sh's cache, say), `--variant-node PATH` only the variant's: two
 * runtimes side by side in one run. The summary's `builds[].node` says which ran.
 *
 * `--global`: each worker count also runs with `rules.partitionFields: [service.name]`
 * (the Kubernetes default: the mix's 50 `host.name` rules then run in the global task,
 * docs/scale-out.md), beside the runs where every rule is partitioned, in the same
 * sequence. With two or more workers the global task's events per CPU second is
 * estimated: the standbys' CPU per event is the partition tasks' (they hold only
 * those), and the owner's CPU less its partition events at that rate is the global
 * task's (`global` in the summary).
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkajs } from '../ingest/bus/kafkajs.ts';
import { createKafkaBus } from '../ingest/bus/index.ts';
import { chooseHead } from '../ingest/bus/kafka-changelog.ts';
import { normalize } from '../ingest/model/index.ts';
import { Engine, type EngineSnapshot } from '../rules/index.ts';
import { ensureBuilt } from '../test/support/build.ts';
import {
  BIN,
  killServes,
  type Served,
  startServe,
  stopServe,
  until,
} from '../test/support/drover.ts';
import { type AlertView, alertView, byAlert } from '../test/support/fleet-stream.ts';
import { generateFleet } from './fleet.ts';
import { kafkaIngestRatio } from './ingest.ts';
import { ruleMix } from './rule-mix.ts';
import { consumeInto } from './rules-consumer.ts';
import { option } from './args.ts';
import { kafkaForBench } from './kafka-server.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

export const TASKS = 6;
const LATENESS_MS = 5_000;
/** How long the workers' CPU is sampled with nothing to process, after each run. */
const IDLE_MS = 10_000;
/** `GET /v1/alerts` answers a worker's latest 1,000 alerts. */
const ALERTS_KEPT = 1_000;
const DURATION_FIELDS = ['timeframe', 'realert', 'ttl', 'terms_window_size'];

/** The hot-path mix as rule files (as bench/soak.ts writes them). */
export function writeRules(dir: string, count: number): void {
  mkdirSync(dir, { recursive: true });
  for (const [i, rule] of ruleMix(count).entries()) {
    const spec: Record<string, unknown> = { ...rule };
    for (const f of DURATION_FIELDS) if (typeof spec[f] === 'number') spec[f] = `${spec[f]}ms`;
    if ((spec.query_key as string[]).length === 0) delete spec.query_key;
    writeFileSync(join(dir, `${String(i).padStart(3, '0')}.yaml`), `${JSON.stringify(spec)}\n`);
  }
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU milliseconds a process has used (user + system), from /proc. */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/**
 * A process's CPU milliseconds on its main thread and on the others (V8's compiler and
 * GC helpers, libuv's pool), `sys` the system time of them all (clock ticks, as
 * cpuMsOf), and `sched` the same total as the scheduler counts it (schedstat, in ns, not
 * sampled at ticks), from /proc/PID/task. A thread that exited between two readings is
 * missing from the later one.
 */
function threadsOf(pid: number): Record<string, number> {
  const out: Record<string, number> = { sys: 0, sched: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : 'others';
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const user = (Number(fields[11]) * 1000) / CLK_TCK;
      const sys = (Number(fields[12]) * 1000) / CLK_TCK;
      out[name] = (out[name] ?? 0) + user + sys;
      out.sys! += sys;
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      out.sched! += ns / 1e6;
    } catch {
      // The thread exited meanwhile.
    }
  }
  return out;
}

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, Math.round(v - (b[k] ?? 0))]));
}

interface WorkerMetrics {
  tasks: number;
  lag: number;
  held: number;
  events: number;
  late: number;
  restoreSeconds: number;
  /** Bus batches (one partition's messages of one fetch) the rules handled. */
  batches: number;
  /** Events the global task processed here (its owner's; counted apart from `events`). */
  globalEvents: number;
  /** 1 on the global task's owner. */
  globalHeld: number;
}

/** `/metrics` scrapes of each worker (by URL) so far: each costs the worker CPU. */
const scrapes = new Map<string, number>();

async function metricsOf(w: Served): Promise<WorkerMetrics> {
  scrapes.set(w.url, (scrapes.get(w.url) ?? 0) + 1);
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const one = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  const sum = (prefix: string, must?: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(prefix) && (must === undefined || l.includes(must)))
      .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  return {
    tasks: one('drover_rules_tasks_assigned'),
    // The partition tasks' group and the global task's.
    lag:
      sum('drover_bus_lag_messages{', 'rules"') + sum('drover_bus_lag_messages{', 'rules-global"'),
    held: one('drover_rules_held_events'),
    events: one('drover_rule_events_total'),
    late: sum('drover_rule_late_events_total'),
    restoreSeconds: one('drover_rules_task_restore_seconds_sum'),
    batches: one('drover_rule_evaluation_seconds_count'),
    globalEvents: one('drover_rules_global_events_total'),
    globalHeld: one('drover_rules_global_task_assigned'),
  };
}

/**
 * Every worker assigned in one generation, all tasks held, each worker some; with
 * `global`, one of them holding the global task.
 */
export async function settled(workers: Served[], global = false): Promise<void> {
  await until(
    `${workers.length} workers to share the ${TASKS} tasks`,
    async () => {
      const generations = workers.map((w) => {
        const lines = w
          .log()
          .split('\n')
          .filter((l) => l.includes('"msg":"rules tasks assigned"'));
        return Number(/"generation":(\d+)/.exec(lines.at(-1) ?? '')?.[1] ?? -1);
      });
      if (generations.some((g) => g !== generations[0] || g < 0)) return false;
      const ms = await Promise.all(workers.map(metricsOf));
      if (global && ms.reduce((n, m) => n + m.globalHeld, 0) !== 1) return false;
      return ms.reduce((n, m) => n + m.tasks, 0) === TASKS && ms.every((m) => m.tasks > 0);
    },
    120_000,
  );
}

type WorkerAlert = AlertView & { id: string };

/** Every alert a worker logged (`"msg":"alert"`, serve.ts's onAlert), in order. */
function alertsLogged(w: Served): WorkerAlert[] {
  return w
    .log()
    .split('\n')
    .filter((l) => l.includes('"msg":"alert"'))
    .map((l) => (JSON.parse(l) as { alert: WorkerAlert }).alert);
}

async function alertsOf(workers: Served[]): Promise<WorkerAlert[][]> {
  return Promise.all(
    workers.map(
      async (w) =>
        ((await (await fetch(`${w.url}/v1/alerts`)).json()) as { alerts: WorkerAlert[] }).alerts,
    ),
  );
}

interface Run {
  workers: number;
  /** `partitioned` (every rule in the partition tasks) or `global` (`--global`). */
  mix: string;
  /** Rules in the global task. */
  global_rules: number;
  cpu_ms: number;
  wall_ms: number;
  events_per_cpu_s: number;
  /**
   * The same from when the first third of the events had been processed to the end; null
   * when the poll that saw the third came so late that under a tenth of the events were
   * left (a run shorter than about three polls): too few to be a figure.
   */
  warm_events_per_cpu_s: number | null;
  /** All the workers' CPU with nothing to process, ms per second of wall time. */
  idle_cpu_ms_per_s: number;
  /** The same per worker: what one idle `drover serve --roles rules,actions` costs. */
  idle_cpu_ms_per_s_per_worker: number;
  /** cpu_ms less what idling for the run's wall time costs: the CPU the events took. */
  busy_cpu_ms: number;
  per_worker: Array<{
    cpu_ms: number;
    events: number;
    tasks: number;
    /** Bus batches handled: one partition's messages from one fetch. */
    batches: number;
    /** CPU ms of the run on the main thread and the others, `sys` and `sched` (threadsOf). */
    threads: Record<string, number>;
    /** Events the global task processed in this worker (its owner). */
    global_events: number;
    /** Events this worker processed in a steady run's warm-up, before the figures. */
    warm_up_events: number;
    /** This benchmark's `/metrics` polls of the worker within `cpu_ms` (each costs it CPU). */
    scrapes: number;
    global_task: boolean;
  }>;
  /**
   * With the global task and two or more workers: the standbys' events per CPU second
   * (partition tasks only) and the global task's, estimated as the owner's CPU less its
   * partition events at the standbys' rate.
   */
  partition_events_per_cpu_s?: number;
  global_events_per_cpu_s?: number;
  /** `this` (this checkout's build), `before` (`--before`) or `variant` (`--variant`). */
  build: string;
  /**
   * A steady run (`--warm-up-per-worker W`): its workers processed `warm_up_events`
   * (workers × W) before the figures above, which count only the `--events` after them.
   */
  steady: boolean;
  warm_up_events: number;
  repeat: number;
  alerts: number;
  late_events: number;
  agree: boolean | null;
  disagreement?: string;
}

export async function scaleBench(args: string[]): Promise<number> {
  const count = Number(option(args, '--events', '100000'));
  const ruleCount = Number(option(args, '--rules', '100'));
  const workerCounts = option(args, '--workers', '1,2,3').split(',').map(Number);
  const rounds = Number(option(args, '--rounds', '3'));
  const json = args.includes('--json');
  const repeat = Number(option(args, '--repeat', '1'));
  const before = option(args, '--before', '');
  const nodeArgs = option(args, '--node-args', '')
    .split(' ')
    .filter((a) => a !== '');
  const workersOnly = args.includes('--workers-only');
  const pin = option(args, '--pin', '');
  const warmUp = args.includes('--warm-up');
  const warmUpPerWorker = Number(option(args, '--warm-up-per-worker', '0'));
  const variantArgs = option(args, '--variant', '');
  // `--node PATH`: the workers of every build run on this Node.js binary (default: the one
  // running the benchmark); `--variant-node PATH`: the variant's workers do (with or
  // without `--variant`'s options), so two runtimes' figures come from one run.
  const node = option(args, '--node', '') || undefined;
  const variantNode = option(args, '--variant-node', '') || undefined;
  const mixes = args.includes('--global') ? ['partitioned', 'global'] : ['partitioned'];
  const builds: Array<{ name: string; bin?: string; nodeArgs?: string[]; node?: string }> = [
    ...(before !== '' ? [{ name: 'before', bin: before, node }] : []),
    ...(variantArgs !== '' || variantNode !== undefined
      ? [
          {
            name: 'variant',
            nodeArgs:
              variantArgs !== '' ? variantArgs.split(' ').filter((a) => a !== '') : nodeArgs,
            node: variantNode ?? node,
          },
        ]
      : []),
    { name: 'this', node },
  ];
  /** Each build's workers' Node.js version, as that binary reports it. */
  const versionOf = (bin: string | undefined) =>
    bin === undefined
      ? process.version
      : execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  // `--warm-up-per-worker W`: after each worker count's runs, a steady run of it too.
  const phases = warmUpPerWorker > 0 ? [false, true] : [false];
  const plan = Array.from({ length: repeat }, (_, r) =>
    workerCounts.flatMap((k) =>
      phases.flatMap((steady) =>
        builds.flatMap((b) =>
          (steady ? ['partitioned'] : mixes).map((mix) => ({
            k,
            build: b,
            repeat: r,
            mix,
            steady,
          })),
        ),
      ),
    ),
  ).flat();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  if (!Number.isInteger(count) || count < 1000) throw new RangeError('--events: 1000 or more');
  if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError('--repeat: 1 or more');
  if (!Number.isInteger(warmUpPerWorker) || warmUpPerWorker < 0)
    throw new RangeError('--warm-up-per-worker: 0 or more events');
  if (workerCounts.some((n) => !Number.isInteger(n) || n < 1 || n > TASKS))
    throw new RangeError(`--workers: counts from 1 to ${TASKS}`);

  ensureBuilt();
  const { brokersText, stopKafka } = await kafkaForBench('scale', log);
  const brokers = brokersText.split(',');
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-scale-'));
  try {
    writeRules(join(dir, 'rules'), ruleCount);
    // Event times end three minutes before now: the clock then carries every task's
    // watermark past the data once it is processed, as a backtest's end does.
    const start = Date.now() - Math.round(count * 1.5) - 180_000;
    const raw = generateFleet({ services: 20, replicas: 5, events: count, seed: 7, start });
    /** Events published, the backtest's alerts over them (sorted) and the last event's time. */
    const prepare = (stream: Record<string, unknown>[], name: string) => {
      const events = stream.map((r) => normalize(r));
      const data = join(dir, name);
      writeFileSync(data, `${stream.map((r) => JSON.stringify(r)).join('\n')}\n`);
      const last = events.reduce((m, e) => Math.max(m, e['@timestamp']), -Infinity);
      const bt = spawnSync(
        process.execPath,
        [
          BIN,
          'backtest',
          '--rules',
          join(dir, 'rules'),
          '--data',
          data,
          '--format',
          'json',
          '--lateness',
          `${LATENESS_MS}ms`,
        ],
        { encoding: 'utf8', maxBuffer: 256 << 20 },
      );
      // Exit 1: alerts fired, which this stream is made to do.
      if (bt.status !== 0 && bt.status !== 1)
        throw new Error(`drover backtest failed: ${bt.stderr}`);
      const expected = bt.stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => alertView(JSON.parse(l) as AlertView))
        .sort(byAlert);
      return { events, expected, end: new Date(last).toISOString() };
    };
    const base = prepare(raw, 'fleet.ndjson');
    log(
      `scale: ${count} events, ${ruleCount} rules, ${base.expected.length} alerts in the backtest`,
    );
    // Steady runs (`--warm-up-per-worker W`): with k workers, the last count + k × W
    // events of one longer stream of the same fleet, ending three minutes before now; the
    // first k × W are the warm-up, the last `count` (the same events for every k) are
    // measured. Each k's stream has its own backtest.
    const maxWorkers = Math.max(...workerCounts);
    const steadyRaw =
      warmUpPerWorker > 0
        ? generateFleet({
            services: 20,
            replicas: 5,
            events: count + maxWorkers * warmUpPerWorker,
            seed: 7,
            start: Date.now() - Math.round((count + maxWorkers * warmUpPerWorker) * 1.5) - 180_000,
          })
        : [];
    const steadyStreams = new Map<number, ReturnType<typeof prepare>>();
    const steadyStream = (k: number) => {
      let s = steadyStreams.get(k);
      if (!s) {
        s = prepare(steadyRaw.slice(-(count + k * warmUpPerWorker)), `fleet-steady-${k}.ndjson`);
        steadyStreams.set(k, s);
        log(
          `scale: steady, ${k} worker(s): ${k * warmUpPerWorker} events of warm-up, then ${count}; ${s.expected.length} alerts in the backtest`,
        );
      }
      return s;
    };

    const runs: Run[] = [];
    let restore: {
      per_task: Array<{
        task: number;
        state_bytes: number;
        keys: number;
        read_ms: number;
        decode_restore_ms: number;
      }>;
      worker_restore_all_tasks_s: number;
    } = { per_task: [], worker_restore_all_tasks_s: 0 };
    const globalRules = ruleMix(ruleCount).filter(
      (x) => !x.query_key.includes('service.name'),
    ).length;
    for (const [index, { k, build, repeat: r, mix, steady }] of plan.entries()) {
      const global = mix === 'global';
      const stream = steady ? steadyStream(k) : base;
      const warmUpCount = steady ? k * warmUpPerWorker : 0;
      const events = stream.events.slice(warmUpCount);
      const { expected, end } = stream;
      const prefix = `scale${Date.now().toString(36)}w${k}.`;
      const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      await admin.createTopics({
        waitForLeaders: true,
        topics: ['logs', 'metrics', 'deadletter'].map((t) => ({
          topic: `${prefix}${t}`,
          numPartitions: TASKS,
        })),
      });
      await admin.disconnect();
      const config = join(dir, `drover-${k}-${index}.yaml`);
      // The fleet's hosts are not shared between services: host.name follows the
      // partitioning, so every rule of the mix runs in the partition tasks (no global task).
      // `--global`'s runs leave it out: the host.name rules run in the global task.
      const fields = global ? 'service.name' : 'service.name, host.name';
      writeFileSync(
        config,
        `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix} }
index: { kind: none }
rules: { paths: [rules], allowedLateness: ${LATENESS_MS}ms, partitionFields: [${fields}] }
`,
      );
      let n = 0;
      const worker = () =>
        startServe(config, {
          env: {
            KAFKA_BROKERS: brokersText,
            DROVER_STATE_DIR: join(dir, `state-${index}-${k}-${n++}`),
          },
          args: ['--roles', 'rules,actions'],
          timeoutMs: 120_000,
          ...(build.bin !== undefined && { bin: build.bin }),
          nodeArgs: build.nodeArgs ?? nodeArgs,
          ...(build.node !== undefined && { node: build.node }),
        });
      const workers = await Promise.all(Array.from({ length: k }, worker));
      // Every thread of every worker on these CPUs: how much of 3 workers' cost is their
      // contention for the machine's cores.
      if (pin !== '')
        for (const w of workers)
          execFileSync('taskset', ['-a', '-p', '-c', pin, String(w.child.pid)], {
            stdio: 'ignore',
          });
      await settled(workers, global);
      // Published from this process, while the workers consume: only their CPU counts.
      const bus = await createKafkaBus({ brokers, topicPrefix: prefix });
      // A steady run: the warm-up's k × W events are published and processed before the
      // CPU is counted from here on, so each worker has processed about W events (as the
      // partitions divide the fleet's services) before the measured ones.
      const settledMetrics = await Promise.all(workers.map(metricsOf));
      if (warmUpCount > 0) {
        for (let i = 0; i < warmUpCount; i += 5_000) {
          const r = await bus.publish(stream.events.slice(i, Math.min(i + 5_000, warmUpCount)));
          if (r.rejected.length > 0) throw new Error(`the bus refused ${r.rejected.length} events`);
        }
        await until(
          `the workers to process the ${warmUpCount} events of the warm-up`,
          async () => {
            const ms = await Promise.all(workers.map(metricsOf));
            return (
              ms.reduce((n, m, i) => n + m.events - settledMetrics[i]!.events, 0) >= warmUpCount &&
              ms.every((m) => m.lag === 0 && m.held === 0)
            );
          },
          600_000,
        );
      }
      const cpu0 = workers.map((w) => cpuMsOf(w.child.pid!));
      const scrapes0 = workers.map((w) => scrapes.get(w.url) ?? 0);
      const threads0 = workers.map((w) => threadsOf(w.child.pid!));
      const metrics0 = await Promise.all(workers.map(metricsOf));
      const events0 = metrics0.map((m) => m.events);
      const began = performance.now();
      const mono = () => process.hrtime.bigint() / 1000n;
      const window = [mono()];
      let published = false;
      // --warm-up: the first third is published and processed before the rest is sent,
      // so `warm` counts exactly the CPU of the last two thirds (the publisher does not
      // wait on a poll of the workers' metrics to mark the moment).
      const third = Math.ceil(count / 3 / 5_000) * 5_000;
      let release = () => {};
      const released = new Promise<void>((r) => (release = r));
      const publishing = (async () => {
        for (let i = 0; i < events.length; i += 5_000) {
          if (warmUp && i === third) await released;
          const r = await bus.publish(events.slice(i, i + 5_000));
          if (r.rejected.length > 0) throw new Error(`the bus refused ${r.rejected.length} events`);
        }
        published = true;
      })();
      let failed: Error | undefined;
      publishing.catch(
        (err: unknown) => (failed = err instanceof Error ? err : new Error(String(err))),
      );
      // Warm: the CPU from the moment the workers have processed the first third of the
      // stream (each process's JIT warmed up on its share) until the end. Polled once a
      // second: each poll is a scrape of every worker's /metrics, CPU the workers spend.
      let warm: { cpu: number[]; processed: number } | undefined;
      let metrics: WorkerMetrics[] = [];
      for (const deadline = Date.now() + 600_000; ;) {
        if (failed !== undefined) throw failed;
        if (Date.now() > deadline) throw new Error('timed out waiting for the workers');
        metrics = await Promise.all(workers.map(metricsOf));
        const processed = metrics.reduce((n, m, i) => n + m.events - events0[i]!, 0);
        if (!warm && processed >= (warmUp ? Math.min(third, count) : count / 3)) {
          warm = { cpu: workers.map((w) => cpuMsOf(w.child.pid!)), processed };
          release();
        }
        const globalDone =
          !global ||
          metrics.reduce((n, m, i) => n + m.globalEvents - metrics0[i]!.globalEvents, 0) >= count;
        if (
          published &&
          processed >= count &&
          globalDone &&
          metrics.every((m) => m.lag === 0 && m.held === 0)
        )
          break;
        await new Promise((r) => setTimeout(r, warmUp && !warm ? 100 : 1_000));
      }
      await publishing;
      await bus.close();
      const wallMs = performance.now() - began;
      const cpu = workers.map((w, i) => cpuMsOf(w.child.pid!) - cpu0[i]!);
      const scraped = workers.map((w, i) => (scrapes.get(w.url) ?? 0) - scrapes0[i]!);
      const threads = workers.map((w, i) => minus(threadsOf(w.child.pid!), threads0[i]!));
      const cpuMs = cpu.reduce((a, b) => a + b, 0);
      const warmCpuMs = workers.reduce((n, w, i) => n + cpuMsOf(w.child.pid!) - warm!.cpu[i]!, 0);
      // What the workers spend with nothing to process (heartbeats, the clock's tick and
      // its offset requests, metrics, periodic snapshots of unchanged tasks): a fixed
      // cost per worker per second, which the runs above also paid while they consumed.
      window.push(mono());
      const idle0 = workers.map((w) => cpuMsOf(w.child.pid!));
      const idleFrom = performance.now();
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const idleMs = workers.reduce((n, w, i) => n + cpuMsOf(w.child.pid!) - idle0[i]!, 0);
      const idlePerS = idleMs / ((performance.now() - idleFrom) / 1000);
      window.push(mono());
      // The monotonic clock a `--cpu-prof` profile's timestamps use: to cut the run out.
      if (nodeArgs.length > 0)
        log(
          `scale: ${build.name}, ${k} worker(s) ${workers.map((w) => w.child.pid).join(',')}: run and idle, monotonic µs: ${window.join(' ')}`,
        );

      // The clock carries each task's watermark past the data (the fleet's hosts then
      // expire): the alerts up to the last event are complete.
      let lists: WorkerAlert[][] = [];
      await until(
        'the clock to carry the watermark past the data',
        async () => {
          lists = await alertsOf(workers);
          return lists.flat().some((a) => a.at > end);
        },
        120_000,
      ).catch(() => undefined);
      // A worker whose GET /v1/alerts is full (its latest 1,000) may have fired more:
      // its every alert is in its log (one `alert` line each, in order).
      lists = lists.map((l, i) => (l.length >= ALERTS_KEPT ? alertsLogged(workers[i]!) : l));
      const live = lists.flat().filter((a) => a.at <= end);
      let agree: boolean | null;
      let disagreement: string | undefined;
      {
        const got = live.map(alertView).sort(byAlert);
        const key = (a: AlertView) => JSON.stringify(a);
        const want = new Set(expected.map(key));
        const have = new Set(got.map(key));
        const missing = expected.filter((a) => !have.has(key(a)));
        const extra = got.filter((a) => !want.has(key(a)));
        const twice = live.length - new Set(live.map((a) => a.id)).size;
        // Alert for alert, in order: a multiset, not only the same distinct alerts.
        agree = twice === 0 && JSON.stringify(got) === JSON.stringify(expected);
        if (!agree)
          disagreement = `${got.length} alerts against ${expected.length}: ${missing.length} missing (first ${JSON.stringify(missing[0])}), ${extra.length} not in the backtest (first ${JSON.stringify(extra[0])}), ${twice} twice`;
      }
      const perWorker = workers.map((_, i) => ({
        warm_up_events: metrics0[i]!.events - settledMetrics[i]!.events,
        scrapes: scraped[i]!,
        cpu_ms: Math.round(cpu[i]!),
        events: metrics[i]!.events - events0[i]!,
        batches: metrics[i]!.batches - metrics0[i]!.batches,
        tasks: metrics[i]!.tasks,
        threads: threads[i]!,
        global_events: metrics[i]!.globalEvents - metrics0[i]!.globalEvents,
        global_task: metrics[i]!.globalHeld === 1,
      }));
      const standbys = perWorker.filter((w) => !w.global_task);
      const owner = perWorker.find((w) => w.global_task);
      let split: { partition_events_per_cpu_s?: number; global_events_per_cpu_s?: number } = {};
      if (global && owner && standbys.length > 0) {
        const rate =
          standbys.reduce((n, w) => n + w.events, 0) / standbys.reduce((n, w) => n + w.cpu_ms, 0);
        const globalCpu = owner.cpu_ms - owner.events / rate;
        split = {
          partition_events_per_cpu_s: Math.round(rate * 1000),
          ...(globalCpu > 0 && {
            global_events_per_cpu_s: Math.round((owner.global_events / globalCpu) * 1000),
          }),
        };
      }
      const run: Run = {
        workers: k,
        mix,
        global_rules: global ? globalRules : 0,
        build: build.name,
        steady,
        warm_up_events: warmUpCount,
        repeat: r,
        cpu_ms: Math.round(cpuMs),
        wall_ms: Math.round(wallMs),
        events_per_cpu_s: Math.round((count / cpuMs) * 1000),
        warm_events_per_cpu_s:
          count - warm!.processed < count / 10
            ? null
            : Math.round(((count - warm!.processed) / warmCpuMs) * 1000),
        idle_cpu_ms_per_s: Math.round(idlePerS),
        idle_cpu_ms_per_s_per_worker: Math.round((idlePerS / k) * 10) / 10,
        busy_cpu_ms: Math.round(Math.max(0, cpuMs - (idlePerS * wallMs) / 1000)),
        per_worker: perWorker,
        ...split,
        alerts: live.length,
        late_events: metrics.reduce((s, m) => s + m.late, 0),
        agree,
        ...(disagreement !== undefined && { disagreement }),
      };
      runs.push(run);
      log(
        `scale: ${build.name}, ${mix}${steady ? `, steady after ${warmUpCount} events (${perWorker.map((w) => w.warm_up_events).join(' + ')})` : ''}, ${k} worker(s)${split.global_events_per_cpu_s !== undefined ? ` (global task ${split.global_events_per_cpu_s} events per CPU s, partition tasks ${split.partition_events_per_cpu_s})` : ''}: ${run.events_per_cpu_s} events per CPU s, warm ${run.warm_events_per_cpu_s} (${run.cpu_ms} ms CPU, ${run.wall_ms} ms wall; idle ${run.idle_cpu_ms_per_s} ms CPU/s, ${run.idle_cpu_ms_per_s_per_worker} per worker, busy ${run.busy_cpu_ms} ms), ${run.alerts} alerts, agree ${agree}${disagreement ? `: ${disagreement}` : ''}`,
      );
      for (const w of workers) await stopServe(w);

      if (index === plan.length - 1 && !workersOnly) {
        // Restore: each task's latest snapshot on the changelog (the workers' final
        // ones, matching the group's committed offsets), read, parsed and restored here.
        const reader = await createKafkaBus({ brokers, topicPrefix: prefix });
        const changelog = await reader.changelog(TASKS);
        const committed = await reader.committed(`${prefix}rules`, ['logs', 'metrics']);
        const rules = ruleMix(ruleCount);
        for (let task = 0; task < TASKS; task++) {
          const t = performance.now();
          const h = (await changelog.read([task])).get(task);
          const mine = Object.fromEntries(
            Object.entries(committed).filter(([p]) => p.endsWith(`/${task}`)),
          );
          const head = h && chooseHead(h.heads, mine);
          if (!h || !head) throw new Error(`task ${task} has no snapshot on the changelog`);
          const state = h.state(head);
          const read = performance.now();
          const engine = new Engine(rules, { allowedLatenessMs: LATENESS_MS, onAlert: () => {} });
          engine.restore(JSON.parse(state) as EngineSnapshot);
          const done = performance.now();
          restore.per_task.push({
            task,
            state_bytes: Buffer.byteLength(state),
            keys: engine.stats().reduce((n, r) => n + r.keys + (r.terms ?? 0), 0),
            read_ms: Math.round((read - t) * 10) / 10,
            decode_restore_ms: Math.round((done - read) * 10) / 10,
          });
        }
        await reader.close();
        // A fresh worker (an empty state directory) restoring all six tasks at once.
        const fresh = await worker();
        await settled([fresh]);
        restore = {
          ...restore,
          worker_restore_all_tasks_s:
            Math.round((await metricsOf(fresh)).restoreSeconds * 1000) / 1000,
        };
        await stopServe(fresh);
        log(
          `scale: restore per task ${restore.per_task.map((r) => `${r.state_bytes} B (${r.keys} keys): read ${r.read_ms} ms, decoded and restored ${r.decode_restore_ms} ms`).join('; ')}; a fresh worker restored all ${TASKS} in ${restore.worker_restore_all_tasks_s} s`,
        );
      }
    }

    let ingestRatio = { ratio: NaN, rounds: [] as number[], events_per_server_cpu_s: NaN };
    let gzipIngestRatio = ingestRatio;
    let consumed = { cpuMs: NaN };
    let gzipConsumed = consumed;
    if (!workersOnly) {
      log('scale: HTTP NDJSON → Kafka against JSON.parse (the default codec, then gzip)');
      ingestRatio = await kafkaIngestRatio(brokers, Math.min(count, 100_000), rounds);
      gzipIngestRatio = await kafkaIngestRatio(brokers, Math.min(count, 100_000), rounds, 'gzip');
      log('scale: the rules consumer from Kafka (the default codec, then gzip)');
      for (const compression of [undefined, 'gzip'] as const) {
        const consumer = await createKafkaBus({
          brokers,
          topicPrefix: `scalerc${Date.now().toString(36)}${compression ?? ''}.`,
          ...(compression !== undefined && { compression }),
        });
        const used = await consumeInto(consumer, base.events, ruleMix(ruleCount));
        await consumer.close();
        if (compression === undefined) consumed = used;
        else gzipConsumed = used;
      }
    }

    // Each build's ratios, one per repetition (3 workers against 1 of the same build and
    // repetition, run minutes apart at most); the summary's own figures are this build's
    // medians.
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length === 0
        ? null
        : s.length % 2
          ? s[s.length >> 1]!
          : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
    };
    const round2 = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);
    const pairsOf = (name: string, steady: boolean) =>
      Array.from({ length: repeat }, (_, r) => {
        const of = (w: number) =>
          runs.find(
            (x) =>
              x.build === name &&
              x.repeat === r &&
              x.workers === w &&
              x.mix === 'partitioned' &&
              x.steady === steady,
          );
        return { one: of(1), three: of(3) };
      }).filter((p): p is { one: Run; three: Run } => p.one !== undefined && p.three !== undefined);
    const ratios = (name: string) => {
      const pairs = pairsOf(name, false);
      const each = (f: (p: { one: Run; three: Run }) => number) => pairs.map((p) => round2(f(p))!);
      const cpu = each((p) => p.three.cpu_ms / p.one.cpu_ms);
      const busy = each((p) => p.three.busy_cpu_ms / p.one.busy_cpu_ms);
      const warm = pairs.flatMap(({ one, three }) =>
        one.warm_events_per_cpu_s === null || three.warm_events_per_cpu_s === null
          ? []
          : [round2(one.warm_events_per_cpu_s / three.warm_events_per_cpu_s)!],
      );
      // Steady runs: the same `--events`, after each worker processed W of a warm-up.
      const steadyCpu = pairsOf(name, true).map((p) => round2(p.three.cpu_ms / p.one.cpu_ms)!);
      return {
        build: name,
        node: versionOf(builds.find((b) => b.name === name)?.node),
        cpu_ratio_3_vs_1: round2(median(cpu)),
        busy_cpu_ratio_3_vs_1: round2(median(busy)),
        warm_cpu_ratio_3_vs_1: round2(median(warm)),
        cpu_ratio_3_vs_1_steady: round2(median(steadyCpu)),
        // One worker's and three workers' CPU ms for the events, each repetition: to
        // compare builds or variants on one worker's cost too, not only the ratio.
        one_worker_cpu_ms: pairs.map((p) => p.one.cpu_ms),
        three_workers_cpu_ms: pairs.map((p) => p.three.cpu_ms),
        each: { cpu, busy, warm, steady: steadyCpu },
      };
    };
    const mine = ratios('this');
    const summary = {
      events: count,
      rules: ruleCount,
      partitions: TASKS,
      backtest_alerts: base.expected.length,
      agree: runs.every((r) => r.agree === true)
        ? true
        : runs.some((r) => r.agree === false)
          ? false
          : null,
      cpu_ratio_3_vs_1: mine.cpu_ratio_3_vs_1,
      // `--warm-up-per-worker W` (null without): CPU for the same events once each worker
      // has processed W events, three workers over one.
      cpu_ratio_3_vs_1_steady: mine.cpu_ratio_3_vs_1_steady,
      warm_up_per_worker: warmUpPerWorker,
      warm_cpu_ratio_3_vs_1: mine.warm_cpu_ratio_3_vs_1,
      busy_cpu_ratio_3_vs_1: mine.busy_cpu_ratio_3_vs_1,
      builds: builds.map((b) => ratios(b.name)),
      kafka_ingest_vs_json_parse: ingestRatio.ratio,
      kafka_ingest_rounds: ingestRatio.rounds,
      kafka_ingest_events_per_server_cpu_s: ingestRatio.events_per_server_cpu_s,
      rules_consumer_events_per_cpu_s: Math.round((count / consumed.cpuMs) * 1000),
      kafka_ingest_gzip_vs_json_parse: gzipIngestRatio.ratio,
      kafka_ingest_gzip_rounds: gzipIngestRatio.rounds,
      rules_consumer_gzip_events_per_cpu_s: Math.round((count / gzipConsumed.cpuMs) * 1000),
      // `--global`: per build and worker count, the events per CPU second of every run of
      // each mix, and the global task's estimate (two or more workers).
      ...(mixes.includes('global') && {
        global: {
          rules: globalRules,
          of: ruleCount,
          runs: builds.flatMap((b) =>
            workerCounts.map((k) => {
              const of = (mix: string) =>
                runs.filter(
                  (x) => x.build === b.name && x.workers === k && x.mix === mix && !x.steady,
                );
              return {
                build: b.name,
                workers: k,
                partitioned_events_per_cpu_s: of('partitioned').map((x) => x.events_per_cpu_s),
                global_mix_events_per_cpu_s: of('global').map((x) => x.events_per_cpu_s),
                global_task_events_per_cpu_s: of('global').map(
                  (x) => x.global_events_per_cpu_s ?? null,
                ),
                partition_tasks_events_per_cpu_s: of('global').map(
                  (x) => x.partition_events_per_cpu_s ?? null,
                ),
                // The global task's extra CPU: the global mix's total less the partitioned
                // mix's, same workers and repetition, in CPU µs per event.
                extra_cpu_us_per_event: of('global').map((g) => {
                  const p = of('partitioned').find((x) => x.repeat === g.repeat);
                  return p ? Math.round(((g.cpu_ms - p.cpu_ms) / count) * 1000 * 10) / 10 : null;
                }),
              };
            }),
          ),
        },
      }),
      runs,
      restore,
      node: process.version,
    };
    if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else {
      process.stdout.write(
        `scale-out on Kafka, ${count} events, ${ruleCount} rules, ${TASKS} partitions\n`,
      );
      for (const r of runs)
        process.stdout.write(
          `  ${r.build}, ${r.mix}${r.steady ? `, steady after ${r.warm_up_events} events` : ''}${r.global_rules > 0 ? ` (${r.global_rules} rules in the global task${r.global_events_per_cpu_s !== undefined ? `: ${r.global_events_per_cpu_s} events per CPU s, the partition tasks ${r.partition_events_per_cpu_s}` : ''})` : ''}, ${r.workers} worker(s): ${r.events_per_cpu_s} events per CPU second, ${r.warm_events_per_cpu_s} after the first third (idle ${r.idle_cpu_ms_per_s} ms CPU per s, ${r.idle_cpu_ms_per_s_per_worker} per worker; ${r.cpu_ms} ms CPU: ${r.per_worker.map((w) => `${w.cpu_ms} ms / ${w.events} events / ${w.tasks} tasks`).join('; ')}), agree with the backtest: ${r.agree}${r.disagreement ? ` (${r.disagreement})` : ''}\n`,
        );
      process.stdout.write(
        `  CPU per event, 3 workers vs 1: ${summary.cpu_ratio_3_vs_1} (target ≤ 1.3); less the workers' idle cost: ${summary.busy_cpu_ratio_3_vs_1}; after the first third: ${summary.warm_cpu_ratio_3_vs_1}${warmUpPerWorker > 0 ? `; steady, after ${warmUpPerWorker} events per worker: ${summary.cpu_ratio_3_vs_1_steady}` : ''}\n`,
      );
      for (const b of summary.builds)
        process.stdout.write(
          `  ${b.build}: CPU per event, 3 workers vs 1, each repetition: ${b.each.cpu.join(', ')}; less idle: ${b.each.busy.join(', ')}; after the first third: ${b.each.warm.join(', ')}${b.each.steady.length > 0 ? `; steady: ${b.each.steady.join(', ')}` : ''}\n`,
        );
      for (const r of restore.per_task)
        process.stdout.write(
          `  restore task ${r.task}: ${r.state_bytes} bytes of state, ${r.keys} keys: read from the changelog in ${r.read_ms} ms, decoded and restored in ${r.decode_restore_ms} ms\n`,
        );
      process.stdout.write(
        `  a fresh worker restored all ${TASKS} tasks in ${restore.worker_restore_all_tasks_s} s\n`,
      );
      process.stdout.write(
        `  HTTP NDJSON → Kafka: ${summary.kafka_ingest_vs_json_parse}× JSON.parse per server core (rounds ${ingestRatio.rounds.join(', ')}; target ≥ 0.2); with gzip ${summary.kafka_ingest_gzip_vs_json_parse}× (rounds ${gzipIngestRatio.rounds.join(', ')})\n`,
      );
      process.stdout.write(
        `  rules consumer from Kafka: ${summary.rules_consumer_events_per_cpu_s} events per CPU second (target ≥ 100,000); with gzip ${summary.rules_consumer_gzip_events_per_cpu_s}\n`,
      );
    }
    return 0;
  } finally {
    killServes();
    rmSync(dir, { recursive: true, force: true });
    await stopKafka?.();
  }
}
