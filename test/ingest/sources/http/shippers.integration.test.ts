import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../../servers/common.ts';
import { killServes, type Served, startServe, stopServe, until } from '../../../support/drover.ts';

/**
 * Real shippers, unchanged, pointed at `drover serve` as if it were Elasticsearch:
 * rsyslog's omelasticsearch (bulk mode, its own retry and error file) and Elastic's
 * official Python client (product check on first call, helpers.bulk with per-item
 * errors). What they send is what Drover must take; what Drover answers is what their
 * success and retry logic reads.
 */
const rsyslogd = inject('rsyslogd');
const esPython = inject('esPython');
const reasons = inject('serverSkipReasons');

afterAll(killServes);

type Drover = Served;

function startDrover(dir: string, port: number): Promise<Drover> {
  writeFileSync(
    join(dir, 'drover.yaml'),
    `stateDir: state\nlisten: { port: ${port}, statsdPort: false }\nrules: { paths: [rules] }\n`,
  );
  mkdirSync(join(dir, 'rules'), { recursive: true });
  return startServe(join(dir, 'drover.yaml'));
}

const stopDrover = async (d: Drover) => void (await stopServe(d));

async function search(url: string, q: string): Promise<Array<Record<string, unknown>>> {
  const r = await fetch(`${url}/v1/search?q=${encodeURIComponent(q)}&size=100`);
  return ((await r.json()) as { events: Array<Record<string, unknown>> }).events;
}

/**
 * Stops Drover, lets `write` run while it is down, restarts it on the same port and
 * state, and waits for `count` events whose message matches `pattern` to arrive: what the
 * shipper's own retries delivered.
 */
async function shippedWhileDown(
  running: Drover,
  dir: string,
  port: number,
  write: () => Promise<void> | void,
  q: string,
  pattern: RegExp,
  count: number,
): Promise<{ drover: Drover; events: Array<Record<string, unknown>> }> {
  await stopServe(running);
  await write();
  await new Promise((r) => setTimeout(r, 1_500));
  const drover = await startDrover(dir, port);
  const events = await until(
    'what was shipped while Drover was down',
    async () => {
      const found = (await search(drover.url, q)).filter((e) => pattern.test(String(e.message)));
      return found.length >= count ? found : undefined;
    },
    60_000,
  );
  return { drover, events };
}

function sendSyslog(port: number, lines: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.end(lines.map((l) => `${l}\n`).join('')),
    );
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}

describe.skipIf(!rsyslogd)(
  `rsyslog's omelasticsearch into Drover${reasons.rsyslog ? ` (skipped: ${reasons.rsyslog})` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-rsyslog-'));
    let drover: Drover;
    let rsyslog: ChildProcess;
    let droverPort: number;
    let syslogPort: number;

    beforeAll(async () => {
      droverPort = await freePort();
      syslogPort = await freePort();
      drover = await startDrover(dir, droverPort);
      // An ECS-shaped JSON document per message, shipped in bulk mode; rsyslog retries
      // every second while its Elasticsearch is away and writes refused items to a file.
      writeFileSync(
        join(dir, 'rsyslog.conf'),
        `global(workDirectory="${dir}")
module(load="imtcp")
module(load="omelasticsearch")
input(type="imtcp" port="${syslogPort}" ruleset="toDrover")
template(name="ecs" type="list" option.jsonf="on") {
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host.name" name="hostname" format="jsonf")
  property(outname="service.name" name="programname" format="jsonf")
  property(outname="log.level" name="syslogseverity-text" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
ruleset(name="toDrover") {
  action(type="omelasticsearch" server="127.0.0.1" serverport="${droverPort}" template="ecs"
         searchIndex="logs-rsyslog" bulkmode="on" errorfile="${dir}/refused.json"
         queue.type="linkedlist" action.resumeRetryCount="-1" action.resumeInterval="1")
}
`,
      );
      const check = spawnSync(rsyslogd!, ['-N1', '-f', join(dir, 'rsyslog.conf')], {
        encoding: 'utf8',
      });
      expect(check.status, check.stderr).toBe(0);
      rsyslog = spawn(rsyslogd!, ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'pid')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      await until(
        'rsyslog to listen',
        async () =>
          new Promise<true | undefined>((resolve) => {
            const s = connect(syslogPort, '127.0.0.1', () => {
              s.destroy();
              resolve(true);
            });
            s.on('error', () => resolve(undefined));
          }),
      );
    }, 60_000);

    afterAll(async () => {
      rsyslog?.kill('SIGTERM');
      if (drover) await stopDrover(drover);
    });

    it('ships syslog messages in bulk: each arrives as an event with its host, service and level', async () => {
      await sendSyslog(syslogPort, [
        '<11>Nov 22 10:00:01 web-3 checkout[123]: payment failed for order 1',
        '<14>Nov 22 10:00:02 web-3 checkout[123]: order 2 accepted',
        '<12>Nov 22 10:00:03 db-1 postgres[77]: slow query rsyslogcheck',
      ]);
      const events = await until('three events', async () => {
        const found = [
          ...(await search(drover.url, 'payment')),
          ...(await search(drover.url, 'accepted')),
          ...(await search(drover.url, 'rsyslogcheck')),
        ];
        return found.length === 3 ? found : undefined;
      });
      const byMessage = Object.fromEntries(events.map((e) => [String(e.message).trim(), e]));
      expect(byMessage['payment failed for order 1']).toMatchObject({
        'host.name': 'web-3',
        'service.name': 'checkout',
        'log.level': 'error',
      });
      expect(byMessage['order 2 accepted']).toMatchObject({ 'log.level': 'info' });
      expect(byMessage['slow query rsyslogcheck']).toMatchObject({
        'service.name': 'postgres',
        // syslog's "warning" normalized to the event model's level
        // (docs/architecture.md#event-model).
        'log.level': 'warn',
      });
      expect(existsSync(join(dir, 'refused.json'))).toBe(false);
    });

    it('loses nothing while Drover is away: rsyslog retries until it is back', async () => {
      let events: Array<Record<string, unknown>>;
      ({ drover, events } = await shippedWhileDown(
        drover,
        dir,
        droverPort,
        () =>
          sendSyslog(syslogPort, [
            '<11>Nov 22 10:01:01 web-4 checkout[9]: while away 1',
            '<11>Nov 22 10:01:02 web-4 checkout[9]: while away 2',
          ]),
        'away',
        /while away/,
        2,
      ));
      expect(events.map((e) => String(e.message).trim()).sort()).toEqual([
        'while away 1',
        'while away 2',
      ]);
    }, 90_000);
  },
);

const SCRIPT = `
import json, sys
from elasticsearch import Elasticsearch, helpers
from elasticsearch.helpers import BulkIndexError

es = Elasticsearch(sys.argv[1], request_timeout=10)
out = {"info": es.info().body, "health": es.cluster.health().body["status"]}
docs = [
    {"_index": "app-logs", "_source": {"@timestamp": "2024-06-01T10:00:00Z", "service": {"name": "billing"}, "log": {"level": "info"}, "message": "pyclient invoice 1 sent"}},
    {"_index": "app-logs", "_op_type": "create", "_source": {"@timestamp": "2024-06-01T10:00:01Z", "service": {"name": "billing"}, "log": {"level": "error"}, "message": "pyclient invoice 2 failed"}},
    {"_index": "app-logs", "_op_type": "delete", "_id": "x"},
    {"_index": "app-logs", "_source": {"@timestamp": "2024-06-01T10:00:02Z", "service": {"name": "billing"}, "message": "pyclient invoice 3 sent"}},
]
try:
    helpers.bulk(es, docs)
    out["bulk"] = "no error"
except BulkIndexError as e:
    out["bulk"] = [{k: {"status": v["status"], "error": v.get("error")}} for item in e.errors for k, v in item.items()]
ok, errors = helpers.bulk(es, [d for d in docs if d.get("_op_type") != "delete"], stats_only=True)
out["retry"] = [ok, errors]
print(json.dumps(out))
`;

describe.skipIf(!esPython)(
  `Elastic's Python client against Drover${reasons['python-elasticsearch'] ? ` (skipped: ${reasons['python-elasticsearch']})` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-pyclient-'));
    let drover: Drover;
    beforeAll(async () => {
      drover = await startDrover(dir, await freePort());
    }, 30_000);
    afterAll(async () => {
      if (drover) await stopDrover(drover);
    });

    it('passes the product check, and bulk errors are per item: the refused one reported, the rest stored', async () => {
      writeFileSync(join(dir, 'client.py'), SCRIPT);
      const r = spawnSync(esPython!, [join(dir, 'client.py'), drover.url], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as {
        info: { version: { number: string }; tagline: string };
        health: string;
        bulk: Array<Record<string, { status: number; error: { reason: string } }>>;
        retry: [number, number];
      };
      expect(out.info.version.number).toMatch(/^8\./);
      expect(['green', 'yellow']).toContain(out.health);
      // helpers.bulk raises with exactly the refused item; the others went in.
      expect(out.bulk).toHaveLength(1);
      expect(out.bulk[0]!.delete).toMatchObject({ status: 400 });
      expect(out.bulk[0]!.delete!.error.reason).toMatch(/does not delete/);
      expect(out.retry).toEqual([3, 0]);
      const stored = await until('the client documents', async () => {
        const found = await search(drover.url, 'pyclient');
        return found.length >= 3 ? found : undefined;
      });
      // Sent twice without ids: stored twice, as Elasticsearch would.
      const all = await until('both sends', async () => {
        const found = await search(drover.url, 'pyclient');
        return found.length === 6 ? found : undefined;
      });
      expect(all).toHaveLength(6);
      expect(stored.find((e) => String(e.message).includes('invoice 2'))).toMatchObject({
        'service.name': 'billing',
        'log.level': 'error',
      });
    }, 90_000);
  },
);

const OTEL_SCRIPT = `
import json, logging, sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

url = sys.argv[1]
resource = Resource.create({"service.name": "otel-py", "host.name": "py-1"})
logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=url + "/v1/logs")))
log = logging.getLogger("checkout")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
log.setLevel(logging.INFO)
log.error("otelpy card declined", extra={"order.id": "o-17"})
log.info("otelpy order placed")
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url + "/v1/metrics"), export_interval_millis=3600000)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meters.get_meter("checkout").create_counter("otelpy_orders_total").add(3, {"region": "eu"})
out = {"logs": logs.force_flush(), "metrics": meters.force_flush()}
logs.shutdown()
meters.shutdown()
print(json.dumps(out))
`;

describe.skipIf(!esPython)(
  `OpenTelemetry's Python SDK exporting OTLP/HTTP to Drover${reasons['python-elasticsearch'] ? ` (skipped: ${reasons['python-elasticsearch']})` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-otel-'));
    let drover: Drover;
    beforeAll(async () => {
      drover = await startDrover(dir, await freePort());
    }, 30_000);
    afterAll(async () => {
      if (drover) await stopDrover(drover);
    });

    it('its log records and metric points arrive as events with the resource service and host', async () => {
      writeFileSync(join(dir, 'otel.py'), OTEL_SCRIPT);
      const r = spawnSync(esPython!, [join(dir, 'otel.py'), drover.url], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      // The exporters log failed exports rather than raising: none may appear.
      expect(r.stderr).not.toMatch(/Failed to export|error/i);
      expect(JSON.parse(r.stdout)).toEqual({ logs: true, metrics: true });
      const events = await until('the OTLP events', async () => {
        const res = await fetch(`${drover.url}/v1/search?service=otel-py&size=100`);
        const found = ((await res.json()) as { events: Array<Record<string, unknown>> }).events;
        return found.length >= 3 ? found : undefined;
      });
      const declined = events.find((e) => e.message === 'otelpy card declined');
      expect(declined).toMatchObject({ 'host.name': 'py-1', 'log.level': 'error' });
      expect(events.find((e) => e.message === 'otelpy order placed')).toMatchObject({
        'log.level': 'info',
      });
      expect(declined!['order.id']).toBe('o-17');
      expect(events.filter((e) => e.message !== undefined)).toHaveLength(2);
      // A cumulative counter: force_flush exports it, and shutdown once more, same total.
      const points = events.filter((e) => e['metric.name'] === 'otelpy_orders_total');
      expect(points.length).toBeGreaterThanOrEqual(1);
      for (const p of points)
        expect(p).toMatchObject({ 'metric.value': 3, 'metric.type': 'counter', region: 'eu' });
    }, 90_000);
  },
);

const filebeat = inject('filebeat');

describe.skipIf(!filebeat)(
  `Filebeat's Elasticsearch output into Drover${reasons.filebeat ? ` (skipped: ${reasons.filebeat})` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-filebeat-'));
    let drover: Drover;
    let beat: ChildProcess;
    let droverPort: number;
    const logFile = join(dir, 'app.log');
    const pino = (i: number, level = 30) =>
      `${JSON.stringify({ level, time: Date.now(), pid: 1, hostname: 'fb-host', name: 'checkout', msg: `filebeat line ${i}` })}\n`;

    beforeAll(async () => {
      droverPort = await freePort();
      drover = await startDrover(dir, droverPort);
      writeFileSync(logFile, pino(1) + pino(2, 50));
      // Filebeat's own start-up against "Elasticsearch": version check, ILM policy and
      // rollover alias, index template; then _bulk with its retry and backoff.
      writeFileSync(
        join(dir, 'filebeat.yml'),
        `filebeat.inputs:
  - type: log
    paths: ["${logFile}"]
    json.keys_under_root: true
    json.add_error_key: true
output.elasticsearch:
  hosts: ["http://127.0.0.1:${droverPort}"]
  backoff.init: 200ms
  backoff.max: 1s
queue.mem.flush.timeout: 100ms
path.data: ${dir}/data
path.logs: ${dir}/logs
path.home: ${dir}
logging.to_stderr: true
`,
      );
      beat = spawn(filebeat!, ['-e', '-c', join(dir, 'filebeat.yml'), '--strict.perms=false'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let log = '';
      beat.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      beat.once('exit', (code) => {
        if (code !== null && code !== 0) process.stderr.write(`filebeat exited ${code}:\n${log}\n`);
      });
    }, 60_000);

    afterAll(async () => {
      beat?.kill('SIGTERM');
      if (drover) await stopDrover(drover);
    });

    it('starts against Drover as against Elasticsearch and ships pino lines as events', async () => {
      const events = await until(
        'the two lines',
        async () => {
          const found = await search(drover.url, 'filebeat');
          return found.length === 2 ? found : undefined;
        },
        60_000,
      );
      const second = events.find((e) => e.message === 'filebeat line 2')!;
      expect(second).toMatchObject({
        'log.level': 'error',
        'service.name': 'checkout',
        'agent.type': 'filebeat',
        'log.file.path': logFile,
      });
      // Filebeat's own host.name (the shipper's host) fills the model, and pino's
      // `hostname` stays beside it; @timestamp is when the line was read (docs/shippers.md).
      expect(typeof second['host.name']).toBe('string');
      expect(second.hostname).toBe('fb-host');
    }, 90_000);

    it('loses no line while Drover is down: Filebeat retries until it is back', async () => {
      let events: Array<Record<string, unknown>>;
      ({ drover, events } = await shippedWhileDown(
        drover,
        dir,
        droverPort,
        () => appendFileSync(logFile, pino(3) + pino(4)),
        'filebeat',
        /line [34]$/,
        2,
      ));
      // At least once: a retried batch may come twice; each line must be there.
      expect([...new Set(events.map((e) => e.message))].sort()).toEqual([
        'filebeat line 3',
        'filebeat line 4',
      ]);
    }, 90_000);
  },
);

const otelcol = inject('otelcol');

describe.skipIf(!otelcol)(
  `the OpenTelemetry Collector's otlphttp exporter into Drover${reasons.otelcol ? ` (skipped: ${reasons.otelcol})` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-otelcol-'));
    let drover: Drover;
    let collector: ChildProcess;
    let droverPort: number;
    const logFile = join(dir, 'app.log');
    // An app time well before the run, so the test sees it is the line's time, not the read's.
    const APP_TIME = Date.parse('2026-01-02T03:04:05.678Z');
    const pino = (i: number, level = 30) =>
      `${JSON.stringify({ level, time: APP_TIME + i, hostname: 'oc-host', name: 'billing', msg: `collector line ${i}` })}\n`;

    beforeAll(async () => {
      droverPort = await freePort();
      drover = await startDrover(dir, droverPort);
      writeFileSync(logFile, pino(1) + pino(2, 50));
      // filelog tails pino lines, parses them and exports OTLP/HTTP (protobuf, gzip)
      // with the exporter's own retries.
      writeFileSync(
        join(dir, 'otelcol.yaml'),
        `receivers:
  filelog:
    include: ["${logFile}"]
    start_at: beginning
    poll_interval: 100ms
    operators:
      - type: json_parser
        timestamp: { parse_from: attributes.time, layout_type: epoch, layout: ms }
      - type: move
        from: attributes.msg
        to: body
processors:
  batch: { timeout: 100ms }
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:${droverPort}
    compression: gzip
    retry_on_failure: { initial_interval: 200ms, max_interval: 1s }
service:
  pipelines:
    logs: { receivers: [filelog], processors: [batch], exporters: [otlphttp] }
  telemetry: { metrics: { level: none } }
`,
      );
      collector = spawn(otelcol!, ['--config', join(dir, 'otelcol.yaml')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      collector.stderr!.resume();
    }, 60_000);

    afterAll(async () => {
      collector?.kill('SIGTERM');
      if (drover) await stopDrover(drover);
    });

    it('its log records arrive as events with the time, level, service and host of the pino line', async () => {
      const events = await until(
        'the two records',
        async () => {
          const found = await search(drover.url, 'collector');
          return found.length === 2 ? found : undefined;
        },
        60_000,
      );
      expect(events.find((e) => e.message === 'collector line 2')).toMatchObject({
        '@timestamp': APP_TIME + 2,
        'log.level': 'error',
        'service.name': 'billing',
        'host.name': 'oc-host',
      });
    }, 90_000);

    it('loses no record while Drover is down: the exporter retries until it is back', async () => {
      let events: Array<Record<string, unknown>>;
      ({ drover, events } = await shippedWhileDown(
        drover,
        dir,
        droverPort,
        () => appendFileSync(logFile, pino(3) + pino(4)),
        'collector',
        /line [34]$/,
        2,
      ));
      expect([...new Set(events.map((e) => e.message))].sort()).toEqual([
        'collector line 3',
        'collector line 4',
      ]);
    }, 90_000);
  },
);
