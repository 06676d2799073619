/**
 * The Kafka bus's publish path, CPU per event, round after round in one process, so a
 * change to it can be compared side by side on a noisy machine with more rounds than
 * `ingest` takes. `npm run bench -- kafka-publish [--codec gzip|lz4|none] [--events N]
 * [--rounds N] [--http] [--json]` (KAFKA_BROKERS): without `--http`, batches of 500
 * fleet events added with addJson (the bytes written as the ingest byte path writes
 * them, all on the logs topic, keyed by service), 4 in flight, into a real broker, this process's CPU (all its threads) per
 * event; with `--http`, NDJSON over HTTP from a client in its own process into the
 * ingest server on that bus, as `ingest` measures it, events per server CPU second and
 * the ratio to JSON.parse of the same lines taken just before each round. The median
 * leaves out the first round (the process is still compiling).
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKafkaBus, type KafkaBus } from '../ingest/bus/index.ts';
import { generateFleet } from './fleet.ts';
import { httpInto } from './ingest.ts';
import { option, median } from './args.ts';

type Codec = 'gzip' | 'lz4' | 'none';

async function publishRound(bus: KafkaBus, lines: Buffer[], keys: string[]): Promise<number> {
  const cpu = process.cpuUsage();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < lines.length) {
        const from = next;
        next += 500;
        const batch = bus.batch();
        for (let i = from; i < Math.min(from + 500, lines.length); i++) {
          const line = lines[i]!;
          batch.addJson('logs', keys[i]!, (buf, at) => {
            if (at + line.length <= buf.length) buf.set(line, at);
            return at + line.length;
          });
        }
        const result = await bus.publishBatch(batch);
        if (result.rejected.length > 0) throw new Error('the bus refused fleet events');
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return (used.user + used.system) / lines.length; // µs per event
}

export async function kafkaPublish(args: string[]): Promise<number> {
  const brokers = process.env.KAFKA_BROKERS;
  if (!brokers) {
    process.stderr.write('kafka-publish needs KAFKA_BROKERS\n');
    return 2;
  }
  const codec = option(args, '--codec', 'gzip') as Codec;
  const events = Number(option(args, '--events', '100000'));
  const rounds = Math.max(2, Number(option(args, '--rounds', '6')));
  const http = args.includes('--http');
  const fleet = generateFleet({ services: 20, replicas: 5, events, seed: 3 });
  const text = fleet.map((o) => JSON.stringify(o));
  const bus = await createKafkaBus({
    brokers: brokers.split(','),
    topicPrefix: `benchpub${Date.now()}${codec}.`,
    compression: codec,
  });
  const perRound: Array<{ us_per_event: number; vs_json_parse?: number }> = [];
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-pub-'));
  try {
    if (http) {
      const bodies: string[] = [];
      for (let i = 0; i < text.length; i += 500)
        bodies.push(`${text.slice(i, i + 500).join('\n')}\n`);
      const bodiesFile = join(dir, 'bodies.json');
      writeFileSync(bodiesFile, JSON.stringify(bodies));
      for (let r = 0; r < rounds; r++) {
        const t = performance.now();
        for (const l of text) JSON.parse(l);
        const parseMs = performance.now() - t;
        const { cpuMs } = await httpInto(bus, bodiesFile, 4);
        perRound.push({
          us_per_event: Math.round((cpuMs / text.length) * 1e5) / 100,
          vs_json_parse: Math.round((parseMs / cpuMs) * 1000) / 1000,
        });
      }
    } else {
      const lines = text.map((l) => Buffer.from(l));
      // The service, as normalize keys them (a pino line's `name`, a metric's `service.name`).
      const keys = fleet.map((o) => String(o['service.name'] ?? o.name ?? o.hostname ?? ''));
      for (let r = 0; r < rounds; r++)
        perRound.push({
          us_per_event: Math.round((await publishRound(bus, lines, keys)) * 100) / 100,
        });
    }
  } finally {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const us = median(perRound.slice(1).map((r) => r.us_per_event));
  const summary = {
    codec,
    events,
    path: http ? 'http_ndjson_to_kafka' : 'bus_publish',
    us_per_event: us,
    events_per_cpu_s: Math.round(1e6 / us),
    ...(http && {
      vs_json_parse: median(perRound.slice(1).map((r) => r.vs_json_parse!)),
    }),
    rounds: perRound,
  };
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else
    process.stdout.write(
      `${summary.path} (${codec}): ${us} µs of CPU per event, ${summary.events_per_cpu_s} events per CPU s (median of rounds 2-${rounds})\n`,
    );
  return 0;
}
