import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Client } from '@elastic/elasticsearch';
import { normalize } from '../ingest/model/index.ts';
import { isoTime } from '../ingest/sinks/elasticsearch.ts';
import { ElasticsearchScan } from '../ingest/sinks/elasticsearch-scan.ts';
import { backtest, loadRules, type RuleSpec } from '../rules/index.ts';
import { FLEET_RULES, generateFleetStream } from '../test/support/fleet-stream.ts';

/**
 * `drover backtest` against its baselines, in turns in one process (issue 17):
 *
 * - file: backtest of an NDJSON file (the rules of the live-equals-backtest test) in
 *   events/s, against `readline` + `JSON.parse` of the same file. Target: ≥ 0.5×.
 *   Also the same ratio in events per CPU second of the process (`process.cpuUsage`,
 *   every thread): on a shared machine other processes' load moves wall time far more
 *   than CPU time.
 * - elasticsearch (when ELASTICSEARCH_URL is set): the same events indexed as the
 *   indexer writes them, read back by the backtest (`ElasticsearchScan`, point in time
 *   + search_after, pages of 1,000) against a plain point-in-time search_after read of
 *   the same index that only takes the hits; and the backtest's own CPU time against
 *   its wall time (bound by the server when well below 1).
 *
 * `npm run bench -- backtest [--events N] [--turns N] [--json]`.
 */

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function readlineParse(path: string): Promise<number> {
  let n = 0;
  const lines = createInterface({
    input: createReadStream(path),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (line === '') continue;
    JSON.parse(line);
    n++;
  }
  return n;
}

export async function backtestBench(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const opt = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const events = opt('--events', 200_000);
  const turns = opt('--turns', 5);
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-backtest-'));
  try {
    for (const [f, text] of Object.entries(FLEET_RULES)) writeFileSync(join(dir, f), text);
    const { rules } = await loadRules([dir]);
    const start = Date.UTC(2026, 0, 1);
    const stream = generateFleetStream({ seed: 17, start, minutes: Math.ceil(events / 1_150) });
    const lines = stream.lines.slice(0, events);
    const data = join(dir, 'events.ndjson');
    writeFileSync(data, `${lines.join('\n')}\n`);

    const rate: Record<string, number[]> = { 'readline + JSON.parse': [], 'backtest file': [] };
    const cpuRate: Record<string, number[]> = { 'readline + JSON.parse': [], 'backtest file': [] };
    const cpuMs = (since: NodeJS.CpuUsage) => {
      const u = process.cpuUsage(since);
      return (u.user + u.system) / 1e3;
    };
    for (let t = 0; t < turns; t++) {
      let began = performance.now();
      let cpu0 = process.cpuUsage();
      const n = await readlineParse(data);
      rate['readline + JSON.parse']!.push(n / ((performance.now() - began) / 1e3));
      cpuRate['readline + JSON.parse']!.push(n / (cpuMs(cpu0) / 1e3));
      began = performance.now();
      cpu0 = process.cpuUsage();
      const s = await backtest(createReadStream(data), { rules, allowedLatenessMs: 30_000 });
      rate['backtest file']!.push(s.events / ((performance.now() - began) / 1e3));
      cpuRate['backtest file']!.push(s.events / (cpuMs(cpu0) / 1e3));
    }
    const file = {
      events: lines.length,
      readlineParse: Math.round(median(rate['readline + JSON.parse']!)),
      backtest: Math.round(median(rate['backtest file']!)),
      ratio: Number(
        (median(rate['backtest file']!) / median(rate['readline + JSON.parse']!)).toFixed(2),
      ),
      cpuRatio: Number(
        (median(cpuRate['backtest file']!) / median(cpuRate['readline + JSON.parse']!)).toFixed(2),
      ),
    };
    const es = process.env.ELASTICSEARCH_URL
      ? await esBench(process.env.ELASTICSEARCH_URL, lines, rules, turns)
      : undefined;
    if (json) process.stdout.write(`${JSON.stringify({ turns, file, elasticsearch: es })}\n`);
    else {
      const k = (n: number) => `${Math.round(n / 1e3)} k events/s`;
      process.stdout.write(
        `backtest, ${lines.length} events, ${turns} turns, median:\n` +
          `  file: backtest ${k(file.backtest)}, readline + JSON.parse ${k(file.readlineParse)}: ${file.ratio}× (target ≥ 0.5×); per CPU second ${file.cpuRatio}×\n`,
      );
      if (es)
        process.stdout.write(
          `  elasticsearch: backtest ${k(es.backtest)}, plain search_after read ${k(es.plainRead)}: ${es.ratio}×; backtest CPU / wall ${es.cpuOverWall}\n`,
        );
      else process.stdout.write('  elasticsearch: skipped (no ELASTICSEARCH_URL)\n');
    }
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function esBench(url: string, lines: string[], rules: RuleSpec[], turns: number) {
  const client = new Client({ node: url });
  const index = `bench-backtest-${process.pid}`;
  try {
    await client.indices.create({
      index,
      settings: { number_of_replicas: 0 },
      mappings: { properties: { '@timestamp': { type: 'date' } } },
    });
    for (let i = 0; i < lines.length; i += 5_000) {
      const operations = lines.slice(i, i + 5_000).flatMap((l) => {
        const e = normalize(JSON.parse(l), { receivedAt: Number.NaN });
        return [{ create: { _index: index } }, { ...e, '@timestamp': isoTime(e['@timestamp']) }];
      });
      await client.bulk({ operations });
    }
    await client.indices.refresh({ index });
    const plain: number[] = [];
    const drover: number[] = [];
    const cpu: number[] = [];
    for (let t = 0; t < turns; t++) {
      let began = performance.now();
      let n = 0;
      const { id } = await client.openPointInTime({ index, keep_alive: '1m' });
      let after: unknown[] | undefined;
      while (true) {
        const r = await client.search({
          pit: { id, keep_alive: '1m' },
          size: 1_000,
          sort: [{ '@timestamp': 'asc' }, { _shard_doc: 'asc' }],
          ...(after && { search_after: after as never }),
        });
        const hits = r.hits.hits;
        if (hits.length === 0) break;
        n += hits.length;
        after = hits[hits.length - 1]!.sort;
        if (hits.length < 1_000) break;
      }
      await client.closePointInTime({ id });
      plain.push(n / ((performance.now() - began) / 1e3));

      const scan = new ElasticsearchScan({ node: url, index });
      began = performance.now();
      const cpu0 = process.cpuUsage();
      const s = await backtest({ pages: scan.pages() }, { rules, allowedLatenessMs: 30_000 });
      const used = process.cpuUsage(cpu0);
      const wall = performance.now() - began;
      await scan.close();
      drover.push(s.events / (wall / 1e3));
      cpu.push((used.user + used.system) / 1e3 / wall);
    }
    return {
      plainRead: Math.round(median(plain)),
      backtest: Math.round(median(drover)),
      ratio: Number((median(drover) / median(plain)).toFixed(2)),
      cpuOverWall: Number(median(cpu).toFixed(2)),
    };
  } finally {
    await client.indices.delete({ index }).catch(() => {});
    await client.close();
  }
}
