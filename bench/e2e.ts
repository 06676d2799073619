/**
 * `npm run bench -- e2e`: detection-to-action latency on the embedded path. A real
 * `drover serve` pipeline (HTTP ingest, SQLite bus, embedded index, rules engine,
 * remediator, SQLite journal) and a process-adapter fleet of real child processes.
 * Each incident POSTs one event that trips a rule without `for:`; we time
 *   - ack:       the POST's response (the ingest round trip; the floor, same run),
 *   - alert:     the engine's alert,
 *   - action:    the process adapter starting the replacement replica,
 *   - remediated: the journal's `executed` (replacement ready, the sick replica gone).
 * Target: action p99 under 100 ms.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Decision, ProcessAdapter } from '../actions/index.ts';
import { freePort } from '../actions/index.ts';
import type { DroverConfig } from '../pipeline/config.ts';
import { createLogger } from '../pipeline/logger.ts';
import { Pipeline } from '../pipeline/serve.ts';
import type { Alert } from '../rules/index.ts';

interface Options {
  incidents: number;
  json: boolean;
}

function parseOptions(args: string[]): Options {
  const i = args.indexOf('--incidents');
  return {
    incidents: i >= 0 ? Number(args[i + 1]) : 200,
    json: args.includes('--json'),
  };
}

function post(port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/ingest',
        headers: { 'content-type': 'application/x-ndjson' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, i)]! * 100) / 100;
}

export async function e2e(args: string[]): Promise<number> {
  const options = parseOptions(args);
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-e2e-'));
  mkdirSync(join(dir, 'rules'));
  writeFileSync(
    join(dir, 'rules', 'trip.yaml'),
    `name: replica-tripped
type: frequency
query_key: host.name
num_events: 1
timeframe: 1m
filter: { all: [ { fact: message, operator: equal, value: trip } ] }
actions:
  - { adapter: fleet, operation: kill-and-replace, target: "{{ host.name }}" }
`,
  );
  const port = await freePort();
  const replica = `require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1')`;
  const config: DroverConfig = {
    stateDir: join(dir, 'state'),
    baseDir: dir,
    listen: {
      host: '127.0.0.1',
      port,
      statsdPort: false,
      tokens: [],
      apiKeys: [],
      maxBodyBytes: 16 << 20,
    },
    bus: { kind: 'embedded' },
    index: { kind: 'embedded' },
    rules: { paths: [join(dir, 'rules')], allowedLatenessMs: 1_000 },
    adapters: {
      fleet: {
        type: 'process',
        services: {
          web: { command: process.execPath, args: ['-e', replica], replicas: 3, graceMs: 1_000 },
        },
      },
    },
    actionSets: {},
    // Every incident trips a different replica: a storm by the default cap (50 keys in
    // 10 min), which this benchmark of latency is not about.
    guards: { cooldownMs: 0, maxKeysPerRule: { max: 1_000_000, windowMs: 600_000 } },
    ruleGuards: {},
    snapshotEveryMs: 60_000,
    shutdownTimeoutMs: 30_000,
  };
  const pipeline = new Pipeline(config, createLogger({ level: 'warn' }));
  await pipeline.start();
  const fleet = pipeline.adapter('fleet') as ProcessAdapter;

  const marks = { alert: new Map<string, number>(), action: 0, done: new Map<string, number>() };
  pipeline.events.on('alert', (a: Alert) =>
    marks.alert.set(String(a.key['host.name']), performance.now()),
  );
  fleet.on('started', () => {
    if (marks.action === 0) marks.action = performance.now();
  });
  pipeline.events.on('decision', (d: Decision) => {
    // Only an executed action is a remediation: anything else fails its incident.
    if (d.decision !== 'executed')
      process.stderr.write(`unexpected decision: ${JSON.stringify(d)}\n`);
    else marks.done.set(d.target, performance.now());
  });

  const lat = {
    ack: [] as number[],
    alert: [] as number[],
    action: [] as number[],
    remediated: [] as number[],
  };
  let failed = 0;
  for (let i = 0; i < options.incidents; i++) {
    const victim = fleet.replicas('web').find((r) => r.healthy !== false)!.id;
    marks.action = 0;
    const line = JSON.stringify({
      '@timestamp': new Date().toISOString(),
      'service.name': 'web',
      'host.name': victim,
      message: 'trip',
    });
    const t0 = performance.now();
    const status = await post(port, `${line}\n`);
    lat.ack.push(performance.now() - t0);
    if (status !== 200) throw new Error(`ingest answered ${status}`);
    const deadline = Date.now() + 10_000;
    while (!marks.done.has(victim) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 1));
    if (!marks.done.has(victim)) {
      failed++;
      continue;
    }
    lat.alert.push(marks.alert.get(victim)! - t0);
    lat.action.push(marks.action - t0);
    lat.remediated.push(marks.done.get(victim)! - t0);
    // Let the old replica's exit and the indexer settle, as incidents are apart in life.
    await new Promise((r) => setTimeout(r, 20));
  }
  await pipeline.stop();
  rmSync(dir, { recursive: true, force: true });

  const summary: Record<string, unknown> = { incidents: options.incidents, failed };
  for (const [name, values] of Object.entries(lat)) {
    const sorted = [...values].sort((a, b) => a - b);
    summary[name] = {
      p50_ms: quantile(sorted, 0.5),
      p99_ms: quantile(sorted, 0.99),
      max_ms: quantile(sorted, 1),
    };
  }
  const actionP99 = (summary.action as { p99_ms: number }).p99_ms;
  summary.target_action_p99_under_100ms = actionP99 < 100 && failed === 0;
  summary.node = process.version;
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `e2e, ${options.incidents} incidents on the embedded path (POST of the tripping event → …)\n`,
    );
    for (const name of Object.keys(lat)) {
      const s = summary[name] as { p50_ms: number; p99_ms: number; max_ms: number };
      process.stdout.write(
        `  ${name.padEnd(11)} p50 ${String(s.p50_ms).padStart(7)} ms   p99 ${String(s.p99_ms).padStart(7)} ms   max ${String(s.max_ms).padStart(7)} ms\n`,
      );
    }
    process.stdout.write(
      `  detection-to-action p99 ${actionP99} ms (target < 100 ms)${failed ? `, ${failed} incidents not remediated` : ''}\n`,
    );
  }
  return failed === 0 ? 0 : 1;
}
