import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { CheckpointStore } from '../../pipeline/checkpoint-store.ts';
import {
  adminHeaders,
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  startServe,
  until,
  workdir,
} from '../support/drover.ts';

afterEach(killServes);

/** A state dir, a rule whose action runs a real command, and a config pointing at them. */
function workspace() {
  const dir = workdir('drover-serve-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
  const acted = join(dir, 'acted.txt');
  writeFileSync(
    join(dir, 'drover.yaml'),
    `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s }
snapshotEvery: 200ms
adapters:
  script: { type: exec, command: /bin/sh, args: ["-c", "echo $DROVER_TARGET >> ${acted}"] }
guards: { cooldown: 0s }
`,
  );
  return {
    dir,
    config: join(dir, 'drover.yaml'),
    acted,
    journal: join(dir, 'state', 'actions.db'),
  };
}

const serve = (config: string) => startServe(config);

describe('drover serve', () => {
  it('ingests, detects, remediates for real, and exposes its API and drover_* metrics', async () => {
    const w = workspace();
    const { url } = await serve(w.config);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const t = Date.now();
    const body = [0, 1, 2].map((i) => errorLine('web-7', t + i)).join('\n');
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const decisions = await until('an executed action', async () => {
      const r = (await (await fetch(`${url}/v1/actions`)).json()) as {
        decisions: Array<{ decision: string; target: string }>;
      };
      return r.decisions.length > 0 ? r.decisions : undefined;
    });
    expect(decisions[0]).toMatchObject({ decision: 'executed', target: 'web-7' });
    expect(readFileSync(w.acted, 'utf8').trim()).toBe('web-7');
    const alerts = (await (await fetch(`${url}/v1/alerts`)).json()) as {
      alerts: Array<{ rule: string }>;
    };
    expect(alerts.alerts.map((a) => a.rule)).toEqual(['host-error-burst']);
    const rules = (await (await fetch(`${url}/v1/rules`)).json()) as {
      rules: Array<{ rule: string; alerts: number }>;
    };
    expect(rules.rules[0]).toMatchObject({ rule: 'host-error-burst', alerts: 1 });
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/drover_ingest_events_total\{protocol="ndjson"\} 3/);
    expect(metrics).toMatch(/drover_alerts_total\{rule="host-error-burst"\} 1/);
    expect(metrics).toMatch(/drover_actions_total\{adapter="script",outcome="executed"\} 1/);
    expect(metrics).toMatch(/# HELP drover_bus_lag_messages/);
    expect(metrics).toMatch(/process_cpu_user_seconds_total/);
    // The periodic rule snapshots (every 200 ms here): the loop pause each took, and size.
    const snapshots = await until('a periodic snapshot counted on /metrics', async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return /\ndrover_snapshot_seconds_count [1-9]/.test(text) ? text : undefined;
    });
    expect(snapshots).toMatch(/\ndrover_snapshot_seconds\{quantile="0.99"\} \d/);
    expect(snapshots).toMatch(/\ndrover_snapshot_bytes [1-9]\d+\n/);
  });

  it('counts late events and refuses events past the clock + rules.maxFutureSkew', async () => {
    const dir = workdir('drover-serve-time-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false }
index: { kind: none }
rules: { paths: [rules], allowedLateness: 1s, maxFutureSkew: 10s }
`,
    );
    const { url } = await serve(config);
    const t = Date.now();
    // In order: now, a minute ahead (refused by the engine's 10 s skew; ingest refuses only
    // beyond 5 min), an hour ago (late: the watermark is at now − 1s).
    const body = [t, t + 60_000, t - 3_600_000].map((at) => errorLine('web-1', at)).join('\n');
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const metrics = await until('the rules engine to count both', async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return /drover_rule_events_total 3/.test(text) ? text : undefined;
    });
    expect(metrics).toMatch(/drover_rules_future_events_total 1\n/);
    expect(metrics).toMatch(/drover_rules_late_events_total 1\n/);
  });

  it('counts statsd gauge series forgotten past its 10,000 in /metrics', async () => {
    const dir = workdir('drover-serve-statsd-', { 'rules/errors.yaml': HOST_ERROR_BURST_RULE });
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: 0 }
index: { kind: none }
rules: { paths: [rules] }
`,
    );
    const served = await serve(config);
    const port = Number(/"statsdPort":(\d+)/.exec(served.log())![1]);
    const socket = createSocket('udp4');
    const send = (text: string) =>
      new Promise<void>((resolve, reject) =>
        socket.send(text, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
      );
    const statsdLines = async () => {
      const text = await (await fetch(`${served.url}/metrics`)).text();
      const events = /drover_ingest_events_total\{protocol="statsd"\} (\d+)\n/.exec(text);
      return { text, events: Number(events?.[1] ?? 0) };
    };
    // 10,100 series in 5 datagrams: the first 100 are forgotten for the last 100. A
    // datagram UDP lost is sent again (setting a series twice evicts nothing).
    let metrics = '';
    for (let p = 0; p < 5; p++) {
      const datagram = Array.from({ length: 2_020 }, (_, i) => `g${p * 2_020 + i}:1|g`).join('\n');
      metrics = await until(`datagram ${p} to be taken`, async () => {
        await send(datagram);
        await new Promise((r) => setTimeout(r, 200));
        const { text, events } = await statsdLines();
        return events >= (p + 1) * 2_020 ? text : undefined;
      });
    }
    socket.close();
    expect(metrics).toMatch(/# HELP drover_statsd_gauges_evicted_total /);
    expect(metrics).toMatch(/drover_statsd_gauges_evicted_total 100\n/);
  });

  it('hot reload rejects an invalid rule set with its errors and keeps the running one', async () => {
    const w = workspace();
    const { url } = await serve(w.config);
    writeFileSync(join(w.dir, 'rules', 'broken.yaml'), 'name: broken\ntype: frequency\n');
    const admin = { method: 'POST', headers: adminHeaders(join(w.dir, 'state')) };
    const bad = await fetch(`${url}/v1/rules/reload`, admin);
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { errors: string[] }).errors[0]).toMatch(
      /broken.yaml:2:7 frequency rules need "num_events"/,
    );
    writeFileSync(
      join(w.dir, 'rules', 'broken.yaml'),
      'name: fixed\ntype: any\nfilter: { all: [ { fact: log.level, operator: equal, value: fatal } ] }\n',
    );
    const good = await fetch(`${url}/v1/rules/reload`, admin);
    expect(await good.json()).toMatchObject({ ok: true, rules: 2 });
  });

  it('SIGHUP reloads the rules; SIGTERM drains, snapshots the state and exits 0', async () => {
    const w = workspace();
    // No periodic snapshot: the one found after SIGTERM is the shutdown's own.
    const yaml = readFileSync(w.config, 'utf8');
    expect(yaml).toContain('snapshotEvery: 200ms');
    writeFileSync(w.config, yaml.replace('snapshotEvery: 200ms', 'snapshotEvery: 1h'));
    let run = await serve(w.config);
    writeFileSync(
      join(w.dir, 'rules', 'fatal.yaml'),
      'name: any-fatal\ntype: any\nfilter: { all: [ { fact: log.level, operator: equal, value: fatal } ] }\n',
    );
    run.child.kill('SIGHUP');
    const names = await until('the reloaded rules', async () => {
      const r = (await (await fetch(`${run.url}/v1/rules`)).json()) as {
        rules: Array<{ rule: string }>;
      };
      return r.rules.length === 2 ? r.rules.map((x) => x.rule).sort() : undefined;
    });
    expect(names).toEqual(['any-fatal', 'host-error-burst']);

    // Two of the three errors, then SIGTERM.
    const t = Date.now();
    await fetch(`${run.url}/ingest`, {
      method: 'POST',
      body: [errorLine('web-2', t), errorLine('web-2', t + 1)].join('\n'),
    });
    await until('the events to reach the rules', async () => {
      const r = (await (await fetch(`${run.url}/v1/rules`)).json()) as {
        rules: Array<{ rule: string; keys: number }>;
      };
      return r.rules.find((x) => x.rule === 'host-error-burst')!.keys > 0 ? true : undefined;
    });
    run.child.kill('SIGTERM');
    const code = await new Promise((r) => run.child.once('exit', r));
    expect(code).toBe(0);
    expect(run.log()).toMatch(/"msg":"drover stopped"/);
    const store = new CheckpointStore(join(w.dir, 'state', 'rules-state.db'));
    const snapshot = store.read()!;
    store.close();
    expect(snapshot.offsets['logs/0']).toBe(2);

    // Restored from the shutdown's snapshot: the third error completes the window.
    run = await serve(w.config);
    expect(run.log()).toMatch(/rule state restored/);
    await fetch(`${run.url}/ingest`, { method: 'POST', body: errorLine('web-2', t + 2) });
    await until('the executed action', async () => {
      const r = (await (await fetch(`${run.url}/v1/actions`)).json()) as {
        decisions: Array<{ decision: string; target: string }>;
      };
      return r.decisions.some((d) => d.decision === 'executed' && d.target === 'web-2')
        ? true
        : undefined;
    });
  });

  it('a kill -9 in the middle of an incident loses no window and repeats no action', async () => {
    const w = workspace();
    let run = await serve(w.config);
    const t = Date.now();
    // Two of the three errors the rule needs, then a snapshot, then SIGKILL.
    await fetch(`${run.url}/ingest`, {
      method: 'POST',
      body: [errorLine('web-1', t), errorLine('web-1', t + 1)].join('\n'),
    });
    await new Promise((r) => setTimeout(r, 700));
    run.child.kill('SIGKILL');
    await new Promise((r) => run.child.once('exit', r));

    run = await serve(w.config);
    expect(run.log()).toMatch(/rule state restored/);
    await fetch(`${run.url}/ingest`, { method: 'POST', body: errorLine('web-1', t + 2) });
    await until('the executed action', async () => {
      const r = (await (await fetch(`${run.url}/v1/actions`)).json()) as {
        decisions: Array<{ decision: string }>;
      };
      return r.decisions.some((d) => d.decision === 'executed') ? true : undefined;
    });

    // Killed again right after acting: the replay fires the same alert, and the
    // journal's idempotency claim keeps the action from running twice.
    run.child.kill('SIGKILL');
    await new Promise((r) => run.child.once('exit', r));
    run = await serve(w.config);
    await new Promise((r) => setTimeout(r, 1_000));
    run.child.kill('SIGTERM');
    await new Promise((r) => run.child.once('exit', r));
    expect(readFileSync(w.acted, 'utf8').trim().split('\n')).toEqual(['web-1']);
    const store = openActionStore(w.journal);
    const decisions = store.list();
    store.close();
    expect(decisions.filter((d) => d.decision === 'executed')).toHaveLength(1);
  });
});

describe('drover serve over TLS', () => {
  it('speaks HTTPS only with listen.tls, verified against its certificate', async () => {
    const w = workspace();
    const tls = join(w.dir, 'tls');
    mkdirSync(tls);
    const openssl = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(tls, 'key.pem'),
        '-out',
        join(tls, 'cert.pem'),
      ],
      { encoding: 'utf8' },
    );
    expect(openssl.status, openssl.stderr).toBe(0);
    const yaml = readFileSync(w.config, 'utf8');
    writeFileSync(
      w.config,
      yaml.replace(
        'listen: { port: 0, statsdPort: false }',
        'listen: { port: 0, statsdPort: false, tls: { cert: tls/cert.pem, key: tls/key.pem } }',
      ),
    );
    const { url } = await serve(w.config);
    expect(url).toMatch(/^https:\/\//);
    const ca = readFileSync(join(tls, 'cert.pem'));
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        `${url}/ingest`,
        { method: 'POST', ca, headers: { 'content-type': 'application/x-ndjson' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(errorLine('web-tls', Date.now()));
    });
    expect(status).toBe(200);
    // Plain HTTP on the same port is not answered as HTTP.
    await expect(fetch(url.replace('https:', 'http:') + '/healthz')).rejects.toThrow();
    // And a client that does not trust the certificate is refused.
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
