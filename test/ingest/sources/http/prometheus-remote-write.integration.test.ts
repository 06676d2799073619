import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RunningPrometheus, startPrometheus } from '../../../servers/shippers.ts';
import { startServe, until, workdir } from '../../../support/drover.ts';

/**
 * A real Prometheus scraping `drover serve` and remote_writing what it scraped back
 * into it: Prometheus's own remote_write client (snappy protobuf, its batching and
 * retries), unchanged, against Drover's /api/v1/write.
 */
const prometheusBin = inject('prometheus');
const reason = inject('serverSkipReasons').prometheus;

describe.skipIf(!prometheusBin)(
  `Prometheus remote_write into Drover${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let drover: ChildProcess;
    let url: string;
    let prometheus: RunningPrometheus;

    beforeAll(async () => {
      const dir = workdir('drover-remote-write-', {
        'rules/.keep': '',
        'drover.yaml':
          'stateDir: state\nlisten: { port: 0, statsdPort: false }\nrules: { paths: [rules] }\n',
      });
      const served = await startServe(join(dir, 'drover.yaml'));
      drover = served.child;
      url = served.url;
      prometheus = await startPrometheus(
        prometheusBin!,
        `global: { scrape_interval: 1s }
scrape_configs:
  - job_name: drover
    static_configs: [{ targets: ['${new URL(url).host}'], labels: { env: test } }]
remote_write:
  - url: ${url}/api/v1/write
    queue_config: { batch_send_deadline: 1s }
`,
      );
    }, 90_000);

    afterAll(async () => {
      await prometheus?.stop();
      drover?.kill('SIGTERM');
    });

    it('every scraped series arrives as metric events: name, value, labels, job as service, instance as host', async () => {
      const host = new URL(url).host;
      const up = await until('the up series', async () => {
        const r = await fetch(`${url}/v1/search?service=drover&size=1000`);
        const events = ((await r.json()) as { events: Array<Record<string, unknown>> }).events;
        return events.find((e) => e['metric.name'] === 'up');
      });
      expect(up).toMatchObject({
        'metric.value': 1,
        'service.name': 'drover',
        'host.name': host,
        'labels.env': 'test',
        'labels.job': 'drover',
        'labels.instance': host,
      });
      expect(typeof up['@timestamp']).toBe('number');
      // Drover's own counters made the round trip too, and its ingest metrics saw it.
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const written = /drover_ingest_events_total\{protocol="remote_write"\} (\d+)/.exec(metrics);
      expect(Number(written?.[1] ?? 0)).toBeGreaterThan(50);
      // Prometheus itself reports no failed sends.
      const [failed] = await prometheus.query(
        'sum(prometheus_remote_storage_samples_failed_total) or vector(0)',
      );
      expect(Number(failed!.value[1])).toBe(0);
    }, 90_000);
  },
);
