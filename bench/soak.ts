/**
 * `npm run bench -- soak [--events N] [--json]`: the embedded default under sustained
 * load. A real `drover serve` child (embedded bus and index, 18 rules of every type from
 * the hot-path mix) fed a seeded 40-host fleet stream over HTTP, NDJSON and `_bulk` bodies
 * in turns, 4 in flight, as fast as it accepts (a 429 waits its Retry-After and sends the
 * same body again). It reports the pipeline's rate per million events (from the moments
 * each million had been acknowledged, indexed and evaluated by the rules), the rate per
 * million acknowledged beside it, what the index did before and while ingest was paced
 * by 429s (from the server's samples), the bytes per
 * event on disk (bus and index apart), the server's RSS, the loop pause of the rule
 * snapshots (the server's own `drover_snapshot_seconds`), how long the index and the
 * rules took to catch up after the last acknowledgement, and how long a restart takes
 * to restore the snapshot, beside a cold start on an empty state directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../actions/index.ts';
import { ensureBuilt, ROOT } from '../test/support/build.ts';
import { generateFleet } from './fleet.ts';
import { ruleMix } from './rule-mix.ts';

interface Options {
  events: number;
  json: boolean;
  keep: boolean;
  /** The checkout whose `drover serve` runs (built already); default this one. */
  root: string;
  /** `bus.retention.maxBytes` of the server, when not its default (1 GiB). */
  busMaxBytes: number | undefined;
}

const BODY = 500;
const IN_FLIGHT = 4;
const MILLION = 1_000_000;
/** Event time per body: ~1.5 ms per event, as bench/fleet.ts spaces them. */
const BODY_SPAN_MS = 750;
/** How often the server's /metrics is read (RSS, the index's progress). */
const SAMPLE_MS = 500;
/** After the bus lag reached 0, how long to wait for the index's and rules' counts. */
const THROUGH_MS = 10_000;
/** Refused (429) with nothing acknowledged for this long: the run stops with an error. */
const STALL_MS = 180_000;

function parseOptions(args: string[]): Options {
  const i = args.indexOf('--events');
  const events = i >= 0 ? Number(args[i + 1]) : 2_000_000;
  if (!Number.isInteger(events) || events < BODY) throw new Error(`--events must be ≥ ${BODY}`);
  const r = args.indexOf('--root');
  const root = r >= 0 ? resolve(args[r + 1] ?? '') : ROOT;
  const b = args.indexOf('--bus-max-bytes');
  const busMaxBytes = b >= 0 ? Number(args[b + 1]) : undefined;
  if (busMaxBytes !== undefined && !(Number.isSafeInteger(busMaxBytes) && busMaxBytes > 0))
    throw new Error('--bus-max-bytes must be a positive integer');
  return {
    events,
    json: args.includes('--json'),
    keep: args.includes('--keep'),
    root,
    busMaxBytes,
  };
}

const DURATION_FIELDS = ['timeframe', 'realert', 'ttl', 'terms_window_size'];

/** The hot-path mix as rule files: durations in milliseconds become `Nms`. */
function writeRules(dir: string): number {
  const rules = ruleMix(18);
  for (const [i, rule] of rules.entries()) {
    const spec: Record<string, unknown> = { ...rule };
    for (const f of DURATION_FIELDS) if (typeof spec[f] === 'number') spec[f] = `${spec[f]}ms`;
    if ((spec.query_key as string[]).length === 0) delete spec.query_key;
    // YAML is a superset of JSON.
    writeFileSync(join(dir, `${String(i).padStart(2, '0')}.yaml`), `${JSON.stringify(spec)}\n`);
  }
  return rules.length;
}

function bodyFor(index: number, start: number): { path: string; body: string } {
  const events = generateFleet({
    services: 8,
    replicas: 5,
    events: BODY,
    seed: index + 1,
    start: start + index * BODY_SPAN_MS,
  });
  if (index % 2 === 0)
    return { path: '/ingest', body: `${events.map((e) => JSON.stringify(e)).join('\n')}\n` };
  return {
    path: '/_bulk',
    body: events.map((e) => `{"create":{"_index":"logs"}}\n${JSON.stringify(e)}\n`).join(''),
  };
}

function http(
  agent: Agent,
  port: number,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: body
          ? { 'content-type': 'application/x-ndjson', 'content-length': Buffer.byteLength(body) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** One sample's value from a Prometheus exposition, summed over the series that match. */
function metric(text: string, name: string, labels = ''): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

/**
 * Bytes of the files whose names start with `prefix` (a database, its -wal and -shm), and
 * of everything in a folder of that name (the index's day partitions).
 */
function diskBytes(dir: string, prefix: string): number {
  let bytes = 0;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(prefix)) continue;
    const s = statSync(join(dir, name));
    bytes += s.isDirectory() ? diskBytes(join(dir, name), '') : s.size;
  }
  return bytes;
}

/**
 * What a 200 took: NDJSON says how many events it accepted; `_bulk` says it per item, a
 * 429 per item when the bus pushed back, whose action and event lines come back in
 * `retry` to be sent again.
 */
export function readAnswer(
  path: string,
  body: string,
  text: string,
): { accepted: number; rejected: number; retry?: string; reason?: string } {
  if (path !== '/_bulk') {
    const answer = JSON.parse(text) as { accepted: number; rejected?: unknown[]; omitted?: number };
    const rejected = (answer.rejected?.length ?? 0) + (answer.omitted ?? 0);
    return {
      accepted: answer.accepted,
      rejected,
      ...(rejected > 0 && { reason: JSON.stringify(answer.rejected?.[0]).slice(0, 300) }),
    };
  }
  const answer = JSON.parse(text) as {
    items: Array<Record<string, { status: number; error?: { reason?: string } }>>;
  };
  const lines = body.split('\n');
  const again: string[] = [];
  let accepted = 0;
  let rejected = 0;
  let reason: string | undefined;
  answer.items.forEach((item, i) => {
    const result = Object.values(item)[0]!;
    if (result.status >= 200 && result.status < 300) accepted++;
    else if (result.status === 429) again.push(lines[2 * i]!, lines[2 * i + 1]!);
    else {
      rejected++;
      reason ??= `${result.status} ${result.error?.reason ?? ''}`.slice(0, 300);
    }
  });
  return {
    accepted,
    rejected,
    ...(again.length > 0 && { retry: `${again.join('\n')}\n` }),
    ...(reason !== undefined && { reason }),
  };
}

/**
 * When a sampled counter reached `count`, interpolated between the samples around it
 * (`series` is [count, ms] in order, from [0, start]); NaN if it never did.
 */
export function progressAt(series: Array<[number, number]>, count: number): number {
  const i = series.findIndex(([n]) => n >= count);
  if (i < 0) return Number.NaN;
  const [n1, t1] = series[i]!;
  const [n0, t0] = series[i - 1] ?? series[i]!;
  return n1 === n0 ? t1 : t0 + ((t1 - t0) * (count - n0)) / (n1 - n0);
}

/**
 * What the samples in [from, to) say of the index: the share of that time the indexer
 * group had a batch in the index worker (its handler's time, `drover_index_batch_seconds`,
 * so the worker idled at least the rest), the seconds whose sample found the indexer with
 * less than one delivered batch (1,000 messages) to do, the indexer's least and median
 * lag sampled (both topics) and the rules' greatest. The handler's time includes the
 * batch's trips to the worker and back, so the share is an upper bound on the worker's
 * own. Null for a phase of fewer than two samples.
 */
function indexPhase(
  samples: Sample[],
  from: number,
  to: number,
  pid: number | undefined,
  worker: number | undefined,
) {
  const inside = samples.filter((x) => x.at >= from && x.at < to);
  if (inside.length < 2) return null;
  const a = inside[0]!;
  const b = inside.at(-1)!;
  let starved = 0;
  for (let i = 0; i + 1 < inside.length; i++)
    if (inside[i]!.indexerLag < 1_000) starved += inside[i + 1]!.at - inside[i]!.at;
  return {
    s: Math.round((to - from) / 100) / 10,
    index_busy: Math.round(((b.indexBusyS - a.indexBusyS) * 1000 * 100) / (b.at - a.at)) / 100,
    index_starved_s: Math.round(starved / 100) / 10,
    indexer_lag_min: Math.min(...inside.map((x) => x.indexerLag)),
    indexer_lag_p50: inside.map((x) => x.indexerLag).sort((x, y) => x - y)[inside.length >> 1]!,
    rules_lag_max: Math.max(...inside.map((x) => x.rulesLag)),
    ...timeShares(a, b, pid, worker),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  at: number;
  indexerLag: number;
  rulesLag: number;
  indexBusyS: number;
  /** Documents the index had counted. */
  docs: number;
  /** The index worker's own `drover_index_worker_seconds_total` (NaN on a server without it). */
  worker: { batch: number; cpu: number; wait: number };
  /** The server's threads as the kernel counts them: tid → [s on a CPU, s runnable waiting]. */
  threads: Map<number, [number, number]>;
  /** This process's CPU seconds (the load generator and the sampler). */
  benchCpuS: number;
  /** The machine's busy CPU seconds, all cores (/proc/stat). */
  machineBusyS: number;
}

/**
 * Every thread of process `pid`: seconds on a CPU and runnable waiting for one (Linux's
 * schedstat; empty elsewhere). The server's main thread is the one whose tid is its pid;
 * the index worker is found afterwards as the busiest of the others (workerThread()).
 */
function threadTimes(pid: number | undefined): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const [cpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ');
      out.set(Number(tid), [Number(cpu) / 1e9, Number(wait) / 1e9]);
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Busy CPU seconds of the whole machine, all cores (user, nice, system, irq, softirq, steal). */
function machineBusy(): number {
  try {
    const f = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = f.slice(1).map(Number);
    return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The index worker's tid: the server's busiest thread but its main one (over the run). */
function workerThread(samples: Sample[], pid: number | undefined): number | undefined {
  const last = samples.at(-1)?.threads;
  if (!last) return undefined;
  let best: number | undefined;
  for (const [tid, [cpu]] of last)
    if (tid !== pid && (best === undefined || cpu > last.get(best)![0])) best = tid;
  return best;
}

/**
 * Where the time of [a, b] went, as a share of its wall time (1 = one core busy): the
 * index worker thread (on a CPU, runnable waiting; from the kernel, on any server; and
 * its own batch time, from its metric where the server has it), the server's main thread
 * (ingest, rules, reading the bus), its other threads (GC, libuv), this process (the load
 * generator), and the rest of the machine (other sessions); per event indexed, the
 * worker's CPU and wait in microseconds.
 */
function timeShares(a: Sample, b: Sample, pid: number | undefined, worker: number | undefined) {
  const wall = (b.at - a.at) / 1000;
  const docs = b.docs - a.docs;
  const d = (tid: number | undefined, i: 0 | 1) =>
    tid === undefined
      ? Number.NaN
      : (b.threads.get(tid)?.[i] ?? 0) - (a.threads.get(tid)?.[i] ?? 0);
  let server = 0;
  for (const tid of b.threads.keys()) server += d(tid, 0);
  const r2 = (x: number) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);
  const r0 = (x: number) => (Number.isFinite(x) ? Math.round(x) : null);
  const machine = b.machineBusyS - a.machineBusyS;
  const bench = b.benchCpuS - a.benchCpuS;
  return {
    worker_batch: r2((b.worker.batch - a.worker.batch) / wall),
    // Within its batches (its own metric): on a CPU, and runnable waiting for one; the
    // rest of worker_batch is blocked (I/O, locks).
    worker_batch_cpu: r2((b.worker.cpu - a.worker.cpu) / wall),
    worker_batch_wait: r2((b.worker.wait - a.worker.wait) / wall),
    worker_cpu: r2(d(worker, 0) / wall),
    worker_wait: r2(d(worker, 1) / wall),
    main_cpu: r2(d(pid, 0) / wall),
    main_wait: r2(d(pid, 1) / wall),
    server_other_cpu: r2((server - d(pid, 0) - d(worker, 0)) / wall),
    bench_cpu: r2(bench / wall),
    machine_busy: r2(machine / wall),
    others_cpu: r2((machine - server - bench) / wall),
    worker_cpu_us_per_event: docs > 0 ? r0((d(worker, 0) * 1e6) / docs) : null,
    worker_wait_us_per_event: docs > 0 ? r0((d(worker, 1) * 1e6) / docs) : null,
    worker_batch_us_per_event:
      docs > 0 ? r0(((b.worker.batch - a.worker.batch) * 1e6) / docs) : null,
  };
}

interface Server {
  child: ChildProcess;
  stderr: string[];
  readyMs: number;
}

async function startServer(
  root: string,
  agent: Agent,
  port: number,
  config: string,
): Promise<Server> {
  const began = performance.now();
  const child = spawn(
    process.execPath,
    [join(root, 'bin', 'drover.js'), 'serve', '--config', config],
    {
      env: { ...process.env, DROVER_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const stderr: string[] = [];
  child.stderr.on('data', (c: Buffer) => {
    stderr.push(c.toString('utf8'));
    if (stderr.length > 50) stderr.shift();
  });
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`drover serve exited with ${child.exitCode}:\n${stderr.join('')}`);
    try {
      if ((await http(agent, port, 'GET', '/readyz')).status === 200) break;
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  return { child, stderr, readyMs: performance.now() - began };
}

async function stopServer(server: Server): Promise<number> {
  const began = performance.now();
  const exited = new Promise<void>((r) => server.child.once('exit', () => r()));
  server.child.kill('SIGTERM');
  await exited;
  return performance.now() - began;
}

export async function soak(args: string[]): Promise<number> {
  const options = parseOptions(args);
  if (options.root === ROOT) ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-soak-'));
  const state = join(dir, 'state');
  mkdirSync(join(dir, 'rules'));
  const rules = writeRules(join(dir, 'rules'));
  const port = await freePort();
  const config = join(dir, 'drover.yaml');
  writeFileSync(
    config,
    `stateDir: state\nlisten: { port: ${port}, statsdPort: false }\nrules: { paths: [rules] }\n${
      options.busMaxBytes === undefined
        ? ''
        : `bus: { kind: embedded, retention: { maxBytes: ${options.busMaxBytes} } }\n`
    }`,
  );
  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT + 2 });
  const loadBefore = loadavg()[0]!;
  const log = (line: string) => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };

  let server = await startServer(options.root, agent, port, config);
  const coldStartMs = server.readyMs;
  const serverPid = server.child.pid;
  log(`soak: ${options.events} events, ${rules} rules, state in ${dir}, server of ${options.root}`);

  // Sampling: RSS, lag and the index's and the rules' progress from the server's own /metrics.
  let rssPeak = 0;
  let stopSampling = false;
  // [documents indexed, ms]: when the index reached each count, for its rate per million.
  const indexed: Array<[number, number]> = [[0, performance.now()]];
  // [events the rules evaluated, ms], the same for the rules.
  const evaluated: Array<[number, number]> = [[0, performance.now()]];
  // Each sample: when, the indexer's and the rules' lag (both topics), and the time the
  // indexer group has spent in its handler so far (a batch in the index worker).
  const samples: Sample[] = [];
  const scrape = async () => {
    const text = (await http(agent, port, 'GET', '/metrics')).text;
    const now = performance.now();
    const rss = metric(text, 'process_resident_memory_bytes') ?? 0;
    rssPeak = Math.max(rssPeak, rss);
    const docs = metric(text, 'drover_index_documents_total') ?? 0;
    if (docs > indexed.at(-1)![0]) indexed.push([docs, now]);
    const rules = metric(text, 'drover_rule_events_total') ?? 0;
    if (rules > evaluated.at(-1)![0]) evaluated.push([rules, now]);
    const cpu = process.cpuUsage();
    const worker = (kind: string) =>
      metric(text, 'drover_index_worker_seconds_total', `kind="${kind}"`) ?? Number.NaN;
    samples.push({
      at: now,
      indexerLag: metric(text, 'drover_bus_lag_messages', 'group="drover-indexer"') ?? 0,
      rulesLag: metric(text, 'drover_bus_lag_messages', 'group="drover-rules"') ?? 0,
      indexBusyS: metric(text, 'drover_index_batch_seconds_sum') ?? 0,
      docs,
      worker: { batch: worker('batch'), cpu: worker('cpu'), wait: worker('wait') },
      threads: threadTimes(server.child.pid),
      benchCpuS: (cpu.user + cpu.system) / 1e6,
      machineBusyS: machineBusy(),
    });
    return text;
  };
  const sampler = (async () => {
    while (!stopSampling) {
      await scrape().catch(() => undefined);
      await sleep(SAMPLE_MS);
    }
  })();

  // The feed: bodies in order, IN_FLIGHT at a time; acks[i] = [events acknowledged, ms].
  const start = Date.now() - Math.ceil(options.events / BODY) * BODY_SPAN_MS - 60_000;
  const bodies = Math.ceil(options.events / BODY);
  const acks: Array<[number, number]> = [[0, performance.now()]];
  let acked = 0;
  let next = 0;
  let throttled = 0;
  let throttledMs = 0;
  // Events the server refused for good (not throttled), and why the first was.
  let rejected = 0;
  let rejectedSample: string | undefined;
  // Client side: when the first 429 came (the paced phase starts), and how long all
  // IN_FLIGHT clients waited at once (ingest idle, the server sent nothing to do).
  let firstRefusal: number | undefined;
  let waiting = 0;
  let allWaitingSince = 0;
  let allWaitingMs = 0;
  let nextReport = MILLION;
  let lastMark = performance.now();
  let lastAck = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < bodies) {
        const sent = bodyFor(next++, start);
        const path = sent.path;
        let body = sent.body;
        let accepted = 0;
        for (;;) {
          const res = await http(agent, port, 'POST', path, body);
          let retry: string | undefined;
          if (res.status === 200) {
            const answer = readAnswer(path, body, res.text);
            accepted += answer.accepted;
            rejected += answer.rejected;
            rejectedSample ??= answer.reason;
            // A throttled `_bulk` is a 200 whose items say 429 (as Elasticsearch's): those
            // items are sent again after the wait, as a shipper does.
            retry = answer.retry;
            if (retry === undefined) break;
          } else if (res.status !== 429)
            throw new Error(`ingest answered ${res.status}: ${res.text.slice(0, 500)}`);
          if (performance.now() - lastAck > STALL_MS)
            throw new Error(
              `ingest refused everything for ${STALL_MS / 1000} s after ${acked} events: ${res.text.slice(0, 500)}`,
            );
          throttled++;
          if (retry !== undefined) body = retry;
          // Without a Retry-After (a `_bulk` before 2026-12-05), 1 s: Filebeat's first backoff.
          const wait = Math.max(0.05, Number(res.headers['retry-after']) || 1) * 1000;
          throttledMs += wait;
          firstRefusal ??= performance.now();
          if (++waiting === IN_FLIGHT) allWaitingSince = performance.now();
          await sleep(wait);
          if (waiting-- === IN_FLIGHT) allWaitingMs += performance.now() - allWaitingSince;
        }
        acked += accepted;
        const now = performance.now();
        lastAck = now;
        acks.push([acked, now]);
        if (acked >= nextReport) {
          log(
            `  ${(acked / MILLION).toFixed(1)} M acknowledged: ${Math.round(MILLION / ((now - lastMark) / 1000))} events/s over the last million, RSS peak ${Math.round(rssPeak / 2 ** 20)} MB`,
          );
          lastMark = now;
          nextReport += MILLION;
        }
      }
    }),
  );
  const fedAt = performance.now();

  // Catching up: until neither the indexer nor the rules lag (`caughtUpMs`, the bus's
  // view), then until the index and the rules have counted every event acknowledged
  // (`throughMs`): the rules' merge holds a topic's messages until the other has been
  // idle for a second (pipeline/rules-input.ts), after the group has committed them.
  // Bounded: THROUGH_MS after the lag reached 0 it stops with the counts it has.
  let caughtUpMs = 0;
  let throughMs = 0;
  for (;;) {
    const text = await scrape();
    const lag =
      (metric(text, 'drover_bus_lag_messages', 'group="drover-indexer"') ?? 0) +
      (metric(text, 'drover_bus_lag_messages', 'group="drover-rules"') ?? 0);
    if (lag === 0 && caughtUpMs === 0) caughtUpMs = performance.now() - fedAt;
    if (caughtUpMs > 0) {
      const through =
        (metric(text, 'drover_index_documents_total') ?? 0) >= acked &&
        (metric(text, 'drover_rule_events_total') ?? 0) >= acked;
      if (through || performance.now() - fedAt - caughtUpMs > THROUGH_MS) {
        throughMs = performance.now() - fedAt;
        break;
      }
    }
    await sleep(caughtUpMs > 0 ? 50 : 250);
  }
  stopSampling = true;
  await sampler;
  const final = await scrape();
  const rssEnd = metric(final, 'process_resident_memory_bytes') ?? 0;
  const snapshots = metric(final, 'drover_snapshot_seconds_count') ?? 0;
  // No periodic snapshot in a short run: no pause to report.
  const q = (p: string) =>
    snapshots === 0
      ? null
      : Math.round((metric(final, 'drover_snapshot_seconds', `quantile="${p}"`) ?? NaN) * 1e5) /
        100;
  const ruleKeys = metric(final, 'drover_rule_keys') ?? 0;
  const snapshotBytesPeriodic = metric(final, 'drover_snapshot_bytes') ?? 0;
  const bus = diskBytes(state, 'bus.db');
  const index = diskBytes(state, 'index');

  // Restart: SIGTERM (the last snapshot), then the time to ready with it restored.
  const stopMs = await stopServer(server);
  const snapshotFileBytes = diskBytes(state, 'rules-state.db');
  server = await startServer(options.root, agent, port, config);
  const restoreMs = server.readyMs;
  await stopServer(server);
  agent.destroy();

  // The rate over the events in [from, to): times at which those counts were acknowledged.
  const at = (count: number) => acks.find(([n]) => n >= count)![1];
  const rate = (from: number, to: number) => Math.round((to - from) / ((at(to) - at(from)) / 1000));
  const total = acked;
  const span = Math.min(MILLION, total);
  const perMillion: number[] = [];
  for (let m = 0; m + MILLION <= total; m += MILLION) perMillion.push(rate(m, m + MILLION));
  const first = rate(0, span);
  const last = rate(total - span, total);
  // The same per million indexed, from the samples: end to end, what the index sustained
  // (ingest may run ahead of it by the bus's lag limit, 1 M messages, before a 429).
  const docs = indexed.at(-1)![0];
  const indexedAt = (count: number) => progressAt(indexed, count);
  const indexRate = (from: number, to: number) =>
    Math.round((to - from) / ((indexedAt(to) - indexedAt(from)) / 1000));
  const indexSpan = Math.min(MILLION, docs);
  const indexedPerMillion: number[] = [];
  for (let m = 0; m + MILLION <= docs; m += MILLION)
    indexedPerMillion.push(indexRate(m, m + MILLION));
  const indexedFirst = docs > 0 ? indexRate(0, indexSpan) : 0;
  const indexedLast = docs > 0 ? indexRate(docs - indexSpan, docs) : 0;
  // The pipeline's rate per million: a million is through once it has been acknowledged,
  // indexed and evaluated by the rules, each from its own record (the acknowledgements
  // exact, the other two interpolated between the 0.5 s samples). Acknowledged alone, the
  // first millions are the bus taking a burst up to its lag limit, not the pipeline's rate.
  const throughAt = (count: number) =>
    Math.max(at(count), indexedAt(count), progressAt(evaluated, count));
  const pipelineRate = (from: number, to: number) => {
    const r = Math.round((to - from) / ((throughAt(to) - throughAt(from)) / 1000));
    // A million the index or the rules never counted in full has no rate.
    return Number.isFinite(r) ? r : null;
  };
  const pipelinePerMillion: Array<number | null> = [];
  for (let m = 0; m + MILLION <= total; m += MILLION)
    pipelinePerMillion.push(pipelineRate(m, m + MILLION));
  const pipelineFirst = pipelineRate(0, span);
  const pipelineLast = pipelineRate(total - span, total);
  const ratio = (a: number | null, b: number | null) =>
    a !== null && b !== null && b > 0 ? Math.round((a / b) * 100) / 100 : null;
  // The index in each phase: before the first 429 (ingest unpaced), paced, after the feed.
  const began = acks[0]![1];
  const paced = firstRefusal ?? fedAt;
  const workerTid = workerThread(samples, serverPid);
  // Per million indexed: where the time went while the index took it (the samples
  // nearest the moments it reached each million), and the worker's cost per event.
  const sampleAt = (t: number) =>
    samples.reduce((best, x) => (Math.abs(x.at - t) < Math.abs(best.at - t) ? x : best));
  const timePerMillion: Array<ReturnType<typeof timeShares>> = [];
  for (let m = 0; m + MILLION <= docs; m += MILLION) {
    const a = sampleAt(indexedAt(m));
    const b = sampleAt(indexedAt(m + MILLION));
    if (b.at > a.at) timePerMillion.push(timeShares(a, b, serverPid, workerTid));
  }
  const summary = {
    events: total,
    rules,
    events_per_s_first_million: pipelineFirst,
    events_per_s_last_million: pipelineLast,
    last_vs_first: ratio(pipelineLast, pipelineFirst),
    events_per_s_per_million: pipelinePerMillion,
    acknowledged_events_per_s_first_million: first,
    acknowledged_events_per_s_last_million: last,
    acknowledged_last_vs_first: ratio(last, first),
    acknowledged_events_per_s_per_million: perMillion,
    rules_events_per_s_per_million: ((n) => {
      const out: number[] = [];
      for (let m = 0; m + MILLION <= n; m += MILLION)
        out.push(
          Math.round(
            MILLION / ((progressAt(evaluated, m + MILLION) - progressAt(evaluated, m)) / 1000),
          ),
        );
      return out;
    })(evaluated.at(-1)![0]),
    phase_unpaced: indexPhase(samples, began, paced, serverPid, workerTid),
    phase_paced: indexPhase(samples, paced, fedAt, serverPid, workerTid),
    phase_catch_up: indexPhase(samples, fedAt, fedAt + caughtUpMs, serverPid, workerTid),
    time_per_million_indexed: timePerMillion,
    all_clients_waiting_s: Math.round(allWaitingMs / 100) / 10,
    events_per_s_overall: Math.round(total / ((fedAt - acks[0]![1]) / 1000)),
    events_per_s_end_to_end: Math.round(total / ((fedAt + caughtUpMs - acks[0]![1]) / 1000)),
    indexed_events: docs,
    evaluated_events: evaluated.at(-1)![0],
    through_after_feed_s: Math.round(throughMs / 100) / 10,
    indexed_events_per_s_first_million: indexedFirst,
    indexed_events_per_s_last_million: indexedLast,
    indexed_last_vs_first:
      indexedFirst > 0 ? Math.round((indexedLast / indexedFirst) * 100) / 100 : 0,
    indexed_events_per_s_per_million: indexedPerMillion,
    rejected_events: rejected,
    rejected_sample: rejectedSample ?? null,
    throttled_responses: throttled,
    throttled_wait_s: Math.round(throttledMs / 100) / 10,
    catch_up_after_feed_s: Math.round(caughtUpMs / 100) / 10,
    disk_bytes_per_event: Math.round((bus + index) / total),
    bus_bytes_per_event: Math.round(bus / total),
    index_bytes_per_event: Math.round(index / total),
    bus_bytes: bus,
    index_bytes: index,
    rss_peak_mb: Math.round(rssPeak / 2 ** 20),
    rss_end_mb: Math.round(rssEnd / 2 ** 20),
    rule_keys: ruleKeys,
    snapshots,
    snapshot_pause_p50_ms: q('0.5'),
    snapshot_pause_p99_ms: q('0.99'),
    snapshot_pause_max_ms: q('1'),
    snapshot_bytes: Math.max(snapshotBytesPeriodic, snapshotFileBytes),
    stop_ms: Math.round(stopMs),
    cold_start_ms: Math.round(coldStartMs),
    restore_start_ms: Math.round(restoreMs),
    load_avg_before: Math.round(loadBefore * 100) / 100,
    load_avg_after: Math.round(loadavg()[0]! * 100) / 100,
  };
  if (!options.keep) rmSync(dir, { recursive: true, force: true });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return 0;
  }
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
  log(`
rate (acknowledged, indexed and evaluated): first ${span.toLocaleString('en')} events ${pipelineFirst} events/s, last ${pipelineLast} events/s (${summary.last_vs_first}×), per million: ${pipelinePerMillion.join(', ') || '-'}
acknowledged: first ${span.toLocaleString('en')} events ${first} events/s, last ${last} events/s (${summary.acknowledged_last_vs_first}×), per million: ${perMillion.join(', ') || '-'}; overall ${summary.events_per_s_overall} events/s
indexed: ${docs.toLocaleString('en')} events, first million ${indexedFirst} events/s, last ${indexedLast} events/s (${summary.indexed_last_vs_first}×), per million: ${indexedPerMillion.join(', ') || '-'}; end to end (fed and caught up) ${summary.events_per_s_end_to_end} events/s
429s: ${throttled} (waited ${summary.throttled_wait_s} s, all ${IN_FLIGHT} clients at once ${summary.all_clients_waiting_s} s); index and rules caught up ${summary.catch_up_after_feed_s} s after the last acknowledgement
index worker (busy share, s with under one batch to do, least lag): unpaced ${JSON.stringify(summary.phase_unpaced)}, paced ${JSON.stringify(summary.phase_paced)}, after the feed ${JSON.stringify(summary.phase_catch_up)}
time per million indexed (share of wall time; worker µs per event): ${summary.time_per_million_indexed.map((t) => `worker cpu ${t.worker_cpu} wait ${t.worker_wait} (${t.worker_cpu_us_per_event} / ${t.worker_wait_us_per_event} µs), main ${t.main_cpu}, bench ${t.bench_cpu}, others ${t.others_cpu}`).join('; ') || '-'}
disk: bus ${mb(bus)} (${summary.bus_bytes_per_event} B/event), index ${mb(index)} (${summary.index_bytes_per_event} B/event)
RSS: peak ${summary.rss_peak_mb} MB, at the end ${summary.rss_end_mb} MB
snapshots: ${snapshots} taken, loop pause p50 ${summary.snapshot_pause_p50_ms} ms, p99 ${summary.snapshot_pause_p99_ms} ms, max ${summary.snapshot_pause_max_ms} ms; ${(summary.snapshot_bytes / 1024).toFixed(0)} KiB, ${ruleKeys} keys held
restart: stop (with its snapshot) ${summary.stop_ms} ms; ready with the snapshot restored ${summary.restore_start_ms} ms (cold start ${summary.cold_start_ms} ms)
load average (1 min): ${summary.load_avg_before} before, ${summary.load_avg_after} after`);
  return 0;
}
