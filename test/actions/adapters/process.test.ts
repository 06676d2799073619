import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  freePort,
  ProcessAdapter,
  processAdapterFactory,
  type ServiceSpec,
} from '../../../actions/index.ts';

/** The process adapter against real child processes: small Node scripts in fixtures/. */
const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const node = (script: string, extra: Partial<ServiceSpec> = {}): ServiceSpec => ({
  command: process.execPath,
  args: [join(FIXTURES, script)],
  replicas: 1,
  readiness: 'listen',
  ...extra,
});

const opened: ProcessAdapter[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.close()));
});

async function fleet(services: Record<string, ServiceSpec>): Promise<ProcessAdapter> {
  const adapter = new ProcessAdapter('fleet', { services, healthInterval: 0 });
  opened.push(adapter);
  await adapter.start();
  return adapter;
}

const alive = (pid: number | undefined) => {
  try {
    process.kill(pid!, 0);
    return true;
  } catch {
    return false;
  }
};

async function until<T>(probe: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not met in time');
}

describe('process adapter', () => {
  it('gives each replica its own PORT and environment', async () => {
    const f = await fleet({ web: node('replica.js', { replicas: 2, env: { GREETING: 'hi' } }) });
    const replicas = f.replicas('web');
    expect(replicas.map((r) => r.id)).toEqual(['web-1', 'web-2']);
    expect(new Set(replicas.map((r) => r.port)).size).toBe(2);
    for (const r of replicas) {
      const body = (await (await fetch(`http://127.0.0.1:${r.port}/`)).json()) as Record<
        string,
        unknown
      >;
      expect(body).toEqual({
        id: r.id,
        service: 'web',
        port: String(r.port),
        pid: r.pid,
        greeting: 'hi',
      });
    }
  });

  it('kill-and-replace: a new process on a new port answers before the old one is stopped', async () => {
    const f = await fleet({ web: node('replica.js', { replicas: 2 }) });
    const [victim] = f.replicas('web');
    const events: string[] = [];
    f.on('started', (r: { id: string }) => events.push(`started ${r.id}`));
    f.on('exited', (e: { id: string; expected: boolean }) =>
      events.push(`exited ${e.id} expected=${e.expected}`),
    );
    const { detail } = await f.killAndReplace(String(victim!.pid)); // by pid
    const started = detail.started as { id: string; pid: number; port: number };
    expect(detail.killed).toMatchObject({ id: victim!.id, pid: victim!.pid, signal: 'SIGTERM' });
    expect(started.pid).not.toBe(victim!.pid);
    expect(started.port).not.toBe(victim!.port);
    expect(alive(victim!.pid)).toBe(false);
    expect(events).toEqual(['started web-3', 'exited web-1 expected=true']);
    const body = (await (await fetch(`http://127.0.0.1:${started.port}/`)).json()) as {
      id: string;
    };
    expect(body.id).toBe('web-3');
    expect(f.replicas('web').map((r) => r.id)).toEqual(['web-2', 'web-3']);
    // By replica id and by address, too.
    await f.killAndReplace('web-2');
    const addr = `127.0.0.1:${f.replicas('web')[0]!.port}`;
    await f.killAndReplace(addr);
    expect(f.replicas('web')).toHaveLength(2);
  });

  it('SIGKILLs a replica that ignores SIGTERM once the grace period is over', async () => {
    const f = await fleet({ web: node('stubborn.js', { gracePeriod: '300ms' }) });
    const old = f.replicas('web')[0]!;
    const t = Date.now();
    const { detail } = await f.killAndReplace(old.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(290);
    expect(detail.killed).toMatchObject({ signal: 'SIGKILL' });
    expect(alive(old.pid)).toBe(false);
  });

  it('restarts a replica that crashes, with backoff, and reports the crash loop', async () => {
    const f = await fleet({ worker: node('crasher.js', { env: { CRASH_AFTER_MS: '50' } }) });
    const loops: Array<{ service: string; exits: number }> = [];
    const exits: Array<{ expected: boolean; code: number }> = [];
    f.on('crash-loop', (e: { service: string; exits: number }) => loops.push(e));
    f.on('exited', (e: { expected: boolean; code: number }) => exits.push(e));
    await until(() => loops.length > 0);
    expect(loops[0]).toMatchObject({ service: 'worker', exits: 3 });
    expect(exits.slice(0, 3).every((e) => !e.expected && e.code === 1)).toBe(true);
    expect(f.crashLooping('worker')).toBe(true);
    const restarted = await until(() => f.replicas('worker')[0]);
    expect(restarted.restarts).toBeGreaterThanOrEqual(3);
  });

  it('scales within min and max, newest replicas stopped first', async () => {
    const f = await fleet({ web: node('replica.js', { replicas: 2, min: 1, max: 3 }) });
    const up = await f.scale('web', { by: 5 });
    expect(up.detail).toMatchObject({ from: 2, to: 3, requested: 7, clamped: true });
    expect(f.replicas('web').map((r) => r.id)).toEqual(['web-1', 'web-2', 'web-3']);
    const down = await f.scale('web', { to: 0 });
    expect(down.detail).toMatchObject({ from: 3, to: 1, clamped: true });
    expect(f.replicas('web').map((r) => r.id)).toEqual(['web-1']);
    // A rule's bounds tighten the service's.
    expect((await f.scale('web', { by: 3, max: 2 })).detail).toMatchObject({ to: 2 });
    await expect(f.scale('web', { to: 2, min: 3, max: 2 })).rejects.toThrow(/bounds do not meet/);
  });

  it('health: HTTP healthPath when configured, reported in describe and replicas()', async () => {
    const f = await fleet({
      web: node('replica.js', { replicas: 2, healthPath: '/healthz', readiness: 'health' }),
    });
    const changes: string[] = [];
    f.on('health', (r: { id: string; healthy: boolean }) => changes.push(`${r.id}=${r.healthy}`));
    expect(f.replicas('web').map((r) => r.healthy)).toEqual([true, true]);
    const sick = f.replicas('web')[1]!;
    await fetch(`http://127.0.0.1:${sick.port}/sick`, { method: 'POST' });
    const health = await f.describe('web');
    expect(health).toMatchObject({ group: 'web', size: 2, healthy: 1, desired: 2 });
    expect(health.members).toEqual([
      { id: 'web-1', healthy: true },
      { id: sick.id, healthy: false },
    ]);
    expect(changes).toEqual([`${sick.id}=false`]);
    expect(f.replicas('web')[1]!.healthy).toBe(false);
    // describe by a member's id names its group.
    expect((await f.describe(sick.id)).group).toBe('web');
  });

  it('keeps the old replica when its replacement never becomes ready', async () => {
    const f = await fleet({
      web: node('replica.js', { healthPath: '/healthz', startTimeout: '1s' }),
    });
    const old = f.replicas('web')[0]!;
    // From now on, fresh replicas start sick and never pass readiness.
    f['services'].web!.env = { UNHEALTHY: '1' };
    f['services'].web!.readiness = 'health';
    await expect(f.killAndReplace(old.id)).rejects.toThrow(/replacement for web-1 failed/);
    expect(f.replicas('web').map((r) => r.id)).toEqual([old.id]);
    expect(alive(old.pid)).toBe(true);
  });

  it('rejects bad configuration and unknown targets with clear errors', async () => {
    expect(() => processAdapterFactory.create('f', {})).toThrow(/needs services/);
    expect(() => processAdapterFactory.create('f', { services: { web: { replicas: 1 } } })).toThrow(
      /service web: needs a command/,
    );
    expect(() =>
      processAdapterFactory.create('f', {
        services: { web: { command: 'x', replicas: 1, gracePeriod: 'soon' } },
      }),
    ).toThrow(/"soon" is not a duration/);
    const f = await fleet({ web: node('replica.js') });
    await expect(f.killAndReplace('web-99')).rejects.toThrow(/no running replica "web-99"/);
    await expect(f.scale('db', { to: 1 })).rejects.toThrow(/no service or replica "db"/);
    await expect(f.notify({ title: 't', text: 't', severity: 'info' })).rejects.toThrow(
      /cannot notify/,
    );
    const missing = new ProcessAdapter('m', {
      services: { x: { command: '/nonexistent/drover-cmd', replicas: 1 } },
    });
    opened.push(missing);
    await expect(missing.start()).rejects.toThrow(/could not start \/nonexistent\/drover-cmd/);
  });
});

describe('freePort', () => {
  // The demo's Drover and each replica get a port before they bind it. One of the
  // kernel's ephemeral range can meanwhile go to any process's connect() or listen on
  // port 0 (the demo once lost its port so, in CI: EADDRINUSE).
  it.runIf(process.platform === 'linux')(
    "picks below the kernel's ephemeral range, never the same port twice in a row",
    async () => {
      const low = Number(
        readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
      );
      const ports: number[] = [];
      for (let i = 0; i < 50; i++) ports.push(await freePort());
      for (const port of ports) {
        expect(port).toBeGreaterThanOrEqual(1024);
        expect(port).toBeLessThan(low);
      }
      expect(new Set(ports).size).toBe(ports.length);
    },
  );
});
