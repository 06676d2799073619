/**
 * Ingest throughput, side by side in one run: NDJSON over HTTP into the embedded bus,
 * the same events as Elasticsearch _bulk bodies, the same NDJSON into Kafka (KAFKA_BROKERS), bus-to-Elasticsearch indexing
 * (ELASTICSEARCH_URL), and JSON.parse of the same lines as the ceiling.
 * Kafka and Elasticsearch parts run only when their servers are given (or, for Kafka,
 * with `--kafka`, which starts one).
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  constants as perfConstants,
  type PerformanceEntry,
  PerformanceObserver,
} from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type Bus,
  createKafkaBus,
  type EmbeddedBus,
  openEmbeddedBus,
} from '../ingest/bus/index.ts';
import { kafkajs } from '../ingest/bus/kafkajs.ts';
import { createIngestServer } from '../ingest/sources/http/index.ts';
import { ElasticsearchIndexer } from '../ingest/sinks/index.ts';
import { sqliteDriver } from '../ingest/storage/sqlite.ts';
import { generateFleet } from './fleet.ts';
import { kafkaForBench } from './kafka-server.ts';

interface Options {
  events: number;
  batch: number;
  concurrency: number;
  rounds: number;
  json: boolean;
}

function parseOptions(args: string[]): Options {
  const get = (flag: string, fallback: number) => {
    const i = args.indexOf(flag);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  return {
    events: get('--events', 200_000),
    batch: get('--batch', 500),
    concurrency: get('--concurrency', 4),
    rounds: get('--rounds', 3),
    json: args.includes('--json'),
  };
}

/**
 * Posts the bodies from a separate process (the client must not eat the server's
 * core) and returns the wall time and the server's CPU time (this process) meanwhile.
 */
/** NDJSON bodies POSTed by a client process into an ingest server on `bus`; the server's CPU. */
export async function httpInto(
  bus: Bus,
  bodiesFile: string,
  concurrency: number,
  path = '/ingest',
): Promise<
  { ms: number; cpuMs: number; sysMs: number; fromMs: number; toMs: number } & RoundDetail
> {
  const server = await createIngestServer({ bus, port: 0, statsd: false });
  const port = new URL(server.url).port;
  const gc = gcPauses();
  const fromMs = performance.now();
  const main = mainThreadCpuMs();
  const cpu = process.cpuUsage();
  const client = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, 'ingest-client.ts'),
      port,
      bodiesFile,
      String(concurrency),
      path,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  client.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => client.once('exit', r));
  const used = process.cpuUsage(cpu);
  const mainMs = main === undefined ? undefined : mainThreadCpuMs()! - main;
  const pauses = gc.stop();
  const toMs = performance.now();
  await server.close();
  if (code !== 0) throw new Error(`the ingest client failed (${code})`);
  const cpuMs = (used.user + used.system) / 1000;
  return {
    ms: (JSON.parse(out) as { ms: number }).ms,
    cpuMs,
    sysMs: used.system / 1000,
    fromMs,
    toMs,
    ...(mainMs !== undefined && { mainThreadMs: mainMs, otherThreadsMs: cpuMs - mainMs }),
    ...pauses,
  };
}

/**
 * Where a round's server CPU went, to tell a round that read low from its neighbours:
 * the main thread's CPU and the rest of the process's (V8's helper threads, which do
 * the garbage collector's parallel and concurrent work and compile, and libuv's pool,
 * which runs gzip), and the garbage collector's pauses of the main thread.
 */
interface RoundDetail {
  /** Linux only (/proc), in steps of the kernel's tick (10 ms). */
  mainThreadMs?: number;
  otherThreadsMs?: number;
  gcPauseMs: number;
  majorGcs: number;
  /** Each major collection's detail (MajorGc). */
  majors: MajorGc[];
}

/**
 * JSON.parse of every line, the baseline: its wall time (the figure `json_parse` has
 * always been), and its CPU time (`json_parse_cpu`): the main thread's run time from
 * /proc's schedstat (ns; the process's user and system time where there is none), which
 * other load on the machine does not lengthen as it does the wall time (the time the
 * thread waited for a core, `waitMs`, is what it adds). The ratios against the wall time
 * are flattered on a loaded machine; those against the CPU time are not.
 */
function timeJsonParse(lines: string[]): { parseMs: number; parseCpuMs: number; waitMs?: number } {
  const sched = mainThreadSchedMs();
  const cpu = process.cpuUsage();
  const t = performance.now();
  for (const l of lines) JSON.parse(l);
  const parseMs = performance.now() - t;
  const after = mainThreadSchedMs();
  if (sched && after)
    return { parseMs, parseCpuMs: after.runMs - sched.runMs, waitMs: after.waitMs - sched.waitMs };
  const used = process.cpuUsage(cpu);
  return { parseMs, parseCpuMs: (used.user + used.system) / 1000 };
}

/** The main thread's time on a core and waiting for one so far (ms, /proc schedstat). */
function mainThreadSchedMs(): { runMs: number; waitMs: number } | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
    const runMs = Number(run) / 1e6;
    const waitMs = Number(wait) / 1e6;
    return Number.isFinite(runMs) && Number.isFinite(waitMs) ? { runMs, waitMs } : undefined;
  } catch {
    return undefined;
  }
}

/** The main thread's CPU time so far (ms), from /proc; undefined where there is none. */
function mainThreadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/**
 * One major collection of the server's heap: when, its pause, its
 * `gc` entry's flags by name, and process.memoryUsage() as the observer saw it (just after
 * the collection, so what it left: heap used and total, external memory and, of that,
 * ArrayBuffers, MiB), to tell which pressure started it.
 */
export interface MajorGc {
  /** performance.now() at its start: the process's ms, as V8's `--trace-gc` counts them. */
  at_ms: number;
  pause_ms: number;
  flags: string[];
  heap_used_mib: number;
  heap_total_mib: number;
  external_mib: number;
  array_buffers_mib: number;
}

/** The `gc` entries' flags (perf_hooks constants NODE_PERFORMANCE_GC_FLAGS_*) by name. */
function gcFlagNames(flags: number): string[] {
  const names: string[] = [];
  for (const [k, v] of Object.entries(perfConstants))
    if (k.startsWith('NODE_PERFORMANCE_GC_FLAGS_') && v !== 0 && (flags & v) === v)
      names.push(k.slice('NODE_PERFORMANCE_GC_FLAGS_'.length).toLowerCase());
  return names;
}

const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;

/**
 * The garbage collector's pauses from now until stop(): their sum, the major ones, and
 * each major one's detail (MajorGc; at most 64 kept a round, a bench's own bound).
 */
function gcPauses(): { stop(): { gcPauseMs: number; majorGcs: number; majors: MajorGc[] } } {
  let gcPauseMs = 0;
  let majorGcs = 0;
  const majors: MajorGc[] = [];
  const add = (entries: PerformanceEntry[], live: boolean) => {
    for (const e of entries) {
      gcPauseMs += e.duration;
      const detail = (e as { detail?: { kind?: number; flags?: number } }).detail;
      if (detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
        majorGcs++;
        if (majors.length >= 64) continue;
        const m = live ? process.memoryUsage() : undefined;
        majors.push({
          at_ms: Math.round(e.startTime),
          pause_ms: Math.round(e.duration * 10) / 10,
          flags: gcFlagNames(detail.flags ?? 0),
          heap_used_mib: m ? mib(m.heapUsed) : -1,
          heap_total_mib: m ? mib(m.heapTotal) : -1,
          external_mib: m ? mib(m.external) : -1,
          array_buffers_mib: m ? mib(m.arrayBuffers) : -1,
        });
      }
    }
  };
  const observer = new PerformanceObserver((list) => add(list.getEntries(), true));
  observer.observe({ entryTypes: ['gc'] });
  return {
    stop: () => {
      add(observer.takeRecords(), false);
      observer.disconnect();
      return { gcPauseMs: Math.round(gcPauseMs * 10) / 10, majorGcs, majors };
    },
  };
}

/**
 * `--kafka`: with KAFKA_BROKERS unset, a single-node Kafka is started for the run as the
 * tests start one (test/servers/kafka.ts, as `scale` does), and stopped after it; without
 * it the Kafka figures need KAFKA_BROKERS, as before.
 */
export async function ingest(args: string[]): Promise<number> {
  if (!args.includes('--kafka') || process.env.KAFKA_BROKERS) return measure(args);
  const { brokersText, stopKafka } = await kafkaForBench('ingest', (s) =>
    process.stderr.write(`${s}\n`),
  );
  process.env.KAFKA_BROKERS = brokersText;
  try {
    return await measure(args);
  } finally {
    delete process.env.KAFKA_BROKERS;
    await stopKafka?.();
  }
}

async function measure(args: string[]): Promise<number> {
  const options = parseOptions(args);
  const lines = generateFleet({ services: 20, replicas: 5, events: options.events, seed: 3 }).map(
    (o) => JSON.stringify(o),
  );
  const bytes = lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
  const results: Record<
    string,
    { events_per_s: number; mib_per_s: number; events_per_server_cpu_s?: number }
  > = {};
  const record = (name: string, ms: number, cpuMs?: number) => {
    results[name] = {
      events_per_s: Math.round((lines.length / ms) * 1000),
      mib_per_s: Math.round((bytes / 1048576 / ms) * 1000 * 10) / 10,
      ...(cpuMs !== undefined && {
        events_per_server_cpu_s: Math.round((lines.length / cpuMs) * 1000),
      }),
    };
  };
  // The request bodies go to files for the client process and are not kept here: this
  // process is the server measured, and its heap held them (about 60 MiB of strings for
  // 100,000 events, twice the lines), which V8 marks again at every major collection and
  // sizes its heap's limits by (bench/README.md, issue 15, "major collections").
  const { bodiesFile, bulkFile, badFile, badMib } = writeBodies(lines, options.batch);

  // The ceiling, JSON.parse of the same lines, and HTTP ingest into the embedded bus,
  // taken in turns: each round's ratio compares two figures measured under the same noise.
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-'));
  const rounds: Array<
    {
      parseMs: number;
      parseCpuMs: number;
      waitMs?: number;
      ms: number;
      cpuMs: number;
      sysMs: number;
      ratio: number;
      cpuRatio: number;
    } & RoundDetail
  > = [];
  const bulkRounds: typeof rounds = [];
  let embedded: EmbeddedBus | undefined;
  for (let r = 0; r < Math.max(1, options.rounds); r++) {
    const parse = timeJsonParse(lines);
    await embedded?.close();
    embedded = openEmbeddedBus({
      path: join(dir, `bus-${r}.db`),
      maxLag: Number.MAX_SAFE_INTEGER,
    });
    const viaHttp = await httpInto(embedded, bodiesFile, options.concurrency);
    rounds.push({
      ...parse,
      ...viaHttp,
      ratio: parse.parseMs / viaHttp.cpuMs,
      cpuRatio: parse.parseCpuMs / viaHttp.cpuMs,
    });
    const bulkBus = openEmbeddedBus({
      path: join(dir, `bulk-${r}.db`),
      maxLag: Number.MAX_SAFE_INTEGER,
    });
    const viaBulk = await httpInto(bulkBus, bulkFile, options.concurrency, '/_bulk');
    await bulkBus.close();
    bulkRounds.push({
      ...parse,
      ...viaBulk,
      ratio: parse.parseMs / viaBulk.cpuMs,
      cpuRatio: parse.parseCpuMs / viaBulk.cpuMs,
    });
  }
  // Bad lines cost about what good ones do (docs/security.md): bodies of the same size
  // made of lines JSON.parse refuses ("x", after one good line, so the answer is 200),
  // NDJSON into the embedded bus, server CPU per MiB beside the good lines'.
  const badBus = openEmbeddedBus({ path: join(dir, 'bad.db'), maxLag: Number.MAX_SAFE_INTEGER });
  const viaBad = await httpInto(badBus, badFile, options.concurrency);
  await badBus.close();
  // The round of the median ratio stands for the run.
  const medianOf = (all: typeof rounds) =>
    [...all].sort((a, b) => a.ratio - b.ratio)[Math.floor(all.length / 2)]!;
  const median = medianOf(rounds);
  const bulkMedian = medianOf(bulkRounds);
  record('json_parse', median.parseMs);
  // JSON.parse per second of its own CPU time (timeJsonParse), in the same median round.
  const parseCpu = {
    events_per_cpu_s: Math.round((lines.length / median.parseCpuMs) * 1000),
    mib_per_cpu_s: Math.round((bytes / 1048576 / median.parseCpuMs) * 1000 * 10) / 10,
  };
  record('http_ndjson_to_embedded_bus', median.ms, median.cpuMs);
  record('http_bulk_to_embedded_bus', bulkMedian.ms, bulkMedian.cpuMs);

  if (process.env.ELASTICSEARCH_URL) {
    const indexer = new ElasticsearchIndexer({
      node: process.env.ELASTICSEARCH_URL,
      prefix: `bench${Date.now()}`,
    });
    await indexer.start();
    const started = performance.now();
    for (let from = 0; from < lines.length; from += 2_000) {
      await indexer.indexBatch({
        topic: 'logs',
        partition: 0,
        messages: embedded!.read('logs', from, 2_000),
      });
    }
    record('embedded_bus_to_elasticsearch', performance.now() - started);
    await indexer.client.indices.delete({ index: `${indexer.prefix}-*` });
    await indexer.close();
  }
  await embedded!.close();
  rmSync(dir, { recursive: true, force: true });

  // Kafka with each codec Drover offers (bus.compression), in rounds as the embedded bus
  // is measured: JSON.parse, then each codec once (a new bus and topics each time), so a
  // round's three figures share its noise and the first round, in which the Kafka path is
  // still being compiled (a third of its CPU then: bench/README.md, "Ingest"), does not
  // stand for the run. The round of the median ratio stands for each codec.
  const kafkaRatios: Record<string, number | number[] | Array<Record<string, number>>> = {};
  const kafkaGcs: Record<string, Array<{ from_ms: number; to_ms: number; majors: MajorGc[] }>> = {};
  if (process.env.KAFKA_BROKERS) {
    const codecs = ['gzip', 'lz4', 'none'] as const;
    const kafkaRounds: Record<
      string,
      Array<
        {
          ms: number;
          cpuMs: number;
          ratio: number;
          parseMs: number;
          fromMs: number;
          toMs: number;
          parseCpuMs: number;
          waitMs?: number;
          cpuRatio: number;
        } & RoundDetail
      >
    > = {};
    const lastPrefix: Record<string, string> = {};
    for (let r = 0; r < Math.max(1, options.rounds); r++) {
      const parse = timeJsonParse(lines);
      for (const compression of codecs) {
        const prefix = `bench${Date.now()}${compression}r${r}.`;
        const kafka = await createKafkaBus({
          brokers: process.env.KAFKA_BROKERS.split(','),
          topicPrefix: prefix,
          compression,
        });
        try {
          const via = await httpInto(kafka, bodiesFile, options.concurrency);
          (kafkaRounds[compression] ??= []).push({
            ...via,
            ...parse,
            ratio: parse.parseMs / via.cpuMs,
            cpuRatio: parse.parseCpuMs / via.cpuMs,
          });
        } finally {
          await kafka.close();
        }
        lastPrefix[compression] = prefix;
      }
    }
    for (const compression of codecs) {
      const all = kafkaRounds[compression]!;
      const mid = [...all].sort((a, b) => a.ratio - b.ratio)[Math.floor(all.length / 2)]!;
      record(`http_ndjson_to_kafka_${compression}`, mid.ms, mid.cpuMs);
      kafkaRatios[`kafka_${compression}_vs_json_parse`] = Math.round(mid.ratio * 100) / 100;
      kafkaRatios[`kafka_${compression}_rounds`] = all.map((x) => Math.round(x.ratio * 100) / 100);
      // The same against JSON.parse's CPU time (timeJsonParse), its own median round.
      kafkaRatios[`kafka_${compression}_vs_json_parse_cpu`] = round2(medianCpuRatio(all));
      kafkaRatios[`kafka_${compression}_rounds_cpu`] = all.map((x) => round2(x.cpuRatio));
      kafkaRatios[`kafka_${compression}_rounds_events_per_server_cpu_s`] = all.map((x) =>
        Math.round((lines.length / x.cpuMs) * 1000),
      );
      // Each round's JSON.parse, wall clock, and where its server CPU went (RoundDetail).
      kafkaRatios[`kafka_${compression}_rounds_detail`] = all.map((x) =>
        roundDetail(x, lines.length),
      );
      // Each round's major collections (MajorGc), to tell what started a streak of them.
      kafkaGcs[`kafka_${compression}_rounds_major_gc_detail`] = all.map((x) => ({
        from_ms: Math.round(x.fromMs),
        to_ms: Math.round(x.toMs),
        majors: x.majors,
      }));
      // What the broker holds: the last round's topics read back from the start by a
      // plain consumer, its Fetch responses' bytes (the record batches as stored, the
      // topics being of `compression.type: producer`), per event.
      kafkaRatios[`kafka_${compression}_broker_bytes_per_event`] =
        Math.round(
          ((await fetchedBytes(lastPrefix[compression]!, lines.length)) / lines.length) * 10,
        ) / 10;
    }
  }

  rmSync(dirname(bodiesFile), { recursive: true, force: true });
  // One core: JSON.parse is CPU-bound on one, so the server is compared per CPU second.
  const ratio = median.ratio;
  const wallRatio =
    results.http_ndjson_to_embedded_bus!.events_per_s / results.json_parse!.events_per_s;
  const summary = {
    events: lines.length,
    mib: Math.round((bytes / 1048576) * 10) / 10,
    batch: options.batch,
    ...results,
    json_parse_cpu: parseCpu,
    embedded_vs_json_parse: Math.round(ratio * 100) / 100,
    embedded_vs_json_parse_cpu: round2(medianCpuRatio(rounds)),
    rounds_cpu: rounds.map((r) => round2(r.cpuRatio)),
    ...kafkaRatios,
    ...kafkaGcs,
    bulk_vs_json_parse: Math.round(bulkMedian.ratio * 100) / 100,
    bulk_rounds: bulkRounds.map((r) => Math.round(r.ratio * 100) / 100),
    bulk_vs_json_parse_cpu: round2(medianCpuRatio(bulkRounds)),
    rounds: rounds.map((r) => Math.round(r.ratio * 100) / 100),
    round_details: rounds.map((r) => ({
      json_parse_us_per_event: Math.round((r.parseMs / lines.length) * 1e5) / 100,
      server_cpu_us_per_event: Math.round((r.cpuMs / lines.length) * 1e5) / 100,
      of_which_kernel_us: Math.round((r.sysMs / lines.length) * 1e5) / 100,
      ...roundDetail(r, lines.length),
    })),
    embedded_wall_vs_json_parse: Math.round(wallRatio * 100) / 100,
    good_lines_server_cpu_ms_per_mib: Math.round(median.cpuMs / (bytes / 1048576)),
    bad_lines_server_cpu_ms_per_mib: Math.round(viaBad.cpuMs / badMib),
    target_quarter_of_json_parse: ratio >= 0.25,
    node: process.version,
    sqlite: sqliteDriver(),
  };
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `ingest, ${summary.events} events (${summary.mib} MiB), ${options.batch} per request, ${options.concurrency} in flight\n`,
    );
    for (const [name, r] of Object.entries(results))
      process.stdout.write(
        `  ${name.padEnd(32)} ${String(r.events_per_s).padStart(9)} events/s  ${String(r.mib_per_s).padStart(7)} MiB/s${r.events_per_server_cpu_s ? `  ${r.events_per_server_cpu_s} events per server CPU second` : ''}\n`,
      );
    process.stdout.write(
      `  embedded bus ingest: ${summary.embedded_vs_json_parse}× JSON.parse per server core (target ≥ 0.25; median of rounds ${summary.rounds.join(', ')}); wall clock ${summary.embedded_wall_vs_json_parse}×\n`,
    );
    process.stdout.write(
      `  the same as _bulk (as Filebeat sends it): ${summary.bulk_vs_json_parse}× JSON.parse per server core (rounds ${summary.bulk_rounds.join(', ')})\n`,
    );
    process.stdout.write(
      `  a body of bad lines ("x"): ${summary.bad_lines_server_cpu_ms_per_mib} ms server CPU per MiB; good lines ${summary.good_lines_server_cpu_ms_per_mib} ms\n`,
    );
    for (const [name, r] of Object.entries(kafkaRatios))
      process.stdout.write(
        Array.isArray(r)
          ? `  ${name.replace(/_/g, ' ')}: ${r.join(', ')}\n`
          : `  ${name.replace(/_/g, ' ')}: ${r}${name.endsWith('_per_event') ? '' : `× per server core (median round, against its JSON.parse${name.endsWith('_cpu') ? "'s CPU time" : ''})`}\n`,
      );
    if (!process.env.KAFKA_BROKERS)
      process.stdout.write(
        '  (set KAFKA_BROKERS or pass --kafka to include Kafka, ELASTICSEARCH_URL to include indexing)\n',
      );
  }
  return 0;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** The median of rounds' ratios against JSON.parse's CPU time. */
function medianCpuRatio(all: Array<{ cpuRatio: number }>): number {
  return [...all].sort((a, b) => a.cpuRatio - b.cpuRatio)[Math.floor(all.length / 2)]!.cpuRatio;
}

/**
 * The NDJSON bodies (`batch` lines each), the same as `_bulk` bodies (a `create` action per
 * document, as Filebeat sends them), and bodies of bad lines of the same sizes, written to
 * files for the client process; the bad bodies' MiB.
 */
function writeBodies(
  lines: string[],
  batch: number,
): { bodiesFile: string; bulkFile: string; badFile: string; badMib: number } {
  const bodies: string[] = [];
  for (let i = 0; i < lines.length; i += batch)
    bodies.push(`${lines.slice(i, i + batch).join('\n')}\n`);
  const bodiesFile = join(mkdtempSync(join(tmpdir(), 'drover-bench-bodies-')), 'bodies.json');
  writeFileSync(bodiesFile, JSON.stringify(bodies));
  const bulkBodies: string[] = [];
  for (let i = 0; i < lines.length; i += batch)
    bulkBodies.push(
      lines
        .slice(i, i + batch)
        .map((l) => `{"create":{"_index":"logs"}}\n${l}\n`)
        .join(''),
    );
  const bulkFile = join(dirname(bodiesFile), 'bulk.json');
  writeFileSync(bulkFile, JSON.stringify(bulkBodies));
  const badFile = join(dirname(bodiesFile), 'bad.json');
  writeFileSync(
    badFile,
    JSON.stringify(
      bodies.map((b) => `${lines[0]}\n${'x\n'.repeat(Math.floor(Buffer.byteLength(b) / 2))}`),
    ),
  );
  const badMib =
    bodies.reduce((n, b) => n + Buffer.byteLength(b) + lines[0]!.length + 1, 0) / 1048576;
  return { bodiesFile, bulkFile, badFile, badMib };
}

/** A round's RoundDetail per event (µs), with its JSON.parse and wall clock. */
function roundDetail(
  r: {
    parseMs: number;
    parseCpuMs: number;
    waitMs?: number;
    ms: number;
    cpuMs: number;
  } & RoundDetail,
  events: number,
): Record<string, number> {
  const us = (ms: number) => Math.round((ms / events) * 1e5) / 100;
  return {
    json_parse_us: us(r.parseMs),
    json_parse_cpu_us: us(r.parseCpuMs),
    ...(r.waitMs !== undefined && { json_parse_wait_us: us(r.waitMs) }),
    wall_us: us(r.ms),
    server_cpu_us: us(r.cpuMs),
    ...(r.mainThreadMs !== undefined && {
      main_thread_us: us(r.mainThreadMs),
      other_threads_us: us(r.otherThreadsMs!),
    }),
    gc_pause_us: us(r.gcPauseMs),
    major_gcs: r.majorGcs,
  };
}

/** The Fetch responses' bytes of a consumer reading `events` messages of the prefix's topics. */
async function fetchedBytes(prefix: string, events: number): Promise<number> {
  const { Kafka, logLevel } = kafkajs();
  const consumer = new Kafka({
    brokers: process.env.KAFKA_BROKERS!.split(','),
    logLevel: logLevel.NOTHING,
  }).consumer({ groupId: `${prefix}bytes` });
  let bytes = 0;
  let seen = 0;
  consumer.on(consumer.events.REQUEST, ({ payload }) => {
    if (payload.apiName === 'Fetch') bytes += payload.size;
  });
  await consumer.connect();
  try {
    await consumer.subscribe({
      topics: [`${prefix}logs`, `${prefix}metrics`, `${prefix}deadletter`],
      fromBeginning: true,
    });
    await consumer.run({ eachBatch: async ({ batch }) => void (seen += batch.messages.length) });
    const until = Date.now() + 60_000;
    while (seen < events && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  } finally {
    await consumer.disconnect();
  }
  return bytes;
}

/**
 * HTTP NDJSON into Kafka with the bus's default codec (or `compression`) against
 * `JSON.parse` of the same lines, in turns (`rounds`), as `ingest` measures it: events
 * per server CPU second over JSON.parse's events per second on one core, the median
 * round's ratio and every round's.
 */
export async function kafkaIngestRatio(
  brokers: string[],
  events: number,
  rounds: number,
  compression?: 'gzip' | 'lz4' | 'none',
): Promise<{ ratio: number; rounds: number[]; events_per_server_cpu_s: number }> {
  const lines = generateFleet({ services: 20, replicas: 5, events, seed: 3 }).map((o) =>
    JSON.stringify(o),
  );
  const bodies: string[] = [];
  for (let i = 0; i < lines.length; i += 500)
    bodies.push(`${lines.slice(i, i + 500).join('\n')}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-bodies-'));
  const bodiesFile = join(dir, 'bodies.json');
  writeFileSync(bodiesFile, JSON.stringify(bodies));
  const out: Array<{ ratio: number; perCpuS: number }> = [];
  try {
    for (let r = 0; r < Math.max(1, rounds); r++) {
      const t = performance.now();
      for (const l of lines) JSON.parse(l);
      const parseMs = performance.now() - t;
      const kafka = await createKafkaBus({
        brokers,
        topicPrefix: `benchscale${Date.now()}r${r}.`,
        ...(compression !== undefined && { compression }),
      });
      try {
        const via = await httpInto(kafka, bodiesFile, 4);
        out.push({ ratio: parseMs / via.cpuMs, perCpuS: (lines.length / via.cpuMs) * 1000 });
      } finally {
        await kafka.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = [...out].sort((a, b) => a.ratio - b.ratio)[Math.floor(out.length / 2)]!;
  return {
    ratio: Math.round(median.ratio * 100) / 100,
    rounds: out.map((o) => Math.round(o.ratio * 100) / 100),
    events_per_server_cpu_s: Math.round(median.perCpuS),
  };
}
