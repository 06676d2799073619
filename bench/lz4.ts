/**
 * Drover's LZ4 compressor (ingest/bus/lz4.ts) alone, on the bytes the Kafka bus
 * compresses: the fleet's events as NDJSON lines, in record batches of `--batch` events
 * (default 500, as `kafka-publish` adds them), each framed as a Kafka record (length,
 * attributes, deltas, key, value, no headers). `npm run bench -- lz4 [--events N]
 * [--rounds N] [--batch N] [--against DIR] [--json]`: every round compresses every
 * batch once and reports MB/s of input, µs of CPU per event and the ratio (input bytes
 * over output bytes). With `--against DIR` (another checkout, e.g. main's) the rounds
 * alternate between DIR's compressor and this one in the same process, so the two are
 * compared side by side; each output is decompressed and checked once. The median
 * leaves out the first round of each (the process is still compiling).
 */

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ours from '../ingest/bus/lz4.ts';
import { generateFleet } from './fleet.ts';
import { option, median } from './args.ts';

type Compress = (src: Uint8Array) => Buffer;

function varint(n: number, out: number[]): void {
  let v = ((n << 1) ^ (n >> 31)) >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
}

/** The records of one batch as Kafka frames them (key: the service's name). */
function records(lines: Buffer[], keys: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  lines.forEach((value, i) => {
    const body: number[] = [0, 0];
    varint(i, body);
    varint(keys[i]!.length, body);
    const head = Buffer.from(body);
    const mid: number[] = [];
    varint(value.length, mid);
    const tail = Buffer.from([0]); // no headers
    const size = head.length + keys[i]!.length + mid.length + value.length + tail.length;
    const prefix: number[] = [];
    varint(size, prefix);
    parts.push(Buffer.from(prefix), head, keys[i]!, Buffer.from(mid), value, tail);
  });
  return Buffer.concat(parts);
}

interface Round {
  mb_per_s: number;
  us_per_event: number;
  ratio: number;
}

function round(compress: Compress, batches: Buffer[], events: number): Round {
  let inBytes = 0;
  let outBytes = 0;
  const cpu = process.cpuUsage();
  for (const b of batches) {
    inBytes += b.length;
    outBytes += compress(b).length;
  }
  const used = process.cpuUsage(cpu);
  const cpuS = (used.user + used.system) / 1e6;
  return {
    mb_per_s: inBytes / 1e6 / cpuS,
    us_per_event: (cpuS * 1e6) / events,
    ratio: inBytes / outBytes,
  };
}

export async function lz4Bench(args: string[]): Promise<number> {
  const events = Number(option(args, '--events', '100000'));
  const rounds = Math.max(2, Number(option(args, '--rounds', '8')));
  const batchSize = Math.max(1, Number(option(args, '--batch', '500')));
  const against = option(args, '--against', '');
  const json = args.includes('--json');
  const fleet = generateFleet({ services: 20, replicas: 5, events, seed: 3 });
  const lines = fleet.map((o) => Buffer.from(JSON.stringify(o)));
  // The service, as kafka-publish keys them.
  const keys = fleet.map((o) =>
    Buffer.from(String(o['service.name'] ?? o.name ?? o.hostname ?? '')),
  );
  const batches: Buffer[] = [];
  for (let i = 0; i < lines.length; i += batchSize)
    batches.push(records(lines.slice(i, i + batchSize), keys.slice(i, i + batchSize)));

  const impls: Array<{ name: string; compress: Compress }> = [];
  if (against) {
    const url = pathToFileURL(resolve(against, 'ingest/bus/lz4.ts')).href;
    const other = (await import(url)) as typeof ours;
    impls.push({ name: 'against', compress: other.lz4Compress });
  }
  impls.push({ name: 'this', compress: ours.lz4Compress });
  for (const impl of impls)
    for (const b of batches.slice(0, 20)) {
      const back = ours.lz4Decompress(impl.compress(b), b.length);
      if (!back.equals(b)) throw new Error(`${impl.name}: lz4 round trip differs`);
    }

  const results = new Map<string, Round[]>(impls.map((i) => [i.name, []]));
  for (let r = 0; r < rounds; r++)
    for (const impl of impls) results.get(impl.name)!.push(round(impl.compress, batches, events));

  const summary: Record<string, unknown> = {
    events,
    batch: batchSize,
    input_bytes_per_event: batches.reduce((n, b) => n + b.length, 0) / events,
  };
  for (const [name, rs] of results) {
    const warm = rs.slice(1);
    summary[name] = {
      mb_per_s: median(warm.map((x) => x.mb_per_s)),
      us_per_event: median(warm.map((x) => x.us_per_event)),
      ratio: rs[0]!.ratio,
      rounds_mb_per_s: rs.map((x) => Math.round(x.mb_per_s)),
    };
  }
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else
    for (const [name, rs] of results) {
      const s = summary[name] as { mb_per_s: number; us_per_event: number; ratio: number };
      process.stdout.write(
        `${name}: ${s.mb_per_s.toFixed(0)} MB/s, ${s.us_per_event.toFixed(3)} us/event, ratio ${s.ratio.toFixed(2)} (rounds ${rs.map((x) => x.mb_per_s.toFixed(0)).join(', ')})\n`,
      );
    }
  return 0;
}
