import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import { startKafka, type StartedKafka } from '../servers/kafka.ts';
import { BIN, type Served, startServe, until, workdir } from './drover.ts';
import { type NetCut, startNetCut } from './net-cut.ts';
import {
  alertView as view,
  type AlertView,
  byAlert as order,
  FLEET_RULE_FILES,
  FLEET_SERVICES,
  generateFleetStream,
} from './fleet-stream.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

/**
 * What the rules-workers tests share: a stream over six services, topics of six
 * partitions, and reading a worker's assignment, lag and alerts.
 */
export const TASKS = 6;
export const LATENESS = '30s';

export type WorkerAlert = AlertView & { id: string; task?: { id: number; generation: number } };

function renamed(lines: string[], suffix: string): string[] {
  let out = lines;
  for (const s of FLEET_SERVICES)
    out = out.map((l) =>
      l
        .replaceAll(`"service.name":"${s}"`, `"service.name":"${s}${suffix}"`)
        .replaceAll(`"name":"${s}"`, `"name":"${s}${suffix}"`)
        .replace(new RegExp(`"(host\\.name|hostname)":"${s}-`, 'g'), `"$1":"${s}${suffix}-`),
    );
  return out;
}

/**
 * Two fleet streams (the second's services and hosts renamed), interleaved shipper batch
 * by shipper batch as two fleets sending at once: six services spread over six partitions.
 */
export function twoFleets(start: number): { batches: string[][]; lines: string[]; last: number } {
  const a = generateFleetStream({ seed: 20261203, start, minutes: 15 });
  const b = generateFleetStream({ seed: 20261204, start, minutes: 15 });
  const batches: string[][] = [];
  for (let i = 0; i < Math.max(a.batches.length, b.batches.length); i++) {
    if (a.batches[i]) batches.push(a.batches[i]!);
    if (b.batches[i]) batches.push(renamed(b.batches[i]!, 'x'));
  }
  return { batches, lines: batches.flat(), last: Math.max(a.last, b.last) };
}

/**
 * Kept firing for an hour: an alert replayed from history that had already resolved
 * would be skipped as stale, and the acting rules' alerts should act.
 */
export const ACTION = `keep_firing_for: 1h
actions:
  - { adapter: script, operation: kill-and-replace, target: "{{ host.name }}" }
`;

/** A rules-workers test's stream, rule files, shared journal and config, written out. */
export interface ActingFleet {
  /** Logs how far into the test `what` happened. */
  mark: (what: string) => void;
  batches: string[][];
  lines: string[];
  /** The last event's time, ms. */
  last: number;
  /** The test's own topic prefix. */
  prefix: string;
  dir: string;
  /** The stream as NDJSON, for `drover backtest`. */
  data: string;
  /** The adapter's own record: one target per line, per action run. */
  acted: string;
  /** The action journal every worker shares (SQLite, on this host), as they would share one. */
  journal: string;
  config: string;
}

/**
 * The two fleets' stream with the fleet's rules, `acting` of them with {@link ACTION},
 * and `extra` rule files beside them; a config on Kafka with no index, every worker
 * acting through an exec adapter into one journal. `bus` and `rules` are the options
 * after `kind`/`topicPrefix` and after `paths`, `allowedLateness` (the rest of the
 * config is the same in every such test).
 */
export function actingFleet(o: {
  /** The topic prefix's first letters and the work directory's name. */
  tag: string;
  name: string;
  acting: string[];
  extra?: Record<string, string>;
  bus: string;
  rules: string;
  lateness?: string;
  snapshotEvery?: string;
}): ActingFleet {
  const began = Date.now();
  const mark = (what: string) =>
    console.log(`${((Date.now() - began) / 1000).toFixed(1)} s: ${what}`);
  const { batches, lines, last } = twoFleets(Math.floor(Date.now() / 1_000) * 1_000 - 20 * 60_000);
  const prefix = `${o.tag}${randomUUID().slice(0, 8)}.`;
  const files: Record<string, string> = { ...FLEET_RULE_FILES, ...o.extra };
  for (const rule of o.acting) files[rule] = `${files[rule]}${ACTION}`;
  const dir = workdir(`drover-rules-${o.name}-`, files);
  const data = join(dir, 'fleet.ndjson');
  writeFileSync(data, `${lines.join('\n')}\n`);
  const acted = join(dir, 'acted.txt');
  const journal = join(dir, 'actions.db');
  const config = join(dir, 'drover.yaml');
  writeFileSync(
    config,
    `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix}, ${o.bus} }
index: { kind: none }
rules: { paths: [rules], allowedLateness: ${o.lateness ?? LATENESS}, ${o.rules} }
snapshotEvery: ${o.snapshotEvery ?? '1h'}
actions: { store: sqlite, path: ${journal} }
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s, inhibit: 0s, maxAlertAge: 0s }
`,
  );
  // maxAlertAge 0s: the stream is 5 to 20 minutes old, so the default (15m) would hold
  // back a share of its remediations that grows with the run's length; these tests are
  // about each action running once, whatever its age (serve-alert-age tests the guard).
  return { mark, batches, lines, last, prefix, dir, data, acted, journal, config };
}

/** `drover backtest` on the NDJSON file, its alerts in the tests' view and order. */
export function backtestAlerts(
  rules: string,
  data: string,
  lateness = LATENESS,
): { stderr: string; alerts: AlertView[] } {
  const r = spawnSync(
    process.execPath,
    [BIN, 'backtest', '--rules', rules, '--data', data, '--format', 'json', '--lateness', lateness],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  return {
    stderr: r.stderr,
    alerts: r.stdout
      .trim()
      .split('\n')
      .map((l) => view(JSON.parse(l) as AlertView))
      .sort(order),
  };
}

/**
 * The bus topics with six partitions (Drover creates three by default). A broker may
 * answer the creation's own metadata check before it knows the new topics
 * ("This server does not host this topic-partition") though they were made: the
 * creation is retried (an existing topic is no error) until their metadata shows every
 * partition led, for up to 30 s.
 */
/**
 * Starts `drover serve` processes of one fleet on Kafka by role: `worker()` a rules and
 * actions worker (a state directory of its own each), `ingest()` the ingest replica.
 */
export function kafkaRoles(
  config: string,
  dir: string,
  brokers: string,
): { worker: () => Promise<Served>; ingest: () => Promise<Served> } {
  const env = { KAFKA_BROKERS: brokers };
  let n = 0;
  const serve = (state: string, roles: string) =>
    startServe(config, {
      env: { ...env, DROVER_STATE_DIR: join(dir, state) },
      args: ['--roles', roles],
      timeoutMs: 90_000,
    });
  return {
    worker: () => serve(`state-${n++}`, 'rules,actions'),
    ingest: () => serve('state-ingest', 'ingest'),
  };
}

export async function createTopics(brokers: string, prefix: string): Promise<void> {
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const topics = ['logs', 'metrics', 'deadletter'].map((t) => `${prefix}${t}`);
  let lastError: unknown;
  try {
    await until(
      `topics ${topics.join(', ')} with ${TASKS} led partitions each`,
      async () => {
        await admin
          .createTopics({
            waitForLeaders: true,
            topics: topics.map((topic) => ({ topic, numPartitions: TASKS })),
          })
          .catch((err: unknown) => (lastError = err));
        const meta = await admin.fetchTopicMetadata({ topics }).catch((err: unknown) => {
          lastError = err;
          return undefined;
        });
        return (
          meta?.topics.length === topics.length &&
          meta.topics.every(
            (t) => t.partitions.length === TASKS && t.partitions.every((p) => p.leader >= 0),
          )
        );
      },
      30_000,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last error: ${String(lastError)}`);
    });
  } finally {
    await admin.disconnect();
  }
}

export async function metricsOf(
  w: Served,
): Promise<{ tasks: number; lag: number; held: number; late: number }> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const one = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  const lag = text
    .split('\n')
    // The partition tasks' group and the global task's (`<prefix>rules-global`).
    .filter(
      (l) =>
        l.startsWith('drover_bus_lag_messages{group="') &&
        (l.includes('rules"') || l.includes('rules-global"')),
    )
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  return {
    tasks: one('drover_rules_tasks_assigned'),
    lag,
    held: one('drover_rules_held_events'),
    late: one('drover_rules_late_events_total'),
  };
}

/** Every worker assigned in one generation, the tasks all held, each worker some. */
export async function settled(workers: Served[]): Promise<number> {
  return until(
    `${workers.length} workers to share the ${TASKS} tasks`,
    async () => {
      const generations = workers.map((w) => {
        const lines = w
          .log()
          .split('\n')
          .filter((l) => l.includes('"msg":"rules tasks assigned"'));
        const m = /"generation":(\d+)/.exec(lines.at(-1) ?? '');
        return m ? Number(m[1]) : -1;
      });
      if (generations.some((g) => g !== generations[0] || g < 0)) return false;
      const held = await Promise.all(workers.map(metricsOf));
      return held.reduce((n, m) => n + m.tasks, 0) === TASKS && held.every((m) => m.tasks > 0)
        ? generations[0]!
        : false;
    },
    90_000,
  );
}

/**
 * The workers' lag gauges read 0 with nothing held, twice, at least a fetch wait (1 s)
 * apart: a worker's lag is computed from its fetches' log ends, at most one fetch old
 * (docs/scale-out.md, "Watermarks and the clock"), so a message written just before a
 * reading of 0 is counted by the next fetch's, which answers within that wait.
 */
export async function drained(workers: Served[]): Promise<void> {
  let zeroSince: number | undefined;
  await until(
    'the workers to process everything sent',
    async () => {
      const ms = await Promise.all(workers.map(metricsOf));
      if (!ms.every((m) => m.lag === 0 && m.held === 0)) return (zeroSince = undefined);
      zeroSince ??= Date.now();
      return Date.now() - zeroSince >= 1_100;
    },
    120_000,
  );
}

export async function alertsOf(workers: Served[]): Promise<WorkerAlert[]> {
  const all: WorkerAlert[] = [];
  for (const w of workers) {
    const r = (await (await fetch(`${w.url}/v1/alerts`)).json()) as { alerts: WorkerAlert[] };
    all.push(...r.alerts);
  }
  return all;
}

/** Sends shipper batches to an ingest process, about 5,000 lines a request. */
export async function send(url: string, batches: string[][]): Promise<void> {
  let request: string[] = [];
  const post = async () => {
    const r = await fetch(`${url}/ingest`, { method: 'POST', body: request.join('\n') });
    if (r.status !== 200) throw new Error(`ingest answered ${r.status}`);
    request = [];
  };
  for (const batch of batches) {
    request.push(...batch);
    if (request.length >= 5_000) await post();
  }
  if (request.length > 0) await post();
}

export interface LogLine {
  time: number;
  msg: string;
  alert?: { id: string; task?: { id: number; generation: number } };
  tasks?: number[];
  generation?: number;
}

export function logLines(w: Served): LogLine[] {
  return w
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The tasks a worker was assigned, per generation (its "rules tasks assigned" lines). */
export function assignments(w: Served): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const l of logLines(w))
    if (l.msg === 'rules tasks assigned' && l.generation !== undefined)
      out.set(l.generation, l.tasks ?? []);
  return out;
}

/**
 * settled() once each worker has logged an assignment past `generation` (the tasks gauge
 * moves at the assignment, before the assignment's line is logged).
 */
export async function settledPast(workers: Served[], generation: number): Promise<number> {
  await until(
    `${workers.length} workers assigned past generation ${generation}`,
    () => workers.every((w) => [...assignments(w).keys()].some((g) => g > generation)),
    90_000,
  );
  return settled(workers);
}

/** The global task's gauge (1 on its owner, 0 on a standby) of each worker. */
async function globalHeld(w: Served): Promise<number> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  return Number(/^drover_rules_global_task_assigned (\S+)/m.exec(text)?.[1] ?? 0);
}

/** The worker holding the global task, once exactly one of them holds it. */
export async function globalOwner(workers: Served[]): Promise<Served> {
  return until(
    `one of ${workers.length} workers to hold the global task`,
    async () => {
      const held = await Promise.all(workers.map(globalHeld));
      const owners = workers.filter((_, i) => held[i] === 1);
      return owners.length === 1 && held.every((h) => h === 0 || h === 1) ? owners[0]! : false;
    },
    90_000,
  );
}

/**
 * A broker of the test file's own, started before its tests and stopped after them, with
 * a relay reading the Kafka protocol (`tamper`) in front of its second listener: a worker
 * given `relayed.kafka.cuttable.advertised` reaches the broker only through
 * `relayed.relay`, which the test cuts, holds or alters. Its own broker because the
 * relayed listener must be known when the broker starts. Both fields are set once the
 * file's `beforeAll` has run.
 */
export function relayedKafka(): { kafka: StartedKafka; relay: NetCut } {
  const relayed = {} as { kafka: StartedKafka; relay: NetCut };
  beforeAll(async () => {
    relayed.kafka = await startKafka({ cuttable: true });
    relayed.relay = await startNetCut(
      relayed.kafka.cuttable!.advertised,
      relayed.kafka.cuttable!.target,
      { tamper: true },
    );
  }, 180_000);
  afterAll(async () => {
    await relayed.relay?.close();
    await relayed.kafka?.stop();
  });
  return relayed;
}
