/**
 * What an idle rules worker costs, and what a `/metrics` scrape costs it (issue 15's
 * `cpu_ratio_3_vs_1`: every cost a worker pays per second is paid once per worker, and
 * bench/scale.ts scrapes every worker to follow its progress). For each worker count,
 * fresh topics of 6 partitions with nothing in them and that many real `drover serve
 * --roles rules,actions` processes in one rules group with the 100-rule mix (as
 * bench/scale.ts starts them); once every worker holds its tasks and a settling pause has
 * passed:
 *
 * - idle: each worker's CPU (utime + stime from /proc) over `--idle-ms` with nothing
 *   asked of it, in ms per second (`idle_cpu_ms_per_s_per_worker`, the mean over the
 *   workers);
 * - scrape: the first worker's CPU over `--scrapes` `GET /metrics`, one every 100 ms (the
 *   pace of bench/scale.ts's `--warm-up` polling), less its idle rate over that time,
 *   per scrape (`scrape_cpu_ms`).
 *
 * `--before PATH` runs every step with another build's `bin/drover.js` too, just before
 * this build's; `--rounds N` runs the whole sequence N times. Uses KAFKA_BROKERS, or
 * starts a single-node Kafka as the tests do.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkajs } from '../ingest/bus/kafkajs.ts';
import { ensureBuilt } from '../test/support/build.ts';
import { killServes, type Served, startServe, stopServe } from '../test/support/drover.ts';
import { kafkaForBench } from './kafka-server.ts';
import { cpuMsOf, settled, TASKS, writeRules } from './scale.ts';
import { option } from './args.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface IdleRun {
  build: string;
  workers: number;
  round: number;
  /** Each worker's CPU with nothing to do, ms per second. */
  idle_cpu_ms_per_s: number[];
  idle_cpu_ms_per_s_per_worker: number;
  scrapes: number;
  /** The first worker's CPU per scrape, its idle rate over the scrapes' time taken off. */
  scrape_cpu_ms: number;
}

export async function workerIdle(args: string[]): Promise<number> {
  const workerCounts = option(args, '--workers', '1,3').split(',').map(Number);
  const rounds = Number(option(args, '--rounds', '2'));
  const idleMs = Number(option(args, '--idle-ms', '10000'));
  const scrapeCount = Number(option(args, '--scrapes', '50'));
  const settleMs = Number(option(args, '--settle-ms', '5000'));
  const before = option(args, '--before', '');
  const json = args.includes('--json');
  const builds: Array<{ name: string; bin?: string }> = [
    ...(before !== '' ? [{ name: 'before', bin: before }] : []),
    { name: 'this' },
  ];
  if (workerCounts.some((n) => !Number.isInteger(n) || n < 1 || n > TASKS))
    throw new RangeError(`--workers: counts from 1 to ${TASKS}`);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  ensureBuilt();
  const { brokersText, stopKafka } = await kafkaForBench('worker-idle', log);
  const brokers = brokersText.split(',');
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-idle-'));
  const runs: IdleRun[] = [];
  try {
    writeRules(join(dir, 'rules'), 100);
    let index = 0;
    for (let round = 0; round < rounds; round++)
      for (const k of workerCounts)
        for (const build of builds) {
          index++;
          const prefix = `idle${Date.now().toString(36)}w${k}.`;
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
          const config = join(dir, `drover-${index}.yaml`);
          writeFileSync(
            config,
            `stateDir: state
listen: { port: 0, statsdPort: false }
bus: { kind: kafka, topicPrefix: ${prefix} }
index: { kind: none }
rules: { paths: [rules], allowedLateness: 5000ms, partitionFields: [service.name, host.name] }
`,
          );
          const workers: Served[] = await Promise.all(
            Array.from({ length: k }, (_, n) =>
              startServe(config, {
                env: {
                  KAFKA_BROKERS: brokersText,
                  DROVER_STATE_DIR: join(dir, `state-${index}-${n}`),
                },
                args: ['--roles', 'rules,actions'],
                timeoutMs: 120_000,
                ...(build.bin !== undefined && { bin: build.bin }),
              }),
            ),
          );
          try {
            await settled(workers);
            await sleep(settleMs);
            const pids = workers.map((w) => w.child.pid!);
            const cpu0 = pids.map(cpuMsOf);
            const t0 = performance.now();
            await sleep(idleMs);
            const idleWall = performance.now() - t0;
            const idle = pids.map((p, i) => ((cpuMsOf(p) - cpu0[i]!) * 1000) / idleWall);
            const s0 = cpuMsOf(pids[0]!);
            const t1 = performance.now();
            for (let i = 0; i < scrapeCount; i++) {
              await (await fetch(`${workers[0]!.url}/metrics`)).text();
              await sleep(100);
            }
            const scrapeWall = performance.now() - t1;
            const scrapeCpu = cpuMsOf(pids[0]!) - s0 - (idle[0]! * scrapeWall) / 1000;
            const run: IdleRun = {
              build: build.name,
              workers: k,
              round,
              idle_cpu_ms_per_s: idle.map((x) => Math.round(x * 10) / 10),
              idle_cpu_ms_per_s_per_worker:
                Math.round((idle.reduce((a, b) => a + b, 0) / k) * 10) / 10,
              scrapes: scrapeCount,
              scrape_cpu_ms: Math.round((scrapeCpu / scrapeCount) * 100) / 100,
            };
            runs.push(run);
            log(
              `worker-idle: ${build.name}, ${k} worker(s), round ${round + 1}: idle ${run.idle_cpu_ms_per_s.join(', ')} ms CPU/s (mean ${run.idle_cpu_ms_per_s_per_worker}); ${run.scrape_cpu_ms} ms CPU per scrape`,
            );
          } finally {
            for (const w of workers) await stopServe(w);
          }
        }
  } finally {
    killServes();
    rmSync(dir, { recursive: true, force: true });
    await stopKafka?.();
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? 0 : (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
  };
  const summary = builds.map((b) => ({
    build: b.name,
    ...Object.fromEntries(
      workerCounts.map((k) => {
        const mine = runs.filter((r) => r.build === b.name && r.workers === k);
        return [
          `workers_${k}`,
          {
            idle_cpu_ms_per_s_per_worker: median(mine.map((r) => r.idle_cpu_ms_per_s_per_worker)),
            scrape_cpu_ms: median(mine.map((r) => r.scrape_cpu_ms)),
          },
        ];
      }),
    ),
  }));
  if (json) process.stdout.write(`${JSON.stringify({ summary, runs })}\n`);
  else for (const s of summary) log(JSON.stringify(s));
  return 0;
}
