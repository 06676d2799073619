import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Adapter,
  ExecAdapter,
  KubernetesAdapter,
  openActionStore,
  ProcessAdapter,
  Remediator,
} from '../../actions/index.ts';
import type { Alert } from '../../rules/index.ts';
import { type FakeKubeApi, startKubeApi } from './fixtures/k8s-api-server.ts';

/**
 * Hostile targets, through the remediator and real adapters: a value an attacker wrote
 * into an event must not become an option, a shell word, another namespace, or a
 * budget spent on a host that does not exist.
 */
const dir = mkdtempSync(join(tmpdir(), 'drover-targets-'));
const ctx = { idempotencyKey: 'alert-1#0', rule: 'host-down' };
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

let seq = 0;
function alert(key: Record<string, unknown>, actions: Alert['actions']): Alert {
  seq++;
  return {
    id: `alert-${seq}`,
    rule: 'host-down',
    type: 'expiry',
    key,
    at: '2024-01-01T00:00:00.000Z',
    figures: { count: 1 },
    sample: { '@timestamp': 0, ...key },
    labels: {},
    actions,
  };
}

function remediator(adapters: Record<string, Adapter>, guards = {}) {
  const store = openActionStore(join(mkdtempSync(join(dir, 'db-')), 'actions.db'));
  cleanup.push(() => store.close());
  return new Remediator({
    store,
    adapters: new Map(Object.entries(adapters)),
    guards: { cooldownMs: 0, ...guards },
  });
}

describe('exec: an event value is never an option or shell text', () => {
  it('refuses a host.name that is an ssh option, and the command never runs', async () => {
    const out = join(dir, 'ssh-argv.txt');
    // Stands in for ssh: records the argv it was given.
    const ssh = new ExecAdapter('ssh', {
      command: '/bin/sh',
      args: ['-c', `printf '%s\\n' "$@" > ${out}`, 'ssh', '--', '{{ target }}', 'reboot'],
    });
    const r = remediator({ ssh });
    for (const name of ['-oProxyCommand=sh -c "id > /tmp/x"', '--all']) {
      const [d] = await r.handle(
        alert({ 'host.name': name }, [{ adapter: 'ssh', operation: 'kill-and-replace' }]),
      );
      expect(d).toMatchObject({ decision: 'failed', guard: 'target' });
      // One holds "/" as well; either way the value is refused before the command.
      expect(d!.reason).toMatch(/starts with "-"|holds "\/"/);
    }
    expect(existsSync(out)).toBe(false);
    // A value with shell metacharacters is no exec target either.
    const [d] = await r.handle(
      alert({ 'host.name': 'web-1;id' }, [{ adapter: 'ssh', operation: 'kill-and-replace' }]),
    );
    expect(d).toMatchObject({ decision: 'failed', guard: 'target' });
    expect(existsSync(out)).toBe(false);
    // A real host goes through, after "--".
    const [ok] = await r.handle(
      alert({ 'host.name': 'web-1.prod' }, [{ adapter: 'ssh', operation: 'kill-and-replace' }]),
    );
    expect(ok).toMatchObject({ decision: 'executed' });
    expect(readFileSync(out, 'utf8')).toBe('--\nweb-1.prod\nreboot\n');
  });

  it('refuses an argument a value would turn into an option, and control characters', async () => {
    const out = join(dir, 'notify-argv.txt');
    const exec = new ExecAdapter('x', {
      command: '/bin/sh',
      args: ['-c', `printf '%s\\n' "$@" > ${out}`, 'sh', '{{ target }}'],
    });
    await expect(exec.notify({ title: '--all', text: '', severity: 'info' }, ctx)).rejects.toThrow(
      /argument 3 would be "--all", an option written by a value/,
    );
    await expect(
      exec.notify({ title: 'a\nrm -rf /', text: '', severity: 'info' }, ctx),
    ).rejects.toThrow(/control character/);
    await expect(exec.killAndReplace('--all', ctx)).rejects.toThrow(/is not an exec target/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses at start-up a template spliced into a shell script', () => {
    expect(
      () =>
        new ExecAdapter('x', {
          command: '/usr/bin/env',
          args: ['bash', '-c', 'ssh {{ target }} reboot'],
        }),
    ).toThrow(/would make a value shell text/);
    for (const args of [
      ['-c', 'kubectl delete pod {{ target }}'],
      ['-ec', 'ssh {{ target }} reboot'],
      ['-c', 'echo'],
    ]) {
      const create = () => new ExecAdapter('x', { command: '/bin/bash', args });
      if (args[1]!.includes('{{')) expect(create).toThrow(/would make a value shell text/);
      else expect(create).not.toThrow();
    }
  });
});

describe('exec: describeCommand is the inventory', () => {
  it('a host the describe command does not list is refused before the budget', async () => {
    const out = join(dir, 'exec-inventory.txt');
    const fleet = new ExecAdapter('fleet', {
      command: '/bin/sh',
      args: ['-c', `echo "$1" >> ${out}`, 'sh', '{{ target }}'],
      describeCommand: '/bin/sh',
      // Knows web-1 and web-2; exits 1 for anything that is in no group.
      describeArgs: [
        '-c',
        'case "$1" in web-*) echo \'{"group":"web","size":2,"healthy":2,"members":[{"id":"web-1","healthy":true},{"id":"web-2","healthy":true}]}\' ;; *) echo "unknown host $1" >&2; exit 1 ;; esac',
        'sh',
        '{{ target }}',
      ],
    });
    const r = remediator({ fleet }, { budget: { max: 2, windowMs: 3_600_000 } });
    const replace = [{ adapter: 'fleet', operation: 'kill-and-replace' as const }];
    for (const host of ['ghost-1', 'web-9', 'ghost-2']) {
      const [d] = await r.handle(alert({ 'host.name': host }, replace));
      expect(d).toMatchObject({ decision: 'failed', guard: 'inventory' });
    }
    for (const host of ['web-1', 'web-2'])
      expect((await r.handle(alert({ 'host.name': host }, replace)))[0]).toMatchObject({
        decision: 'executed',
      });
    expect(readFileSync(out, 'utf8')).toBe('web-1\nweb-2\n');
  });
});

describe('kubernetes: a target stays inside the adapter’s namespaces', () => {
  async function prod(): Promise<{ api: FakeKubeApi; k8s: KubernetesAdapter }> {
    const api = await startKubeApi();
    cleanup.push(() => api.close());
    api.addDeployment('web', 2, { namespace: 'prod' });
    api.addDeployment('coredns', 2, { namespace: 'kube-system' });
    const k8s = new KubernetesAdapter('k8s', { server: api.url, namespace: 'prod' });
    return { api, k8s };
  }
  const evictions = (api: FakeKubeApi) =>
    api.requests.filter((r) => r.method === 'POST' || r.method === 'DELETE');

  it('refuses kube-system/pod/NAME from an event, whichever way it is written', async () => {
    const { api, k8s } = await prod();
    const victim = api.pods.find((p) => p.metadata.namespace === 'kube-system')!.metadata.name;
    const r = remediator({ k8s });
    // The whole target from one value: the value may not add segments.
    const [whole] = await r.handle(
      alert({ 'host.name': `kube-system/pod/${victim}` }, [
        { adapter: 'k8s', operation: 'kill-and-replace' },
      ]),
    );
    expect(whole).toMatchObject({ decision: 'failed', guard: 'target' });
    expect(whole!.reason).toMatch(/holds "\/"/);
    // The rule's template has a namespace slot: the adapter's boundary holds it.
    const [slot] = await r.handle(
      alert({ 'kubernetes.namespace': 'kube-system', 'kubernetes.pod.name': victim }, [
        {
          adapter: 'k8s',
          operation: 'kill-and-replace',
          target: '{{ kubernetes.namespace }}/pod/{{ kubernetes.pod.name }}',
        },
      ]),
    );
    expect(slot).toMatchObject({ decision: 'failed', guard: 'target' });
    expect(slot!.reason).toMatch(/namespace "kube-system" is outside .*\(prod\)/);
    await expect(k8s.killAndReplace(`kube-system/pod/${victim}`, ctx)).rejects.toThrow(/outside/);
    expect(evictions(api)).toEqual([]);
    expect(api.requests.filter((r) => r.path.includes('kube-system'))).toEqual([]);
  });

  it('acts in a namespace the configuration allows, and refuses names that are not DNS-1123', async () => {
    const { api } = await prod();
    const both = new KubernetesAdapter('k8s', {
      server: api.url,
      namespace: 'prod',
      namespaces: ['prod', 'kube-system'],
    });
    const victim = api.pods.find((p) => p.metadata.namespace === 'kube-system')!.metadata.name;
    expect((await both.killAndReplace(`kube-system/pod/${victim}`, ctx)).detail).toMatchObject({
      namespace: 'kube-system',
      via: 'eviction',
    });
    for (const bad of ['Web_1', '-all', 'a'.repeat(254), 'web..1.']) {
      await expect(both.admit('kill-and-replace', bad)).rejects.toMatchObject({ guard: 'target' });
    }
    await expect(both.admit('kill-and-replace', 'web-nope')).rejects.toMatchObject({
      guard: 'inventory',
    });
    expect(() => new KubernetesAdapter('k8s', { server: api.url, namespaces: [] })).toThrow(
      /namespaces must be/,
    );
  });
});

describe('inventory before budget', () => {
  it('forged alerts for made-up hosts do not spend the budget of the real incident after them', async () => {
    const fleet = new ProcessAdapter('fleet', {
      healthInterval: 0,
      services: {
        web: {
          command: process.execPath,
          args: [join(import.meta.dirname, 'fixtures', 'replica.js')],
          replicas: 2,
          readiness: 'listen',
        },
      },
    });
    cleanup.push(() => fleet.close());
    await fleet.start();
    const r = remediator({ fleet }, { budget: { max: 5, windowMs: 3_600_000 } });
    const replace = [{ adapter: 'fleet', operation: 'kill-and-replace' as const }];
    for (let i = 1; i <= 5; i++) {
      const [forged] = await r.handle(alert({ 'host.name': `ghost-${i}` }, replace));
      expect(forged).toMatchObject({ decision: 'failed', guard: 'inventory' });
      expect(forged!.reason).toMatch(/supervises no live replica "ghost-\d"/);
    }
    // A target of the wrong form is refused the same way, and costs nothing either.
    const [proto] = await r.handle(
      alert({ 'service.name': 'constructor' }, [
        { adapter: 'fleet', operation: 'scale', params: { by: 1 } },
      ]),
    );
    expect(proto).toMatchObject({ decision: 'failed', guard: 'inventory' });
    const [real] = await r.handle(alert({ 'host.name': 'web-1' }, replace));
    expect(real).toMatchObject({ decision: 'executed' });
    expect(fleet.replicas('web').map((x) => x.id)).toEqual(['web-2', 'web-3']);
  });
});
