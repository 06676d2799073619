/**
 * The embedded bus at its size limit: what retention by size costs the loop that
 * publishes. `npm run bench -- bus-retention [--limit-mb N] [--seconds N] [--rounds N]
 * [--against DIR] [--json]`: a bus limited to `--limit-mb` (default 64) takes batches of
 * 500 fleet events, alternating between its two topics as a fleet's logs and metrics
 * arrive, a consumer group committing each batch at once (so everything is consumed and
 * retention may drop it); once the log reaches its limit every publish that finds it full
 * trims it to 90% first, on this thread. Each round publishes for `--seconds` (default
 * 10) and reports the events published, the wall time per event, and the publishes that
 * held the loop over 20 ms (count, their total and the longest). With `--against DIR`
 * (another checkout, e.g. main's) the rounds alternate between DIR's bus and this one in
 * the same process. Each round starts on a fresh file, filled to its limit first (not
 * counted).
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ours from '../ingest/bus/embedded/index.ts';
import type { Event } from '../ingest/model/index.ts';
import { generateFleet } from './fleet.ts';
import { option, median } from './args.ts';

type Open = typeof ours.openEmbeddedBus;

interface Round {
  events: number;
  us_per_event: number;
  slow_publishes: number;
  slow_ms: number;
  longest_ms: number;
}

const BATCH = 500;

async function round(
  open: Open,
  batches: Event[][],
  limit: number,
  seconds: number,
): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-bus-retention-'));
  const bus = open({ path: join(dir, 'bus.db'), retentionBytes: limit, retentionIntervalMs: 0 });
  let b = 0;
  const publish = async (): Promise<number> => {
    const started = performance.now();
    await bus.publish(batches[b++ % batches.length]!);
    const took = performance.now() - started;
    const { topics } = bus.stats();
    bus.commit('bench', 'logs', topics.logs.next);
    bus.commit('bench', 'metrics', topics.metrics.next);
    return took;
  };
  // Filled to its limit first: the round measures a bus that trims.
  while (bus.stats().storedBytes < limit * 0.95) await publish();
  const out: Round = { events: 0, us_per_event: 0, slow_publishes: 0, slow_ms: 0, longest_ms: 0 };
  const start = performance.now();
  while (performance.now() - start < seconds * 1_000) {
    const took = await publish();
    out.events += BATCH;
    if (took > 20) {
      out.slow_publishes++;
      out.slow_ms += took;
    }
    out.longest_ms = Math.max(out.longest_ms, took);
  }
  out.us_per_event = ((performance.now() - start) * 1_000) / out.events;
  out.slow_ms = Math.round(out.slow_ms);
  out.longest_ms = Math.round(out.longest_ms * 10) / 10;
  await bus.close();
  rmSync(dir, { recursive: true, force: true });
  return out;
}

export async function busRetention(args: string[]): Promise<number> {
  const limit = Number(option(args, '--limit-mb', '64')) * 1024 * 1024;
  const seconds = Number(option(args, '--seconds', '10'));
  const rounds = Math.max(1, Number(option(args, '--rounds', '2')));
  const against = option(args, '--against', '');
  const json = args.includes('--json');
  const fleet = generateFleet({ services: 20, replicas: 5, events: 100_000, seed: 3 }) as Event[];
  // Batches of one topic each, alternating: the logs, then the metrics, as they come.
  const logs = fleet.filter((e) => e['metric.name'] === undefined);
  const metrics = fleet.filter((e) => e['metric.name'] !== undefined);
  const batches: Event[][] = [];
  for (let i = 0; ; i += BATCH) {
    const l = logs.slice(i, i + BATCH);
    const m = metrics.slice(i, i + BATCH);
    if (l.length < BATCH || m.length < BATCH) break;
    batches.push(l, m);
  }
  if (batches.length === 0) throw new Error('bus-retention: the fleet has too few metrics');

  const impls: Array<{ name: string; open: Open }> = [];
  if (against) {
    const url = pathToFileURL(resolve(against, 'ingest/bus/embedded/index.ts')).href;
    impls.push({ name: 'against', open: ((await import(url)) as typeof ours).openEmbeddedBus });
  }
  impls.push({ name: 'this', open: ours.openEmbeddedBus });
  const results = new Map<string, Round[]>(impls.map((i) => [i.name, []]));
  for (let r = 0; r < rounds; r++)
    for (const impl of impls)
      results.get(impl.name)!.push(await round(impl.open, batches, limit, seconds));

  const summary: Record<string, unknown> = { limit_bytes: limit, seconds, batch: BATCH };
  for (const [name, rs] of results)
    summary[name] = {
      us_per_event: Math.round(median(rs.map((x) => x.us_per_event)) * 100) / 100,
      slow_publishes: median(rs.map((x) => x.slow_publishes)),
      slow_ms: median(rs.map((x) => x.slow_ms)),
      longest_ms: Math.max(...rs.map((x) => x.longest_ms)),
      rounds: rs,
    };
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else
    for (const [name, rs] of results)
      for (const x of rs)
        process.stdout.write(
          `${name}: ${x.events} events, ${x.us_per_event.toFixed(2)} us/event, ${x.slow_publishes} publishes over 20 ms (${x.slow_ms} ms), longest ${x.longest_ms} ms\n`,
        );
  return 0;
}
