import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Decision, freePort, type ProcessAdapter } from '../actions/index.ts';
import type { Alert } from '../rules/index.ts';
import type { DroverConfig } from './config.ts';
import type { Logger } from './logger.ts';
import { formatChain } from './explain.ts';
import { packageRoot } from './package-root.ts';
import { Pipeline } from './serve.ts';

/**
 * `drover demo`: a real fleet (web ×3, api ×2, worker ×1, report ×1 — Node.js HTTP servers
 * on their own $PORT, logging with pino into Drover), a load generator, and five scripted
 * faults, each detected by a rule from examples/rules and remediated for real by the
 * process adapter, behind the guard rails. Each remediation is verified (did its alert
 * resolve within verify_within?): four end effective; the fifth, a replica whose database
 * is down, ends ineffective, escalates through on_ineffective and trips the breaker.
 * Prints a timeline and a summary; exits 0 only if every fault was handled as expected.
 */
/** The package's root, which holds examples/. */
const ROOT = packageRoot();

interface Expectation {
  fault: string;
  rule: string;
  expect: string;
  met: (journal: Decision[]) => Decision | undefined;
  at?: number;
  /** The verification its remediation must end with. */
  verification: 'effective' | 'ineffective';
  /** The remediation's journal entry, once met: its verification is read from it. */
  entry?: string;
}

export async function runDemo(options: {
  keepRunning: boolean;
  out: NodeJS.WritableStream;
  logger: Logger;
}): Promise<number> {
  const out = options.out;
  const started = Date.now();
  const say = (line: string) =>
    out.write(`${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s  ${line}\n`);
  const stateDir = mkdtempSync(join(tmpdir(), 'drover-demo-'));
  const crashFile = join(stateDir, 'worker.broken');
  const databaseDown = join(stateDir, 'ledger-db.down');
  const app = {
    command: process.execPath,
    args: [join(ROOT, 'examples', 'demo', 'app.js')],
    healthPath: '/healthz',
    graceMs: 2_000,
  };
  /** The demo's config, its Drover listening on `port` (the fleet logs into it). */
  const configFor = (port: number): DroverConfig => {
    const env = {
      DROVER_INGEST_URL: `http://127.0.0.1:${port}/ingest`,
      DEMO_CRASH_FILE: join(stateDir, 'none'),
    };
    return {
      stateDir,
      baseDir: ROOT,
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
      rules: { paths: [join(ROOT, 'examples', 'rules')], allowedLatenessMs: 1_000 },
      adapters: {
        fleet: {
          type: 'process',
          services: {
            web: { ...app, replicas: 3, min: 2, max: 6, env },
            api: { ...app, replicas: 2, min: 1, max: 4, env },
            worker: { ...app, replicas: 1, env: { ...env, DEMO_CRASH_FILE: crashFile } },
            report: { ...app, replicas: 1, env: { ...env, DEMO_DEPENDENCY_FILE: databaseDown } },
          },
        },
        pager: { type: 'exec', command: process.execPath, args: ['-e', 'process.exit(0)'] },
      },
      actionSets: {},
      guards: {
        cooldownMs: 60_000,
        minHealthy: 1,
        breaker: { max: 2, windowMs: 600_000, notify: 'pager' },
      },
      ruleGuards: {},
      snapshotEveryMs: 5_000,
      shutdownTimeoutMs: 30_000,
    };
  };
  say(
    'starting Drover (embedded bus, index and journal) and the fleet: web ×3, api ×2, worker ×1, report ×1',
  );
  // The port is chosen before the fleet starts (each replica is told it), and bound
  // only after: if another process took it meanwhile, Drover and the fleet start again
  // on another (start() stops what it started when a part fails).
  let pipeline: Pipeline;
  for (let attempt = 1; ; attempt++) {
    pipeline = new Pipeline(configFor(await freePort()), options.logger);
    try {
      await pipeline.start();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw err;
      say(`Drover's port was taken before it listened: starting again (${attempt + 1} of 3)`);
    }
  }
  const fleet = pipeline.adapter('fleet') as ProcessAdapter;
  pipeline.events.on('alert', (a: Alert) =>
    say(`ALERT    ${a.rule} ${JSON.stringify(a.key)} ${summarize(a.figures)}`),
  );
  pipeline.events.on('decision', (d: Decision) => {
    const what = `${d.adapter}:${d.operation} ${d.target}`;
    if (d.decision === 'executed') say(`ACTION   ${what}  ${summarize(d.result ?? {})}`);
    else if (d.decision === 'suppressed') say(`GUARD    ${d.guard} stopped ${what}: ${d.reason}`);
    else say(`${d.decision.toUpperCase().padEnd(8)} ${what} ${d.error ?? d.reason ?? ''}`);
  });
  pipeline.events.on('verification', (d: Decision) =>
    say(
      `VERIFIED ${d.adapter}:${d.operation} ${d.target}  ${d.verification?.reason ?? d.verification?.outcome}`,
    ),
  );
  fleet.on('started', (r: { id: string; port: number }) =>
    say(`fleet    ${r.id} up on :${r.port}`),
  );

  // Load: each tick, one request to a web and an api replica (more to web in a surge).
  let surge = false;
  let stopped = false;
  const load = (async () => {
    while (!stopped) {
      const targets = [...pick(fleet, 'web', surge ? 6 : 1), ...pick(fleet, 'api', 1)];
      await Promise.all(targets.map((p) => get(p)));
      await sleep(surge ? 20 : 100);
    }
  })();

  const journal = () => pipeline.decisions(1_000);
  const victims: Record<string, string> = {};
  const expectations: Expectation[] = [
    {
      fault: 'api replica throws a new stack trace',
      rule: 'api-new-stack-trace',
      expect: 'kill-and-replace that replica',
      verification: 'effective',
      met: (j) =>
        j.find(
          (d) =>
            d.rule === 'api-new-stack-trace' &&
            d.decision === 'executed' &&
            d.target === victims.api,
        ),
    },
    {
      fault: 'web replica hangs and goes silent',
      rule: 'web-replica-silent',
      expect: 'kill-and-replace that replica',
      verification: 'effective',
      met: (j) =>
        j.find(
          (d) =>
            d.rule === 'web-replica-silent' &&
            d.decision === 'executed' &&
            d.target === victims.web,
        ),
    },
    {
      fault: 'traffic surge on web',
      rule: 'web-traffic-surge',
      expect: 'scale web out within 3..6',
      verification: 'effective',
      met: (j) =>
        j.find(
          (d) =>
            d.rule === 'web-traffic-surge' && d.decision === 'executed' && d.operation === 'scale',
        ),
    },
    {
      fault: 'worker crash-loops',
      rule: 'worker-crash-loop',
      expect: 'breaker stops after 2 replacements, notifies',
      verification: 'effective',
      met: (j) => {
        const replaced = j.filter(
          (d) =>
            d.rule === 'worker-crash-loop' &&
            d.decision === 'executed' &&
            d.operation === 'kill-and-replace',
        );
        return replaced.length >= 2 &&
          j.find((d) => d.rule === 'worker-crash-loop' && d.guard === 'circuit-breaker') &&
          j.find(
            (d) =>
              d.adapter === 'pager' &&
              d.target === 'escalation' &&
              d.rule === 'worker-crash-loop' &&
              d.decision === 'executed',
          )
          ? replaced.at(-1)
          : undefined;
      },
    },
    {
      fault: 'report replica loses its database',
      rule: 'report-dependency-down',
      expect: 'replace once; on_ineffective pages; breaker',
      verification: 'ineffective',
      met: (j) => {
        const replaced = j.find(
          (d) =>
            d.rule === 'report-dependency-down' &&
            d.decision === 'executed' &&
            d.operation === 'kill-and-replace',
        );
        return replaced &&
          replaced.verification?.outcome === 'ineffective' &&
          j.find((d) => d.id === `${replaced.id}/ineffective` && d.decision === 'executed') &&
          j.find((d) => d.rule === 'report-dependency-down' && d.guard === 'circuit-breaker')
          ? replaced
          : undefined;
      },
    },
  ];
  const wait = async (e: Expectation, ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const entry = e.met(journal());
      if (entry) {
        e.at = Date.now();
        e.entry = entry.id;
        return;
      }
      await sleep(250);
    }
  };

  try {
    say('warming up: 22 s of steady traffic, so spike has its reference window');
    await sleep(22_000);
    victims.api = fleet.replicas('api')[0]!.id;
    say(`FAULT    ${victims.api} starts throwing a stack trace never seen before`);
    await post(fleet, victims.api, '/fault/new-stack');
    await wait(expectations[0]!, 15_000);

    victims.web = fleet.replicas('web')[0]!.id;
    say(`FAULT    ${victims.web} hangs: it stays up but stops serving and logging`);
    await post(fleet, victims.web, '/fault/hang');
    await wait(expectations[1]!, 25_000);

    say('FAULT    traffic surge on web');
    surge = true;
    await wait(expectations[2]!, 20_000);
    surge = false;

    say("FAULT    the worker's config breaks and it restarts: now it keeps failing to boot");
    writeFileSync(crashFile, 'the worker config is invalid until this file goes away\n');
    const worker = fleet.replicas('worker')[0];
    if (worker?.pid) process.kill(worker.pid, 'SIGTERM');
    await wait(expectations[3]!, 25_000);
    // The page reached a person, who fixes the configuration: the worker boots.
    rmSync(crashFile, { force: true });
    say('FIXED    a person fixes the worker config after the page; it boots on its next retry');

    say("FAULT    report's database goes down: every replica of it fails, replaced or not");
    writeFileSync(databaseDown, 'the ledger database is unreachable\n');
    await wait(expectations[4]!, 30_000);
    rmSync(databaseDown, { force: true });

    // Verification windows run alongside the later faults; wait for those still open.
    const outcome = (e: Expectation) =>
      journal().find((d) => d.id === e.entry)?.verification?.outcome;
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline && expectations.some((e) => e.entry && outcome(e) === 'pending'))
      await sleep(250);
  } finally {
    stopped = true;
    await load;
  }

  const final = journal();
  const verified = (e: Expectation) =>
    final.find((d) => d.id === e.entry)?.verification?.outcome ?? 'none';
  const rows = expectations.map((e) => [
    e.fault,
    e.rule,
    e.expect,
    e.at ? `yes (${((e.at - started) / 1000).toFixed(1)} s)` : 'NO',
    verified(e) === e.verification ? verified(e) : `${verified(e)} (expected ${e.verification})`,
  ]);
  const header = ['fault', 'rule', 'expected', 'remediated', 'verification'];
  const widths = header.map((h, i) => Math.max(...rows.map((r) => r[i]!.length), h.length));
  const line = (r: string[]) => `  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`;
  out.write(
    `\n${line(header)}${line(widths.map((w) => '-'.repeat(w)))}${rows.map(line).join('')}\n`,
  );
  let ok = expectations.every((e) => e.at && verified(e) === e.verification);
  const counts = journal().reduce<Record<string, number>>(
    (acc, d) => ((acc[d.decision] = (acc[d.decision] ?? 0) + 1), acc),
    {},
  );
  out.write(
    `  journal: ${Object.entries(counts)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}\n`,
  );

  // The whole chain of the fault whose remediation did not help, as `drover explain`
  // prints it: what fired, the events that counted, the decisions and the verification.
  const last = expectations.at(-1)!;
  const lastEntry = final.find((d) => d.id === last.entry);
  let explained = false;
  if (lastEntry) {
    try {
      const chain = await pipeline.explain(lastEntry.alertId);
      out.write(`\n  drover explain ${lastEntry.alertId} (the ${last.rule} alert):\n`);
      out.write(formatChain(chain).replace(/^/gm, '    '));
      explained = chain.alert !== undefined && chain.decisions.some((d) => d.verification);
    } catch (err) {
      out.write(`\n  drover explain ${lastEntry.alertId} failed: ${(err as Error).message}\n`);
    }
  }

  if (options.keepRunning) {
    out.write(
      `\n  still running: search ${pipeline.server.url}/v1/search?q=error  metrics ${pipeline.server.url}/metrics  journal ${pipeline.server.url}/v1/actions\n  Ctrl-C to stop.\n`,
    );
    await new Promise<void>((r) => process.once('SIGINT', () => r()));
  }
  ok &&= explained;
  await pipeline.stop();
  rmSync(stateDir, { recursive: true, force: true });
  out.write(
    ok
      ? '  every scripted fault was remediated as expected\n'
      : '  some faults were NOT remediated as expected\n',
  );
  return ok ? 0 : 1;
}

function summarize(o: Record<string, unknown>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

function pick(fleet: ProcessAdapter, service: string, n: number): number[] {
  const replicas = fleet.replicas(service);
  if (replicas.length === 0) return [];
  return Array.from(
    { length: n },
    () => replicas[Math.floor(Math.random() * replicas.length)]!.port,
  );
}

function get(port: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/checkout', timeout: 300 }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve());
    req.end();
  });
}

async function post(fleet: ProcessAdapter, id: string, path: string): Promise<void> {
  const replica = fleet.replicas().find((r) => r.id === id);
  if (!replica) throw new Error(`${id} is not running`);
  await fetch(`http://127.0.0.1:${replica.port}${path}`, { method: 'POST' });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
