/**
 * `npm run bench -- soak [--events N] [--json]`: the embedded default under sustained
 * load. A real `drover serve` child (embedded bus and index, 18 rules of every type from
 * the hot-path mix) fed a seeded 40-host fleet stream over HTTP, NDJSON and `_bulk` bodies
 * in turns, 4 in flight, as fast as it accepts (a 429 waits its Retry-After and sends the
 * same body again). It reports the rate per million events acknowledged, the bytes per
 * event on disk (bus and index apart), the server's RSS, the loop pause of the rule
 * snapshots (the server's own `drover_snapshot_seconds`), how long the index and the
 * rules took to catch up after the last acknowledgement, and how long a restart takes
 * to restore the snapshot, beside a cold start on an empty state directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../actions/index.ts';
import { ensureBuilt, ROOT } from '../test/support/build.ts';
import { generateFleet } from './fleet.ts';
import { ruleMix } from './rule-mix.ts';

interface Options {
  events: number;
  json: boolean;
  keep: boolean;
}

const BODY = 500;
const IN_FLIGHT = 4;
const MILLION = 1_000_000;
/** Event time per body: ~1.5 ms per event, as bench/fleet.ts spaces them. */
const BODY_SPAN_MS = 750;
/** How often the server's /metrics is read (RSS, the index's progress). */
const SAMPLE_MS = 500;
/** Refused (429) with nothing acknowledged for this long: the run stops with an error. */
const STALL_MS = 180_000;

function parseOptions(args: string[]): Options {
  const i = args.indexOf('--events');
  const events = i >= 0 ? Number(args[i + 1]) : 2_000_000;
  if (!Number.isInteger(events) || events < BODY) throw new Error(`--events must be ≥ ${BODY}`);
  return { events, json: args.includes('--json'), keep: args.includes('--keep') };
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  child: ChildProcess;
  stderr: string[];
  readyMs: number;
}

async function startServer(agent: Agent, port: number, config: string): Promise<Server> {
  const began = performance.now();
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'drover.js'), 'serve', '--config', config],
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
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-soak-'));
  const state = join(dir, 'state');
  mkdirSync(join(dir, 'rules'));
  const rules = writeRules(join(dir, 'rules'));
  const port = await freePort();
  const config = join(dir, 'drover.yaml');
  writeFileSync(
    config,
    `stateDir: state\nlisten: { port: ${port}, statsdPort: false }\nrules: { paths: [rules] }\n`,
  );
  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT + 2 });
  const loadBefore = loadavg()[0]!;
  const log = (line: string) => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };

  let server = await startServer(agent, port, config);
  const coldStartMs = server.readyMs;
  log(`soak: ${options.events} events, ${rules} rules, state in ${dir}`);

  // Sampling: RSS, lag and the index's progress from the server's own /metrics.
  let rssPeak = 0;
  let stopSampling = false;
  // [documents indexed, ms]: when the index reached each count, for its rate per million.
  const indexed: Array<[number, number]> = [[0, performance.now()]];
  const scrape = async () => {
    const text = (await http(agent, port, 'GET', '/metrics')).text;
    const rss = metric(text, 'process_resident_memory_bytes') ?? 0;
    rssPeak = Math.max(rssPeak, rss);
    const docs = metric(text, 'drover_index_documents_total') ?? 0;
    if (docs > indexed.at(-1)![0]) indexed.push([docs, performance.now()]);
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
  let nextReport = MILLION;
  let lastMark = performance.now();
  let lastAck = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < bodies) {
        const { path, body } = bodyFor(next++, start);
        for (;;) {
          const res = await http(agent, port, 'POST', path, body);
          if (res.status === 200) break;
          if (res.status !== 429)
            throw new Error(`ingest answered ${res.status}: ${res.text.slice(0, 500)}`);
          if (performance.now() - lastAck > STALL_MS)
            throw new Error(
              `ingest refused everything for ${STALL_MS / 1000} s after ${acked} events: ${res.text.slice(0, 500)}`,
            );
          throttled++;
          const wait = Math.max(0.05, Number(res.headers['retry-after']) || 1) * 1000;
          throttledMs += wait;
          await sleep(wait);
        }
        acked += BODY;
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

  // Catching up: until neither the indexer nor the rules lag.
  let caughtUpMs = 0;
  for (;;) {
    const text = await scrape();
    const lag =
      (metric(text, 'drover_bus_lag_messages', 'group="drover-indexer"') ?? 0) +
      (metric(text, 'drover_bus_lag_messages', 'group="drover-rules"') ?? 0);
    if (lag === 0) {
      caughtUpMs = performance.now() - fedAt;
      break;
    }
    await sleep(250);
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
  server = await startServer(agent, port, config);
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
  const indexedAt = (count: number) => {
    const i = indexed.findIndex(([n]) => n >= count);
    const [n1, t1] = indexed[i]!;
    const [n0, t0] = indexed[i - 1] ?? indexed[i]!;
    return n1 === n0 ? t1 : t0 + ((t1 - t0) * (count - n0)) / (n1 - n0);
  };
  const indexRate = (from: number, to: number) =>
    Math.round((to - from) / ((indexedAt(to) - indexedAt(from)) / 1000));
  const indexSpan = Math.min(MILLION, docs);
  const indexedPerMillion: number[] = [];
  for (let m = 0; m + MILLION <= docs; m += MILLION)
    indexedPerMillion.push(indexRate(m, m + MILLION));
  const indexedFirst = docs > 0 ? indexRate(0, indexSpan) : 0;
  const indexedLast = docs > 0 ? indexRate(docs - indexSpan, docs) : 0;
  const summary = {
    events: total,
    rules,
    events_per_s_first_million: first,
    events_per_s_last_million: last,
    last_vs_first: Math.round((last / first) * 100) / 100,
    events_per_s_per_million: perMillion,
    events_per_s_overall: Math.round(total / ((fedAt - acks[0]![1]) / 1000)),
    events_per_s_end_to_end: Math.round(total / ((fedAt + caughtUpMs - acks[0]![1]) / 1000)),
    indexed_events: docs,
    indexed_events_per_s_first_million: indexedFirst,
    indexed_events_per_s_last_million: indexedLast,
    indexed_last_vs_first:
      indexedFirst > 0 ? Math.round((indexedLast / indexedFirst) * 100) / 100 : 0,
    indexed_events_per_s_per_million: indexedPerMillion,
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
rate: first ${span.toLocaleString('en')} events ${first} events/s, last ${last} events/s (${summary.last_vs_first}×), per million: ${perMillion.join(', ') || '-'}; overall ${summary.events_per_s_overall} events/s
indexed: ${docs.toLocaleString('en')} events, first million ${indexedFirst} events/s, last ${indexedLast} events/s (${summary.indexed_last_vs_first}×), per million: ${indexedPerMillion.join(', ') || '-'}; end to end (fed and caught up) ${summary.events_per_s_end_to_end} events/s
429s: ${throttled} (waited ${summary.throttled_wait_s} s); index and rules caught up ${summary.catch_up_after_feed_s} s after the last acknowledgement
disk: bus ${mb(bus)} (${summary.bus_bytes_per_event} B/event), index ${mb(index)} (${summary.index_bytes_per_event} B/event)
RSS: peak ${summary.rss_peak_mb} MB, at the end ${summary.rss_end_mb} MB
snapshots: ${snapshots} taken, loop pause p50 ${summary.snapshot_pause_p50_ms} ms, p99 ${summary.snapshot_pause_p99_ms} ms, max ${summary.snapshot_pause_max_ms} ms; ${(summary.snapshot_bytes / 1024).toFixed(0)} KiB, ${ruleKeys} keys held
restart: stop (with its snapshot) ${summary.stop_ms} ms; ready with the snapshot restored ${summary.restore_start_ms} ms (cold start ${summary.cold_start_ms} ms)
load average (1 min): ${summary.load_avg_before} before, ${summary.load_avg_after} after`);
  return 0;
}
