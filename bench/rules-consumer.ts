/**
 * The rules consumer's throughput, side by side in one run: the same events, published
 * first, read back by a consumer group through the rules' event-time merge
 * (pipeline/rules-input.ts) into an engine with the 100-rule mix, from the embedded bus
 * and from Kafka (KAFKA_BROKERS), beside the engine fed directly and JSON.parse of the
 * same events. Figures are events per CPU second of this process while it consumes
 * (kafkajs's fetches, decoding, the merge and the engine; the broker is not counted).
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bus, createKafkaBus, openEmbeddedBus } from '../ingest/bus/index.ts';
import { type Event, normalize } from '../ingest/model/index.ts';
import { createRulesInput } from '../pipeline/rules-input.ts';
import { Engine } from '../rules/index.ts';
import { generateFleet } from './fleet.ts';
import { ruleMix } from './rule-mix.ts';

function option(args: string[], flag: string, fallback: number): number {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** CPU milliseconds of this process (every thread) while `fn` runs. */
async function cpuOf(fn: () => Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

/** Publishes the events, then consumes them through the merge into an engine. */
export async function consumeInto(bus: Bus, events: Event[], rules: ReturnType<typeof ruleMix>) {
  for (let i = 0; i < events.length; i += 5_000) {
    const r = await bus.publish(events.slice(i, i + 5_000));
    if (r.rejected.length > 0) throw new Error(`the bus refused ${r.rejected.length} events`);
  }
  const engine = new Engine(rules, { allowedLatenessMs: 5_000, onAlert: () => {} });
  let processed = 0;
  const input = createRulesInput({
    process: (m) => {
      engine.process(m.event);
      processed++;
    },
  });
  let stop: (() => Promise<void>) | undefined;
  const started = performance.now();
  const cpuMs = await cpuOf(async () => {
    const consumer = await bus.consume({
      group: `bench-rules-${Date.now()}`,
      topics: ['logs', 'metrics'],
      flow: input.flow,
      handler: (b) => input.handler(b),
    });
    stop = () => consumer.stop();
    while (processed < events.length) await new Promise((r) => setTimeout(r, 20));
  });
  const ms = performance.now() - started;
  await stop?.();
  return { cpuMs, ms };
}

export async function rulesConsumer(args: string[]): Promise<number> {
  const count = option(args, '--events', 200_000);
  const rules = ruleMix(option(args, '--rules', 100));
  const events = generateFleet({ services: 20, replicas: 5, events: count, seed: 7 }).map((r) =>
    normalize(r),
  );
  const lines = events.map((e) => JSON.stringify(e));
  const perCpuS = (ms: number) => Math.round((count / ms) * 1000);
  const rows: Array<[string, number, number | undefined]> = [];

  const parseMs = await cpuOf(async () => {
    for (const l of lines) JSON.parse(l);
  });
  rows.push(['JSON.parse of the same events', perCpuS(parseMs), undefined]);
  const engineMs = await cpuOf(async () => {
    const engine = new Engine(rules, { allowedLatenessMs: 5_000, onAlert: () => {} });
    for (const e of events) engine.process(e);
  });
  rows.push(['engine alone (events in memory)', perCpuS(engineMs), undefined]);

  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-rules-'));
  const embedded = openEmbeddedBus({ path: join(dir, 'bus.db'), maxLag: Number.MAX_SAFE_INTEGER });
  const viaEmbedded = await consumeInto(embedded, events, rules);
  await embedded.close();
  rmSync(dir, { recursive: true, force: true });
  rows.push(['embedded bus → merge → engine', perCpuS(viaEmbedded.cpuMs), viaEmbedded.ms]);

  if (process.env.KAFKA_BROKERS)
    for (const compression of ['gzip', 'lz4', 'none'] as const) {
      const kafka = await createKafkaBus({
        brokers: process.env.KAFKA_BROKERS.split(','),
        topicPrefix: `benchrules${Date.now()}${compression}.`,
        compression,
      });
      const viaKafka = await consumeInto(kafka, events, rules);
      await kafka.close();
      rows.push([`Kafka (${compression}) → merge → engine`, perCpuS(viaKafka.cpuMs), viaKafka.ms]);
    }

  const json = args.includes('--json');
  if (json)
    process.stdout.write(
      `${JSON.stringify({ events: count, rules: rules.length, rows: rows.map(([name, perCpu, ms]) => ({ name, events_per_cpu_s: perCpu, wall_ms: ms })) })}\n`,
    );
  else {
    process.stdout.write(`rules consumer, ${count} events, ${rules.length} rules\n`);
    for (const [name, perCpu, ms] of rows)
      process.stdout.write(
        `  ${name.padEnd(34)} ${String(perCpu).padStart(9)} events per CPU second${ms === undefined ? '' : `  (wall ${Math.round(ms)} ms, including the merge's 1 s idle wait at the end)`}\n`,
      );
    if (!process.env.KAFKA_BROKERS)
      process.stdout.write('  (set KAFKA_BROKERS to include Kafka)\n');
  }
  return 0;
}
